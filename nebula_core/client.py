"""`NebulaClient`: batched, concurrent, retried and index-ordered calls to `/embeddings`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

from nebula_core import _streaming
from nebula_core._batching import batch_ranges, classify_413, halves
from nebula_core._codec import (
    OUTPUTS,
    DecodedBatch,
    EncodingChoice,
    EncodingFormat,
    Output,
    Usage,
    base64_refused_error,
    decode_embeddings,
    encode_request,
    names_encoding_format,
    require_numpy,
)
from nebula_core._config import ClientConfig
from nebula_core._job import Job, ProgressCallback, consume_outcome, first_error
from nebula_core._long_inputs import (
    LongInputPolicy,
    LongInputSettings,
    effective_limit,
    limit_from_message,
    over_limit,
    plan_long_inputs,
    token_ranges,
    too_long_error,
)
from nebula_core._pacing import Pacer, estimate_tokens
from nebula_core._retry import Cancelled, run_with_retries, should_retry
from nebula_core._scheduler import CallQueue, Scheduler
from nebula_core._tokens import count_tokens_many
from nebula_core._transport import Answer, Transport
from nebula_core._validation import validate_texts
from nebula_core.errors import APIStatusError, BadRequestError, NebulaError
from nebula_core.models import DEFAULT_MODEL, check_dimensions, model_info, reduce_dimensions

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, AsyncIterator, Iterator

    from nebula_core._codec import FloatArray
    from nebula_core._streaming import EmbeddingBatch

__all__ = ["ClientStats", "EmbeddingResult", "NebulaClient", "ProgressCallback"]

logger = logging.getLogger("nebula_core")


_Vectors = TypeVar("_Vectors")


@dataclass(frozen=True)
class EmbeddingResult(Generic[_Vectors]):
    """The vectors of one `embed` call, in input order, and what producing them cost.

    `embeddings` is a `list[list[float]]` (`output="list"`, the default) or a float32
    `numpy.ndarray` of shape (N, D) (`output="numpy"`); type checkers see which from the
    `output` argument.

    Attributes:
        embeddings: one vector per input, `embeddings[i]` for `texts[i]`.
        usage: tokens the service counted, summed over the call's requests.
        model: the model id the vectors came from.
        requests: HTTP requests sent, retries included.
        retries: requests that were retries of a failed one.
    """

    embeddings: _Vectors
    usage: Usage
    model: str
    requests: int
    retries: int


@dataclass(frozen=True)
class ClientStats:
    """What a client has spent since it was created (or unpickled), over every call.

    Failed calls count too: their requests and retries were sent and may have been billed.

    Attributes:
        calls: `embed`/`aembed` calls made, successful or not.
        inputs: inputs embedded.
        requests / retries: HTTP requests sent, and how many of them were retries.
        prompt_tokens / total_tokens: tokens the service reported in its `usage`.
        throttled: 429 answers received, retried or not.
        pacing_wait_seconds: time spent waiting for the client-side pacer.
        learned_requests_per_minute / learned_tokens_per_minute: this process's pace as
            learned from headers and 429s; None while no limit is known.
    """

    calls: int = 0
    inputs: int = 0
    requests: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    total_tokens: int = 0
    # Pacing, shared by every call: 429 answers received (retried or not), seconds spent
    # waiting for the pacer, and this process's learned pace (None: no limit known).
    throttled: int = 0
    pacing_wait_seconds: float = 0.0
    learned_requests_per_minute: float | None = None
    learned_tokens_per_minute: float | None = None


class NebulaClient:
    """A thread-safe, picklable client for NebulaBlock's `POST /embeddings`.

    Arguments win over the `NEBULA_API_KEY` / `NEBULA_BASE_URL` environment variables. Batches
    run concurrently (at most `max_concurrency` requests in flight, sync or async); each batch
    is retried by one tenacity loop; results are always placed by the response's `index`.

    >>> client = NebulaClient()                                     # doctest: +SKIP
    >>> client.embed(["first text", "second text"]).embeddings      # doctest: +SKIP

    Args:
        api_key: the NebulaBlock key; None reads `NEBULA_API_KEY`. Kept in a `Secret`, so it
            never appears in a repr, log line, error or pickle dump.
        base_url: the API root; None reads `NEBULA_BASE_URL`, else the public API.
        timeout: seconds to wait for one response before an `APITimeoutError` (retried).
        max_retries: retries per request after a 429, a transient 4xx/5xx, a timeout or a
            dropped connection; 0 turns retrying off.
        max_concurrency: requests in flight at once, shared fairly by every call running on
            this client, sync and async alike.
        default_headers: extra headers for every request (gateways); `Authorization` is
            refused, the key goes in `api_key`.
        deadline: overall seconds one embed call may take, retries and backoff included.
        max_retry_wait: the longest single backoff, also the cap on a server's `Retry-After`.
        retry_base_wait: the first backoff step; it doubles with every retry.
        requests_per_minute / tokens_per_minute: hard caps on this client's pace; without
            them the pace is learned from `x-ratelimit-*` headers and 429s.
        on_long_input: what happens to an input over the model's token limit: "truncate" it,
            "average" the vectors of its pieces, or raise `InputTooLongError` ("error").
        max_input_tokens: the per-input token limit, for models the catalogue lacks or a
            deployment with a smaller one.
        max_tokens_per_request: also cap each request's total tokens, not only its inputs.
        dimensions: cut vectors of a Matryoshka model to this length (re-normalized).
        encoding_format: how vectors travel: "auto" (base64, then floats for good if the
            service refuses the field), "base64", or "float".
        rate_limit_share: this process's part of the account's rate limits when N processes
            share the key (1 / N); scales the caps and the limits read from headers.

    Raises:
        ConfigurationError: no key, a base URL that is not a URL, or an option out of range
            (named in the message).
        ValueError: `on_long_input`, `max_input_tokens`, `max_tokens_per_request` or
            `dimensions` out of range.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 6,
        max_concurrency: int = 8,
        default_headers: Mapping[str, str] | None = None,
        *,
        deadline: float | None = None,
        max_retry_wait: float = 60.0,
        retry_base_wait: float = 0.5,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        on_long_input: LongInputPolicy = "truncate",
        max_input_tokens: int | None = None,
        max_tokens_per_request: int | None = None,
        dimensions: int | None = None,
        encoding_format: EncodingFormat = "auto",
        rate_limit_share: float = 1.0,
    ) -> None:
        self._long = LongInputSettings.build(
            on_long_input, max_input_tokens, max_tokens_per_request, dimensions
        )
        self._config = ClientConfig.build(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            max_concurrency=max_concurrency,
            default_headers=default_headers,
            max_retry_wait=max_retry_wait,
            retry_base_wait=retry_base_wait,
            deadline=deadline,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
            encoding_format=encoding_format,
            rate_limit_share=rate_limit_share,
        )
        self._init_transport()

    def _init_transport(self) -> None:
        """State that must not cross a pickle or a fork: pools, locks, pacing and counters."""
        config = self._config
        self._pacer = Pacer(
            config.requests_per_minute, config.tokens_per_minute, share=config.rate_limit_share
        )
        self._encoding = EncodingChoice(config.encoding_format)
        self._stats = ClientStats()
        self._transport_lock = threading.Lock()
        self._transport = Transport(config)
        self._scheduler: Scheduler | None = None
        self._owner_pid = os.getpid()
        # Token limits the service named when it refused an input, per model (unknown models).
        self._learned_limits: dict[str, int] = {}

    @property
    def config(self) -> ClientConfig:
        """The validated settings (the key inside is a `Secret` that never prints)."""
        return self._config

    @property
    def stats(self) -> ClientStats:
        """Requests, retries, tokens, 429s and pacing waits so far, over every call."""
        pacing = self._pacer.stats
        return dataclasses.replace(
            self._stats,
            throttled=pacing.throttled_responses,
            pacing_wait_seconds=pacing.wait_seconds,
            learned_requests_per_minute=pacing.learned_requests_per_minute,
            learned_tokens_per_minute=pacing.learned_tokens_per_minute,
        )

    def _tally(self, job: Job, calls: int = 1) -> None:
        with self._transport_lock:
            s = self._stats
            self._stats = ClientStats(
                calls=s.calls + calls,
                inputs=s.inputs + job.completed,
                requests=s.requests + job.requests,
                retries=s.retries + job.retries,
                prompt_tokens=s.prompt_tokens + job.usage.prompt_tokens,
                total_tokens=s.total_tokens + job.usage.total_tokens,
            )

    @property
    def base_url(self) -> str:
        """The API root requests go to, as resolved from the argument or `NEBULA_BASE_URL`."""
        return self._config.base_url

    def __repr__(self) -> str:
        c = self._config
        return (
            f"NebulaClient(base_url={c.base_url!r}, timeout={c.timeout:g}, "
            f"max_retries={c.max_retries}, max_concurrency={c.max_concurrency})"
        )

    # -- pickling: the key and settings travel; sessions, pools and locks are rebuilt lazily --

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self._config, "long_inputs": self._long}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._config = state["config"]
        self._long = state.get("long_inputs", LongInputSettings())
        self._init_transport()

    # -- transport --------------------------------------------------------------------------

    def _check_fork(self) -> None:
        # A session or pool copied into a forked child shares sockets and dead threads with
        # the parent: start fresh in the child.
        if self._owner_pid != os.getpid():
            self._init_transport()

    def _get_scheduler(self) -> Scheduler:
        scheduler = self._scheduler
        if scheduler is None:
            with self._transport_lock:
                if self._scheduler is None:
                    self._scheduler = Scheduler(self._config.max_concurrency)
                scheduler = self._scheduler
        return scheduler

    def close(self) -> None:
        """Release pooled connections and worker threads; the client can still be used after.

        Calls running elsewhere finish with complete results (their batches run on, with a
        fresh session), still within `max_concurrency`; later calls start new workers.
        """
        self._check_fork()
        scheduler = self._scheduler
        if scheduler is not None:
            scheduler.close()
        self._transport.close()

    def __enter__(self) -> NebulaClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- public API -------------------------------------------------------------------------

    @overload
    def embed(
        self,
        texts: Sequence[str],
        model: str = ...,
        batch_size: int = ...,
        *,
        on_progress: ProgressCallback | None = ...,
        output: Literal["list"] = ...,
    ) -> EmbeddingResult[list[list[float]]]: ...

    @overload
    def embed(
        self,
        texts: Sequence[str],
        model: str = ...,
        batch_size: int = ...,
        *,
        on_progress: ProgressCallback | None = ...,
        output: Literal["numpy"],
    ) -> EmbeddingResult[FloatArray]: ...

    def embed(
        self,
        texts: Sequence[str],
        model: str = DEFAULT_MODEL,
        batch_size: int = 64,
        *,
        on_progress: ProgressCallback | None = None,
        output: Output = "list",
    ) -> EmbeddingResult[Any]:
        """Embed `texts` in order: `result.embeddings[i]` is the vector of `texts[i]`.

        `output="numpy"` returns one float32 array of shape (N, D) instead of lists (needs the
        `[numpy]` extra); from base64 answers it is built without any Python float.
        Invalid inputs raise `TypeError`/`ValueError` before any request; an empty list returns
        an empty result without a request.

        Args:
            texts: non-empty strings; long ones are handled as `on_long_input` says.
            model: the model id; unknown ids work, their width comes from the first answer.
            batch_size: the most inputs sent in one request.
            on_progress: called from worker threads with the number of inputs each finished
                batch embedded (a tqdm bar's `update` fits).
            output: "list" for `list[list[float]]`, "numpy" for a float32 array.

        Returns:
            The vectors in input order, with the usage, requests and retries they cost.

        Raises:
            TypeError, ValueError: bad `texts`, `model`, `batch_size` or `output`, or a
                `dimensions` this model cannot give; before any request.
            NebulaError: a subclass saying what failed once retries are spent (see
                `nebula_core.errors`); no partial result is returned.
        """
        self._check_fork()
        job = self._start_job(texts, model, batch_size, on_progress, output)
        try:
            self._run(job, self._ranges(job, batch_size))
        finally:
            self._tally(job)
        return self._finish(job)

    def _run(self, job: Job, ranges: list[tuple[int, int]]) -> None:
        if not ranges:
            return
        queue = self._get_scheduler().open_queue()
        try:
            futures = [
                queue.submit(self._embed_batch, job, start, end, wake=False)
                for start, end in ranges
            ]
            try:
                # The caller runs its own batches while its turn comes first (a one-batch
                # call: no thread hop at all); workers take the other slots.
                queue.help()
                done, _ = concurrent.futures.wait(
                    futures, return_when=concurrent.futures.FIRST_EXCEPTION
                )
            except BaseException:
                # Ctrl-C in the caller's thread: stop sending and return at once; requests
                # already on the wire end within `timeout` and are not waited for.
                job.stop(futures)
                raise
            error = first_error(done)
            if error is not None:
                # Stop the other batches, and let those on the wire finish, so that no request
                # of this call is still running once the caller sees the error.
                job.stop(futures)
                concurrent.futures.wait(futures)
                raise error
        finally:
            queue.close()

    @overload
    async def aembed(
        self,
        texts: Sequence[str],
        model: str = ...,
        batch_size: int = ...,
        *,
        on_progress: ProgressCallback | None = ...,
        output: Literal["list"] = ...,
    ) -> EmbeddingResult[list[list[float]]]: ...

    @overload
    async def aembed(
        self,
        texts: Sequence[str],
        model: str = ...,
        batch_size: int = ...,
        *,
        on_progress: ProgressCallback | None = ...,
        output: Literal["numpy"],
    ) -> EmbeddingResult[FloatArray]: ...

    async def aembed(
        self,
        texts: Sequence[str],
        model: str = DEFAULT_MODEL,
        batch_size: int = 64,
        *,
        on_progress: ProgressCallback | None = None,
        output: Output = "list",
    ) -> EmbeddingResult[Any]:
        """`embed` for asyncio: the event loop never waits on the network.

        Requests run in the client's worker threads (at most `max_concurrency` at once).
        Cancelling the awaiting task stops new requests and aborts backoff sleeps at once.

        Args:
            texts: non-empty strings; long ones are handled as `on_long_input` says.
            model: the model id.
            batch_size: the most inputs sent in one request.
            on_progress: called from worker threads, not the event loop, with the number of
                inputs each finished batch embedded.
            output: "list" for `list[list[float]]`, "numpy" for a float32 array.

        Returns:
            The same `EmbeddingResult` as `embed`.

        Raises:
            NebulaError: as `embed` does.
        """
        self._check_fork()
        job = self._start_job(texts, model, batch_size, on_progress, output)
        try:
            await self._arun(job, self._ranges(job, batch_size))
        finally:
            self._tally(job)
        return self._finish(job)

    async def _arun(self, job: Job, ranges: list[tuple[int, int]]) -> None:
        if not ranges:
            return
        queue = self._get_scheduler().open_queue()
        try:
            await self._await_batches(job, queue, ranges)
        finally:
            queue.close()

    async def _await_batches(
        self, job: Job, queue: CallQueue, ranges: list[tuple[int, int]]
    ) -> None:
        futures = [queue.submit(self._embed_batch, job, start, end) for start, end in ranges]
        if queue.nested:
            # Run from inside a batch of this client (a loop in an on_progress callback): its
            # slot is the one this call may use, so run the batches in it rather than wait.
            queue.help()
        awaitables = [asyncio.wrap_future(future) for future in futures]
        for awaitable in awaitables:
            # Errors are re-raised below, once; this keeps asyncio from logging the others.
            awaitable.add_done_callback(consume_outcome)
        try:
            done, _ = await asyncio.wait(awaitables, return_when=asyncio.FIRST_EXCEPTION)
        except BaseException:
            # The task was cancelled: no new request starts; backoff sleeps end at once.
            job.stop(futures)
            raise
        error = first_error(done)
        if error is not None:
            job.stop(futures)
            await asyncio.wait(awaitables)
            raise error

    def embed_iter(
        self,
        texts: Iterable[str],
        model: str = DEFAULT_MODEL,
        batch_size: int = 64,
        *,
        output: Output = "list",
        window: int | None = None,
    ) -> Iterator[EmbeddingBatch[Any]]:
        """Embed a stream of texts lazily, yielding `EmbeddingBatch(start, embeddings, usage)`
        in input order; see docs/streaming.md. At most `window` batches (default
        `2 * max_concurrency`) are pulled ahead, in flight or buffered.

        Args:
            texts: any iterable of non-empty strings, read only as far as the window needs.
            model: the model id.
            batch_size: inputs per batch, and the most sent in one request.
            output: "list" for `list[list[float]]`, "numpy" for float32 arrays.
            window: batches pulled ahead of the consumer; bounds memory, not speed.

        Raises:
            TypeError, ValueError: a bad option at once; a bad input (named by its position
                in the stream) after the batches before it are yielded.
            NebulaError: as `embed` does, when a batch fails.
        """
        return _streaming.embed_iter(self, texts, model, batch_size, output, window)

    def aembed_iter(
        self,
        texts: Iterable[str] | AsyncIterable[str],
        model: str = DEFAULT_MODEL,
        batch_size: int = 64,
        *,
        output: Output = "list",
        window: int | None = None,
    ) -> AsyncIterator[EmbeddingBatch[Any]]:
        """`embed_iter` for asyncio; `texts` may be an async iterable. Close it early with
        `contextlib.aclosing` (or cancel the task) to stop its requests at once.

        Args:
            texts: an iterable or async iterable of non-empty strings.
            model: the model id.
            batch_size: inputs per batch, and the most sent in one request.
            output: "list" for `list[list[float]]`, "numpy" for float32 arrays.
            window: batches pulled ahead of the consumer; bounds memory, not speed.

        Raises:
            TypeError, ValueError: a bad option at once; a bad input (named by its position
                in the stream) after the batches before it are yielded.
            NebulaError: as `embed` does, when a batch fails.
        """
        return _streaming.aembed_iter(self, texts, model, batch_size, output, window)

    # -- the work ---------------------------------------------------------------------------

    def _start_job(
        self,
        texts: Sequence[str],
        model: str,
        batch_size: int,
        on_progress: ProgressCallback | None,
        output: Output = "list",
        offset: int = 0,
    ) -> Job:
        """Check and plan one call's inputs; `offset` is the position of `texts[0]` in a
        stream (`embed_iter`), so messages and long-input plans name global positions."""
        self._check_call(model, batch_size, output)
        items = validate_texts(texts, offset)
        check_dimensions(model, self._long.dimensions)
        with self._transport_lock:
            learned = self._learned_limits.get(model)
        limit = effective_limit(model, self._long.max_input_tokens, learned)
        positions = range(offset, offset + len(items)) if offset else None
        plan = plan_long_inputs(items, model, self._long.on_long_input, limit, positions)
        job = Job(plan.texts, model, batch_size, self._config.deadline, on_progress, plan, output)
        job.offset = offset
        return job

    @staticmethod
    def _check_call(model: str, batch_size: int, output: Output) -> None:
        if output not in OUTPUTS:
            raise ValueError(f"output must be 'list' or 'numpy', got {output!r}.")
        if output == "numpy":
            require_numpy()  # fail before any request, not after the tokens are paid for
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"model must be a non-empty model id, got {model!r}.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}.")

    def _ranges(self, job: Job, batch_size: int) -> list[tuple[int, int]]:
        max_tokens = self._long.max_tokens_per_request
        if max_tokens is not None:
            return token_ranges(count_tokens_many(job.model, job.texts), batch_size, max_tokens)
        return batch_ranges(len(job.texts), batch_size)

    def _finish(self, job: Job) -> EmbeddingResult[Any]:
        if job.completed != len(job.texts):
            # Unreachable unless a batch vanished without an error: never return a short
            # result whose empty placeholders could be taken for vectors.
            raise NebulaError(
                f"Only {job.completed} of {len(job.texts)} inputs were embedded and no error "
                "said why; nothing is returned. Please report this as a bug."
            )
        warning = job.plan.warning()
        if warning is not None:
            logger.warning("%s", warning)
        reshaped = job.plan.merges or self._long.dimensions is not None
        embeddings: Any = job.vectors
        if job.output == "numpy":
            embeddings = job.array if job.array is not None else _empty_array(job.model)
            if reshaped and len(embeddings):
                # Averaging pieces and Matryoshka cuts work on lists; numpy gets the result.
                vectors = self._reshape(job, embeddings.tolist())
                embeddings = require_numpy().asarray(vectors, dtype="float32")
        elif reshaped:
            embeddings = self._reshape(job, job.vectors)
        return EmbeddingResult(embeddings, job.usage, job.model, job.requests, job.retries)

    def _reshape(self, job: Job, vectors: list[list[float]]) -> list[list[float]]:
        """One vector per caller input (pieces averaged), cut to `dimensions` if asked."""
        vectors = job.plan.combine(vectors)
        if self._long.dimensions is not None:
            vectors = reduce_dimensions(vectors, self._long.dimensions)
        return vectors

    def _embed_batch(self, job: Job, start: int, end: int) -> None:
        """One scheduled batch; its failure stops the call's batches that have not started."""
        try:
            self._embed_range(job, start, end)
        except BaseException:
            job.cancelled.set()
            raise

    def _embed_range(self, job: Job, start: int, end: int) -> None:
        """Embed texts[start:end]; a batch refused as too large is split in halves, retried."""
        pending = [(start, end)]
        while pending:
            low, high = pending.pop()
            pieces = job.limits.split(job.texts, low, high)
            if len(pieces) > 1:
                pending.extend(reversed(pieces))
                continue
            try:
                batch = self._send_batch(job, low, high)
            except BadRequestError as error:
                if limit_from_message(error.server_message) is not None:
                    # Too long for the model, not too big a batch: no size is learned.
                    self._embed_refused_range(job, low, high, error)
                    continue
                if error.status_code != 413:
                    raise
                if high - low == 1:
                    raise BadRequestError(
                        f"The input at position {job.plan.owner(low)} alone is too large for "
                        f"the service (HTTP 413: {error.server_message or 'payload too large'}); "
                        "shorten it or split it into smaller chunks.",
                        status_code=413,
                        server_message=error.server_message,
                    ) from None
                self._learn_from_413(job, low, high, error)
                pending.extend(reversed(halves(low, high)))
                continue
            job.store(low, batch)

    @staticmethod
    def _learn_from_413(job: Job, start: int, end: int, error: BadRequestError) -> None:
        """Later batches avoid only what this 413 proved too large (bytes or counts)."""
        refusal = classify_413(error)
        if job.limits.learn(refusal, job.texts[start:end]):
            logger.warning(
                "NebulaBlock refused %d inputs in one request (HTTP 413, %s); this call now "
                "splits requests at least that large.",
                end - start,
                refusal.value.replace("_", " "),
            )

    def _embed_refused_input(self, job: Job, position: int, error: BadRequestError) -> None:
        """The service refused job.texts[position] as too long: see `_embed_refused_range`."""
        self._embed_refused_range(job, position, position + 1, error)

    def _embed_refused_range(self, job: Job, start: int, end: int, error: BadRequestError) -> None:
        """The service refused job.texts[start:end] naming a token limit: remember the limit
        for this model, re-plan these inputs under `on_long_input`, and send them again.

        Raises `error` when it names no limit, and `InputTooLongError` under the "error" policy.
        """
        limit = limit_from_message(error.server_message)
        if limit is None:
            raise error
        policy = self._long.on_long_input
        for _ in range(4):
            with self._transport_lock:
                known = self._learned_limits.get(job.model)
                self._learned_limits[job.model] = limit if known is None else min(known, limit)
            if policy == "error":
                # Name every input of the call that the limit rules out, not just this batch.
                offenders = [
                    (job.plan.owner(i), n, exact)
                    for i, n, exact in over_limit(job.model, job.texts, limit)
                ] or [(job.plan.owner(p), limit, False) for p in range(start, end)]
                raise too_long_error(
                    job.model,
                    offenders,
                    limit,
                    status_code=error.status_code,
                    server_message=error.server_message,
                ) from None
            texts = job.texts[start:end]
            sub = plan_long_inputs(texts, job.model, policy, limit, range(start, end))
            try:
                vectors: list[list[float]] = []
                usage = Usage()
                for first in range(0, len(sub.texts), job.limits.max_inputs):
                    part = sub.texts[first : first + job.limits.max_inputs]
                    got = self._send_texts(job, part, _where(start + job.offset, end + job.offset))
                    vectors.extend(got.to_lists())
                    usage = usage + got.usage
            except BadRequestError as again:
                # Our estimate let a piece through that the service still counts as too long:
                # plan again with a limit a quarter lower (an exact count never gets here).
                named = limit_from_message(again.server_message)
                if named is None:
                    raise
                limit, error = min(named, limit * 3 // 4), again
                continue
            job.plan.note_cuts([(job.plan.owner(p), n, x) for p, n, x in sub.cuts], limit)
            combined = sub.combine(vectors)
            job.store(start, DecodedBatch(combined, len(combined[0]), usage))
            return
        raise error

    def _send_batch(self, job: Job, start: int, end: int) -> DecodedBatch:
        where = _where(start + job.offset, end + job.offset)
        return self._send_texts(job, job.texts[start:end], where)

    def _send_texts(self, job: Job, batch: list[str], where: str) -> DecodedBatch:
        estimated = estimate_tokens(batch)

        def post(encoding: Literal["base64", "float"], timeout: float) -> Answer:
            job.count_request()
            body = encode_request(job.model, batch, encoding)
            return self._transport.post(body, timeout, where)

        def send_once() -> DecodedBatch:
            if job.cancelled.is_set():
                raise Cancelled
            pacer = self._pacer
            permit = pacer.acquire(estimated, job.sleep)
            # Every answer, success or error, goes back to the pacer: it learns from both.
            status: int | None = None
            headers: Mapping[str, str] | None = None
            retry_after: float | None = None
            tokens: int | None = None
            try:
                timeout = self._config.timeout
                remaining = job.remaining()
                if remaining is not None:
                    if remaining <= 0:
                        raise job.deadline_error(None)
                    timeout = min(timeout, remaining)
                encoding = self._encoding.current()
                try:
                    try:
                        answer = post(encoding, timeout)
                    except BadRequestError as error:
                        if self._encoding.falls_back(encoding, error):
                            # Not a retry: the service told us what it accepts; ask again so.
                            answer = post("float", timeout)
                        elif encoding == "base64" and names_encoding_format(error):
                            raise base64_refused_error(error) from None
                        else:
                            raise
                except APIStatusError as error:
                    status, headers, retry_after = (
                        error.status_code,
                        error.headers,
                        error.retry_after,
                    )
                    raise
                status, headers = 200, answer.headers
                decoded = decode_embeddings(answer.content, len(batch))
                tokens = decoded.usage.total_tokens
            finally:
                pacer.observe(
                    permit, status=status, headers=headers, retry_after=retry_after, tokens=tokens
                )
            return decoded

        try:
            return run_with_retries(
                send_once,
                max_retries=self._config.max_retries,
                base_wait=self._config.retry_base_wait,
                max_wait=self._config.max_retry_wait,
                deadline_at=job.deadline_at,
                sleep=job.sleep,
                describe=where,
                on_retry=job.count_retry,
            )
        except NebulaError as error:
            # A retryable error that had retries left was stopped by the deadline.
            stopped_early = error.attempts <= self._config.max_retries
            if job.deadline_at is not None and should_retry(error) and stopped_early:
                raise job.deadline_error(error) from None
            raise


def _where(start: int, end: int) -> str:
    return f"inputs {start}..{end - 1}" if end - start > 1 else f"input {start}"


def _empty_array(model: str) -> FloatArray:
    """The (0, D) result of embedding nothing; D from the catalogue, else 0."""
    np = require_numpy()
    info = model_info(model)
    empty: FloatArray = np.empty((0, info.dimensions if info else 0), dtype=np.float32)
    return empty
