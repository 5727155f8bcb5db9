"""NebulaEmulator: the service on 127.0.0.1, with a recorder and a fault script."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import orjson

from nebula_core.models import DEFAULT_MODEL
from nebula_core.testing._faults import Fault, FaultSchedule
from nebula_core.testing._server import EmulatorServer, Headers, Request
from nebula_core.testing._service import EmbeddingsService
from nebula_core.testing._vectors import count_tokens, vector_json
from nebula_core.testing._wire import Reply, error_reply

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


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the emulator saw it.

    `model`/`inputs` are None when the body did not say (or for non-embeddings requests);
    `status` is 0 when the connection was dropped without an answer; `fault` is the name of
    the fault applied, e.g. "status:429"; `headers` ignore case, Authorization is masked.
    """

    model: str | None
    inputs: list[str] | None
    status: int
    fault: str | None
    headers: dict[str, str]
    path: str
    method: str = "POST"


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
    ) -> None:
        if not api_key or not isinstance(api_key, str):
            raise ValueError("api_key must be a non-empty string")
        if not (isinstance(max_inputs_per_request, int) and max_inputs_per_request >= 1):
            raise ValueError(f"max_inputs_per_request must be >= 1, got {max_inputs_per_request!r}")
        if not (isinstance(unknown_model_dimensions, int) and unknown_model_dimensions >= 1):
            raise ValueError(
                f"unknown_model_dimensions must be >= 1, got {unknown_model_dimensions!r}"
            )
        self._host = host
        self._port = port
        self._api_key = api_key
        self._quiet = quiet
        self.latency = latency
        self._service = EmbeddingsService(
            api_key=api_key,
            max_inputs_per_request=max_inputs_per_request,
            shuffle=shuffle,
            seed=seed,
            unknown_model_dimensions=unknown_model_dimensions,
        )
        self._faults = FaultSchedule()
        self._records: list[RecordedRequest] = []
        self._records_lock = threading.Lock()
        self._server: EmulatorServer | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> NebulaEmulator:
        """Bind the port and serve in a background thread."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        server = EmulatorServer(self._host, self._port, self._handle, quiet=self._quiet)
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
        """The port actually bound (useful with port=0)."""
        return self._running().server_port

    @property
    def base_url(self) -> str:
        """E.g. "http://127.0.0.1:54321/v1", what clients take as `base_url`."""
        host = self._host if ":" not in self._host else f"[{self._host}]"
        return f"http://{host}:{self.port}/v1"

    @property
    def api_key(self) -> str:
        return self._api_key

    def env(self) -> dict[str, str]:
        """The environment variables that point a client at this emulator."""
        return {"NEBULA_API_KEY": self._api_key, "NEBULA_BASE_URL": self.base_url}

    # -- behaviour ---------------------------------------------------------------------------

    @property
    def latency(self) -> float:
        """Seconds added to every embeddings request; may be changed while running."""
        return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError(f"latency must be >= 0 seconds, got {seconds!r}")
        self._latency = float(seconds)

    def enqueue(self, *faults: Fault) -> None:
        """Script faults: each is used up by the next POST /embeddings, first in first out."""
        self._faults.enqueue(faults)

    def set_fault_rate(
        self, rate: float, faults: Sequence[Fault] = TRANSIENT_FAULTS, *, seed: int = 0
    ) -> None:
        """Fail a random `rate` of embeddings requests with one of `faults` (0 disables).

        Scripted faults from `enqueue` go first. The same seed gives the same sequence of
        faulted requests.
        """
        self._faults.set_rate(rate, faults, seed)

    def reset(self) -> None:
        """Forget recorded requests, scripted faults and the fault rate, and restart the
        shuffle sequence, so the next request is answered as by a fresh emulator."""
        self._faults.clear()
        self._service.restart_order()
        with self._records_lock:
            self._records.clear()

    # -- what happened -----------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far, oldest first (a copy)."""
        with self._records_lock:
            return list(self._records)

    @property
    def embeddings_requests(self) -> list[RecordedRequest]:
        """Only the POST .../embeddings requests."""
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/embeddings")]

    # -- the answers, for assertions ---------------------------------------------------------

    def embedding(self, text: str, model: str = DEFAULT_MODEL) -> list[float]:
        """Exactly the vector the emulator returns for `text` under `model`."""
        vector: list[float] = orjson.loads(
            vector_json(model, self._service.dimensions(model), text)
        )
        return vector

    @staticmethod
    def count_tokens(text: str) -> int:
        """The tokens the emulator bills for `text` (and checks against the context length)."""
        return count_tokens(text)

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
        self._record(request, reply.status, None, None, None)
        return reply

    def _embeddings(self, request: Request) -> Reply:
        fault = self._faults.next()
        call = self._service.parse(request.body)
        wait = self._latency + (fault.seconds if fault else 0.0)
        if wait and self._server is not None:
            self._server.stopping.wait(wait)  # stop() cuts a long delay short

        reply = fault.replacement() if fault else None
        if reply is None:
            service = self._service
            reply = service.authenticate(request.headers.get("Authorization")) or call.problem
            if reply is None:
                assert call.model is not None and call.inputs is not None
                reply = service.embed(call.model, call.inputs)
            if fault:
                reply = fault.mangle(reply)
        self._record(request, reply.status, call.model, call.inputs, fault)
        return reply

    def _record(
        self,
        request: Request,
        status: int,
        model: str | None,
        inputs: list[str] | None,
        fault: Fault | None,
    ) -> None:
        # Recorded before the reply is sent, so a test sees it as soon as its call returns.
        headers = Headers(request.headers.items())
        if "authorization" in headers:
            scheme = headers["authorization"].split(" ", 1)[0]
            headers["authorization"] = "Bearer ***" if scheme.lower() == "bearer" else "***"
        record = RecordedRequest(
            model=model,
            inputs=inputs,
            status=status,
            fault=fault.name if fault else None,
            headers=headers,
            path=request.path,
            method=request.method,
        )
        with self._records_lock:
            self._records.append(record)
