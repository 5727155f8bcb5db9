"""`NebulaClient`: batched, concurrent, retried and index-ordered calls to `/embeddings`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nebula_core._batching import batch_ranges, classify_413, halves, says_input_too_long
from nebula_core._codec import Usage, encode_request, unpack_embeddings
from nebula_core._config import ClientConfig
from nebula_core._job import Job, ProgressCallback
from nebula_core._ratelimit import Pacer, estimate_tokens
from nebula_core._retry import Cancelled, run_with_retries, should_retry
from nebula_core._scheduler import CallQueue, Scheduler
from nebula_core._transport import Transport
from nebula_core._validation import validate_texts
from nebula_core.errors import BadRequestError, NebulaError
from nebula_core.models import DEFAULT_MODEL

__all__ = ["ClientStats", "EmbeddingResult", "NebulaClient", "ProgressCallback"]

logger = logging.getLogger("nebula_core")


@dataclass(frozen=True)
class EmbeddingResult:
    """The vectors of one `embed` call, in input order, and what producing them cost."""

    embeddings: list[list[float]]
    usage: Usage
    model: str
    requests: int
    retries: int


@dataclass(frozen=True)
class ClientStats:
    """What a client has spent since it was created (or unpickled), over every call.

    Failed calls count too: their requests and retries were sent and may have been billed.
    """

    calls: int = 0
    inputs: int = 0
    requests: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    total_tokens: int = 0


class NebulaClient:
    """A thread-safe, picklable client for NebulaBlock's `POST /embeddings`.

    Arguments win over the `NEBULA_API_KEY` / `NEBULA_BASE_URL` environment variables. Batches
    run concurrently (at most `max_concurrency` requests in flight, sync or async); each batch
    is retried by one tenacity loop; results are always placed by the response's `index`.

    >>> client = NebulaClient()                                     # doctest: +SKIP
    >>> client.embed(["first text", "second text"]).embeddings      # doctest: +SKIP
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 6,
        max_concurrency: int = 4,
        default_headers: Mapping[str, str] | None = None,
        *,
        deadline: float | None = None,
        max_retry_wait: float = 60.0,
        retry_base_wait: float = 0.5,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
    ) -> None:
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
        )
        self._init_transport()

    def _init_transport(self) -> None:
        """State that must not cross a pickle or a fork: pools, locks, pacing and counters."""
        config = self._config
        self._pacer = Pacer(config.requests_per_minute, config.tokens_per_minute)
        self._stats = ClientStats()
        self._transport_lock = threading.Lock()
        self._transport = Transport(config)
        self._scheduler: Scheduler | None = None
        self._owner_pid = os.getpid()

    @property
    def config(self) -> ClientConfig:
        """The validated settings (the key inside is a `Secret` that never prints)."""
        return self._config

    @property
    def stats(self) -> ClientStats:
        """Requests, retries and tokens spent so far by every call of this client."""
        return self._stats

    def _tally(self, job: Job) -> None:
        with self._transport_lock:
            s = self._stats
            self._stats = ClientStats(
                calls=s.calls + 1,
                inputs=s.inputs + job.completed,
                requests=s.requests + job.requests,
                retries=s.retries + job.retries,
                prompt_tokens=s.prompt_tokens + job.usage.prompt_tokens,
                total_tokens=s.total_tokens + job.usage.total_tokens,
            )

    @property
    def base_url(self) -> str:
        return self._config.base_url

    def __repr__(self) -> str:
        c = self._config
        return (
            f"NebulaClient(base_url={c.base_url!r}, timeout={c.timeout:g}, "
            f"max_retries={c.max_retries}, max_concurrency={c.max_concurrency})"
        )

    # -- pickling: the key and settings travel; sessions, pools and locks are rebuilt lazily --

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self._config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._config = state["config"]
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

    def embed(
        self,
        texts: Sequence[str],
        model: str = DEFAULT_MODEL,
        batch_size: int = 64,
        *,
        on_progress: ProgressCallback | None = None,
    ) -> EmbeddingResult:
        """Embed `texts` in order: `result.embeddings[i]` is the vector of `texts[i]`.

        Invalid inputs raise `TypeError`/`ValueError` before any request; an empty list returns
        an empty result without a request.
        """
        self._check_fork()
        job = self._start_job(texts, model, batch_size, on_progress)
        try:
            self._run(job, batch_ranges(len(job.texts), batch_size))
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
            error = _first_error(done)
            if error is not None:
                # Stop the other batches, and let those on the wire finish, so that no request
                # of this call is still running once the caller sees the error.
                job.stop(futures)
                concurrent.futures.wait(futures)
                raise error
        finally:
            queue.close()

    async def aembed(
        self,
        texts: Sequence[str],
        model: str = DEFAULT_MODEL,
        batch_size: int = 64,
        *,
        on_progress: ProgressCallback | None = None,
    ) -> EmbeddingResult:
        """`embed` for asyncio: the event loop never waits on the network.

        Requests run in the client's worker threads (at most `max_concurrency` at once).
        Cancelling the awaiting task stops new requests and aborts backoff sleeps at once.
        """
        self._check_fork()
        job = self._start_job(texts, model, batch_size, on_progress)
        try:
            await self._arun(job, batch_ranges(len(job.texts), batch_size))
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
        awaitables = [asyncio.wrap_future(future) for future in futures]
        for awaitable in awaitables:
            # Errors are re-raised below, once; this keeps asyncio from logging the others.
            awaitable.add_done_callback(_consume_outcome)
        try:
            done, _ = await asyncio.wait(awaitables, return_when=asyncio.FIRST_EXCEPTION)
        except BaseException:
            # The task was cancelled: no new request starts; backoff sleeps end at once.
            job.stop(futures)
            raise
        error = _first_error(done)
        if error is not None:
            job.stop(futures)
            await asyncio.wait(awaitables)
            raise error

    # -- the work ---------------------------------------------------------------------------

    def _start_job(
        self,
        texts: Sequence[str],
        model: str,
        batch_size: int,
        on_progress: ProgressCallback | None,
    ) -> Job:
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"model must be a non-empty model id, got {model!r}.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
        items = validate_texts(texts)
        return Job(items, model, batch_size, self._config.deadline, on_progress)

    @staticmethod
    def _finish(job: Job) -> EmbeddingResult:
        if job.completed != len(job.texts):
            # Unreachable unless a batch vanished without an error: never return a short
            # result whose empty placeholders could be taken for vectors.
            raise NebulaError(
                f"Only {job.completed} of {len(job.texts)} inputs were embedded and no error "
                "said why; nothing is returned. Please report this as a bug."
            )
        return EmbeddingResult(job.vectors, job.usage, job.model, job.requests, job.retries)

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
                vectors, usage = self._send_batch(job, low, high)
            except BadRequestError as error:
                if not self._refused_as_too_large(job, low, high, error):
                    raise
                if high - low == 1:
                    self._embed_refused_input(job, low, error)
                else:
                    pending.extend(reversed(halves(low, high)))
                continue
            job.store(low, vectors, usage)

    @staticmethod
    def _refused_as_too_large(job: Job, start: int, end: int, error: BadRequestError) -> bool:
        """Is this a size refusal worth splitting for? Learns the call's limits from it."""
        if error.status_code == 400:
            # A 400 naming a token limit is about one input; others are not about size.
            return end - start == 1 and says_input_too_long(error.server_message)
        if error.status_code != 413:
            return False
        refusal = classify_413(error)
        if job.limits.learn(refusal, job.texts[start:end]):
            logger.warning(
                "NebulaBlock refused %d inputs in one request (HTTP 413, %s); this call now "
                "splits requests at least that large.",
                end - start,
                refusal.value.replace("_", " "),
            )
        return True

    def _embed_refused_input(self, job: Job, position: int, error: BadRequestError) -> None:
        """The one input at `position` was refused as too long on its own."""
        status = error.status_code
        raise BadRequestError(
            f"The input at position {position} alone is too large for the service "
            f"(HTTP {status}: {error.server_message or 'payload too large'}); shorten it "
            "or split it into smaller chunks.",
            status_code=status,
            server_message=error.server_message,
        ) from None

    def _send_batch(self, job: Job, start: int, end: int) -> tuple[list[list[float]], Usage]:
        batch = job.texts[start:end]
        where = f"inputs {start}..{end - 1}" if end - start > 1 else f"input {start}"
        body = encode_request(job.model, batch)
        estimated = estimate_tokens(batch) if self._pacer.active else 0

        def send_once() -> tuple[list[list[float]], Usage]:
            if job.cancelled.is_set():
                raise Cancelled
            self._pacer.acquire(estimated, job.sleep)
            timeout = self._config.timeout
            remaining = job.remaining()
            if remaining is not None:
                if remaining <= 0:
                    raise job.deadline_error(None)
                timeout = min(timeout, remaining)
            job.count_request()
            answer = self._transport.post(body, timeout, where)
            vectors, usage = unpack_embeddings(answer.content, end - start)
            self._pacer.settle(estimated, usage.total_tokens)
            return vectors, usage

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


def _first_error(
    done: Iterable[asyncio.Future[None] | concurrent.futures.Future[None]],
) -> BaseException | None:
    """The error that ended a call; a `Cancelled` is only an echo of stopping, never the cause."""
    errors = [f.exception() for f in done if not f.cancelled() and f.exception() is not None]
    real = [e for e in errors if not isinstance(e, Cancelled)]
    return (real or errors or [None])[0]


def _consume_outcome(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
