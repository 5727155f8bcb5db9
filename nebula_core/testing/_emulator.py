"""NebulaEmulator: the service on 127.0.0.1, with a recorder and a fault script."""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Literal

import orjson

from nebula_core.models import DEFAULT_MODEL
from nebula_core.testing._bodies import RATE_LIMIT_BODIES, RateLimitBody
from nebula_core.testing._compute import ComputeModel
from nebula_core.testing._encoding import (
    EXTRA_FIELDS,
    VECTOR_STYLES,
    ExtraFields,
    VectorStyle,
    styled_vector_json,
)
from nebula_core.testing._endpoint import EmbeddingsEndpoint
from nebula_core.testing._faults import Fault, FaultSchedule
from nebula_core.testing._long_inputs import LongInputMode, LongInputPolicy
from nebula_core.testing._ratelimit import RateLimitAlgorithm, RateLimiter
from nebula_core.testing._recorder import RecordedRequest, Recorder
from nebula_core.testing._server import EmulatorServer, Request
from nebula_core.testing._service import EmbeddingsService
from nebula_core.testing._stats import EmulatorStats, StatsCounter
from nebula_core.testing._tokens import default_tokenizer
from nebula_core.testing._wire import Reply, error_reply

#: Default of `max_body_bytes` when a proxy limit is asked for without a size (nginx's is 1m).
DEFAULT_MAX_BODY_BYTES = 1024 * 1024

__all__ = ["TRANSIENT_FAULTS", "NebulaEmulator", "RecordedRequest"]

#: What `set_fault_rate` draws from by default: failures a correct client retries through.
TRANSIENT_FAULTS: tuple[Fault, ...] = (
    Fault.status(429),
    Fault.status(500),
    Fault.status(503),
    Fault.html_error(502),
    Fault.drop(),
    Fault.truncate(),
)


class NebulaEmulator:
    """A local NebulaBlock embeddings service for tests, notebooks and CI.

    Real HTTP on 127.0.0.1 speaking the service's wire format: Bearer auth, per-model
    dimensions, deterministic vectors in which lexically similar texts are similar, usage
    counts, `data` in shuffled order, an input cap (413), a context limit (400), and faults
    scripted per request::

        with NebulaEmulator() as emu:
            emu.enqueue(Fault.status(429, retry_after="1"))
            client = NebulaClient(api_key=emu.api_key, base_url=emu.base_url)
            vectors = client.embed(["hello"]).embeddings
            assert vectors[0] == emu.embedding("hello")
            assert emu.embeddings_requests[0].fault == "status:429"

    The keywords after `quiet` make it behave like a real deployment, each off by default:
    a GPU (`capacity`, `seconds_per_*`), per-key rate limits (`requests_per_minute`,
    `tokens_per_minute`, `rate_limit_*`), per-input token limits (`max_input_tokens`,
    `long_input`), a proxy (`max_body_bytes`), wire formats (`honour_encoding_format`,
    `extra_fields`, `vectors`) and keep-alive idle closes (`idle_timeout`); see
    docs/emulator.md. `emu.stats` counts what happened.

    Args:
        host: the address to bind; keep a loopback one.
        port: the port to bind; 0 picks a free one (read it back from `port`/`base_url`).
        api_key: the only key accepted as `Authorization: Bearer <key>`.
        max_inputs_per_request: more inputs in one request get a 413, as the service does.
        latency: seconds added to every embeddings request.
        shuffle: answer `data` out of input order, so clients must place vectors by `index`.
        seed: makes the shuffles and the random faults repeatable.
        unknown_model_dimensions: the vector width for model ids not in the catalogue.
        quiet: keep the server's request log off stderr.
        capacity: a GPU's compute slots: at most this many requests computed at once, the
            rest queue (None: unbounded).
        seconds_per_request: a network round trip, spent before a slot is taken.
        seconds_per_input / seconds_per_token: compute time while holding a slot.
        requests_per_minute / tokens_per_minute: per-key limits, answered over with a 429 and
            `Retry-After`.
        rate_limit_algorithm: "bucket" (refills continuously) or "window" (sliding 60 s).
        rate_limit_time_scale: how many emulated minutes pass per real minute (60: a minute
            lasts a second), for time-compressed benchmarks.
        rate_limit_headers: send OpenAI-style `x-ratelimit-*` headers on every answer.
        rate_limit_body: the 429 body: "openai" JSON, "text", or nginx's "html" page.
        max_input_tokens: the token limit per input, one int or a dict per model (None:
            each model's context).
        long_input: how an over-long input is answered: None (our 400), "tei"/"reject",
            "vllm" (those servers' refusals), or "truncate" (embed its first tokens).
        max_body_bytes: a proxy's body limit: nginx's HTML 413 above it.
        honour_encoding_format: answer `"encoding_format": "base64"` in base64 float32
            (ignored, floats sent, when False, as some deployments do).
        extra_fields: "forbid" answers FastAPI's 422 for body keys besides model and input.
        idle_timeout: seconds after which an idle keep-alive connection is closed.
        vectors: "unit" (normalized) or "raw" (exact float16 values, unnormalized).

    Attributes:
        compute: the GPU model; `capacity` and `seconds_per_*` may be changed while running,
            `peak_queued` tells how many requests waited for a slot.
        rate_limits: the per-key limits; `requests_per_minute` and `tokens_per_minute` may be
            changed while running.
        long_inputs: `max_input_tokens`, `long_input`, and `limit(model)` for the one in force.
        endpoint: the wire options (`max_body_bytes`, `rate_limit_headers`, `rate_limit_body`,
            `honour_encoding_format`, `extra_fields`, `vectors`), changeable while running.

    Raises:
        ValueError: an option out of range or not one of its choices.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = "ak_emulator_key",
        max_inputs_per_request: int = 256,
        latency: float = 0.0,
        shuffle: bool = True,
        seed: int = 0,
        unknown_model_dimensions: int = 768,
        quiet: bool = True,
        capacity: int | None = None,
        seconds_per_request: float = 0.0,
        seconds_per_input: float = 0.0,
        seconds_per_token: float = 0.0,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        rate_limit_algorithm: RateLimitAlgorithm = "bucket",
        rate_limit_time_scale: float = 1.0,
        rate_limit_headers: bool = False,
        rate_limit_body: RateLimitBody = "openai",
        max_input_tokens: int | Mapping[str, int] | None = None,
        long_input: LongInputMode | None = None,
        max_body_bytes: int | None = None,
        honour_encoding_format: bool = False,
        extra_fields: ExtraFields = "allow",
        idle_timeout: float | None = None,
        vectors: VectorStyle = "unit",
    ) -> None:
        if not api_key or not isinstance(api_key, str):
            raise ValueError("api_key must be a non-empty string")
        if not (isinstance(max_inputs_per_request, int) and max_inputs_per_request >= 1):
            raise ValueError(f"max_inputs_per_request must be >= 1, got {max_inputs_per_request!r}")
        if not (isinstance(unknown_model_dimensions, int) and unknown_model_dimensions >= 1):
            raise ValueError(
                f"unknown_model_dimensions must be >= 1, got {unknown_model_dimensions!r}"
            )
        _check_choice("rate_limit_body", rate_limit_body, RATE_LIMIT_BODIES)
        _check_choice("extra_fields", extra_fields, EXTRA_FIELDS)
        _check_choice("vectors", vectors, VECTOR_STYLES)
        for name, size in (("max_body_bytes", max_body_bytes), ("idle_timeout", idle_timeout)):
            if size is not None and not (isinstance(size, (int, float)) and size > 0):
                raise ValueError(f"{name} must be None or > 0, got {size!r}")
        self._host = host
        self._port = port
        self._api_key = api_key
        self._quiet = quiet
        self._service = EmbeddingsService(
            api_key=api_key,
            max_inputs_per_request=max_inputs_per_request,
            shuffle=shuffle,
            seed=seed,
            unknown_model_dimensions=unknown_model_dimensions,
        )
        self._faults = FaultSchedule()
        self._stats = StatsCounter()
        #: The GPU: `capacity` and seconds per request/input/token, changeable while running.
        self.compute = ComputeModel(
            capacity=capacity,
            seconds_per_request=seconds_per_request,
            seconds_per_input=seconds_per_input,
            seconds_per_token=seconds_per_token,
        )
        #: Per-key requests/tokens per minute, changeable while running.
        self.rate_limits = RateLimiter(
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
            algorithm=rate_limit_algorithm,
            time_scale=rate_limit_time_scale,
        )
        #: Token limit per input (`max_input_tokens`) and what answers it (`long_input`).
        self.long_inputs = LongInputPolicy(max_input_tokens=max_input_tokens, long_input=long_input)
        endpoint = EmbeddingsEndpoint(
            self._service,
            self._faults,
            self.compute,
            self.rate_limits,
            self.long_inputs,
            self._stats,
        )
        endpoint.max_body_bytes = max_body_bytes
        endpoint.rate_limit_headers = rate_limit_headers
        endpoint.rate_limit_body = rate_limit_body
        endpoint.honour_encoding_format = honour_encoding_format
        endpoint.extra_fields = extra_fields
        endpoint.vectors = vectors
        #: The embeddings endpoint: its options (`max_body_bytes`, `rate_limit_headers`,
        #: `rate_limit_body`, `honour_encoding_format`, `extra_fields`, `vectors`) are
        #: attributes that may be changed while running.
        self.endpoint = endpoint
        self.latency = latency
        self._idle_timeout = idle_timeout
        self._connection_base = (0, 0)
        self._recorder = Recorder()
        self._server: EmulatorServer | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> NebulaEmulator:
        """Bind the port and serve in a background thread.

        Returns:
            The emulator itself, so `emu = NebulaEmulator().start()` reads naturally.

        Raises:
            RuntimeError: it is already running.
        """
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        server = EmulatorServer(self._host, self._port, self._handle, quiet=self._quiet)
        server.idle_timeout = self._idle_timeout
        self._connection_base = (0, 0)
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        """Release the port, end open connections and join the threads; safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.close()

    def __enter__(self) -> NebulaEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.base_url if self._server else "stopped"
        return f"NebulaEmulator({where})"

    # -- how to reach it ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port actually bound (useful with port=0); RuntimeError when not running."""
        return self._running().server_port

    @property
    def base_url(self) -> str:
        """E.g. "http://127.0.0.1:54321/v1", what clients take as `base_url`."""
        host = self._host if ":" not in self._host else f"[{self._host}]"
        return f"http://{host}:{self.port}/v1"

    @property
    def api_key(self) -> str:
        """The key the emulator accepts; any other gets a 401."""
        return self._api_key

    def env(self) -> dict[str, str]:
        """The environment variables that point a client at this emulator."""
        return {"NEBULA_API_KEY": self._api_key, "NEBULA_BASE_URL": self.base_url}

    # -- behaviour ---------------------------------------------------------------------------

    @property
    def latency(self) -> float:
        """Seconds added to every embeddings request; may be changed while running."""
        return self.endpoint.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError(f"latency must be >= 0 seconds, got {seconds!r}")
        self.endpoint.latency = float(seconds)

    @property
    def idle_timeout(self) -> float | None:
        """Seconds a keep-alive connection may idle before the server closes it (None: never)."""
        return self._idle_timeout

    @idle_timeout.setter
    def idle_timeout(self, seconds: float | None) -> None:
        if seconds is not None and not seconds > 0:
            raise ValueError(f"idle_timeout must be None or > 0 seconds, got {seconds!r}")
        self._idle_timeout = seconds
        if self._server is not None:
            self._server.idle_timeout = seconds

    def enqueue(self, *faults: Fault) -> None:
        """Script faults: each is used up by the next POST /embeddings, first in first out."""
        self._faults.enqueue(faults)

    def set_fault_rate(
        self, rate: float, faults: Sequence[Fault] = TRANSIENT_FAULTS, *, seed: int = 0
    ) -> None:
        """Fail a random `rate` of embeddings requests with one of `faults` (0 disables).

        Scripted faults from `enqueue` go first.

        Args:
            rate: the fraction of requests to fail, from 0 to 1.
            faults: the faults drawn from, uniformly; by default those a client should retry.
            seed: the same seed gives the same sequence of faulted requests.

        Raises:
            ValueError: `rate` outside 0..1, or a rate above 0 with no faults.
        """
        self._faults.set_rate(rate, faults, seed)

    def reset(self) -> None:
        """Forget recorded requests, scripted faults and the fault rate, and restart the
        shuffle sequence, the counters of `stats` and the rate limits' allowance, so the next
        request is answered as by a fresh emulator."""
        self._faults.clear()
        self._service.restart_order()
        self._stats.reset()
        self.rate_limits.reset()
        self.compute.reset_peaks()
        server = self._server
        if server is not None:
            self._connection_base = (server.connections_opened, server.connections_closed_idle)
        self._recorder.clear()

    # -- what happened -----------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far, oldest first (a copy)."""
        return self._recorder.requests()

    @property
    def embeddings_requests(self) -> list[RecordedRequest]:
        """Only the POST .../embeddings requests."""
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/embeddings")]

    @property
    def stats(self) -> EmulatorStats:
        """Counters since the start (or `reset()`): requests, rate-limit rejections, tokens,
        statuses, peak concurrent computations, connections and idle closes."""
        server = self._server
        opened, idle = (
            (server.connections_opened, server.connections_closed_idle) if server else (0, 0)
        )
        return self._stats.snapshot(
            peak_computing=self.compute.peak_computing,
            connections=opened - self._connection_base[0],
            idle_closed=idle - self._connection_base[1],
        )

    # -- the answers, for assertions ---------------------------------------------------------

    def embedding(
        self,
        text: str,
        model: str = DEFAULT_MODEL,
        dtype: Literal["float64", "float32"] = "float64",
    ) -> list[float]:
        """Exactly the vector the emulator returns for `text` under `model`.

        With `long_input="truncate"` an over-long text gets the vector of its truncation, as
        on the wire.

        Args:
            text: the input as sent.
            model: the model id it was sent with.
            dtype: "float64" for a float answer; "float32" for the values a base64 answer
                carries.

        Raises:
            ValueError: an unknown `dtype`.
        """
        limit = self.long_inputs.limit(model)
        tokenizer = default_tokenizer(model)
        if self.long_inputs.long_input == "truncate" and tokenizer.count(text) > limit:
            text = tokenizer.truncate(text, limit)
        dims = self._service.dimensions(model)
        vector: list[float] = orjson.loads(
            styled_vector_json(model, dims, text, self.endpoint.vectors)
        )
        if dtype == "float32":
            vector = list(struct.unpack(f"<{dims}f", struct.pack(f"<{dims}f", *vector)))
        elif dtype != "float64":
            raise ValueError(f'dtype must be "float64" or "float32", got {dtype!r}')
        return vector

    @staticmethod
    def count_tokens(text: str, model: str = DEFAULT_MODEL) -> int:
        """The tokens the emulator bills for `text` (and checks against the token limit).

        Args:
            text: the input as sent.
            model: the model whose tokenizer counts it.
        """
        return default_tokenizer(model).count(text)

    # -- serving -----------------------------------------------------------------------------

    def _running(self) -> EmulatorServer:
        if self._server is None:
            raise RuntimeError("the emulator is not running: use `with NebulaEmulator() as emu`")
        return self._server

    def _handle(self, request: Request) -> Reply:
        path = request.path.rstrip("/")
        if path.endswith("/embeddings"):
            if request.method == "POST":
                return self._embeddings(request)
            reply = error_reply(405, "Use POST for /embeddings.", headers=[("Allow", "POST")])
        elif request.method != "GET":
            reply = error_reply(404, f"No route for {request.method} {request.path}.")
        elif path.endswith("/serverless/models"):
            reply = self._service.catalogue()
        elif path.endswith("/models"):
            authorization = request.headers.get("Authorization")
            reply = self._service.authenticate(authorization) or self._service.models()
        elif path in ("/health", "/healthz", "/v1/health"):
            reply = Reply(200, b'{"status":"ok"}')
        else:
            reply = error_reply(404, f"No route for GET {request.path}.")
        self._recorder.record(request, reply.status, None, None, None)
        return reply

    def _embeddings(self, request: Request) -> Reply:
        outcome = self.endpoint.handle(request, self._running().stopping)
        reply = outcome.reply
        self._recorder.record(request, reply.status, outcome.model, outcome.inputs, outcome.fault)
        return reply


def _check_choice(name: str, value: object, choices: Sequence[object]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
