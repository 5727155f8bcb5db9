"""Streaming: `embed_iter`/`aembed_iter` pull inputs lazily and yield ordered batches in a window.

A stream is cut into batches of `batch_size` inputs. Each batch is checked and planned like one
`embed` call (the same `_start_job`, long-input plan, `dimensions` and `output`) and its
requests go to one `CallQueue` of the client's scheduler, so a stream takes its fair share of
the slots next to other calls. At most `window` batches are pulled ahead of the consumer: in
flight, queued or finished but not yet yielded. Memory is bounded by the window, not by the
length of the stream.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from nebula_core._batching import BatchLimits
from nebula_core._codec import Usage
from nebula_core._job import Job, consume_outcome, first_error
from nebula_core._scheduler import CallQueue
from nebula_core.errors import NebulaError

if TYPE_CHECKING:
    from nebula_core.client import NebulaClient

__all__ = ["EmbeddingBatch", "aembed_iter", "embed_iter"]

_Vectors = TypeVar("_Vectors")


@dataclass(frozen=True)
class EmbeddingBatch(Generic[_Vectors]):
    """The vectors of one batch of a stream: `embeddings[i]` belongs to input `start + i`.

    Attributes:
        start: the position in the stream of this batch's first input.
        embeddings: a `list[list[float]]` (`output="list"`) or a float32 `numpy.ndarray` of
            shape (len, D) (`output="numpy"`).
        usage: what this batch's requests cost.
    """

    start: int
    embeddings: _Vectors
    usage: Usage


@dataclass
class _Batch:
    start: int
    job: Job
    futures: list[concurrent.futures.Future[None]]
    tallied: bool = False


@dataclass
class _Window:
    """One stream's batches between being pulled and being yielded, and how to stop them."""

    client: NebulaClient
    model: str
    batch_size: int
    output: Any
    size: int
    queue: CallQueue
    pending: deque[_Batch] = field(default_factory=deque)
    position: int = 0
    exhausted: bool = False
    # An error of the input (a bad item, the iterator raising): raised once every batch
    # before it has been yielded; the batch holding it is never sent.
    deferred: Exception | None = None
    counted_call: bool = False
    limits: BatchLimits | None = None

    def wants_more(self) -> bool:
        return not self.exhausted and self.deferred is None and len(self.pending) < self.size

    def add(self, items: list[Any]) -> None:
        """Check, plan and queue the next batch of inputs (or note why it cannot be)."""
        if not items:
            self.exhausted = True
            return
        client = self.client
        try:
            job = client._start_job(
                items, self.model, self.batch_size, None, self.output, self.position
            )
        except (TypeError, ValueError, NebulaError) as error:
            self.deferred = error
            return
        # What one batch learned about refused request sizes (413s) holds for the next.
        if self.limits is None:
            self.limits = job.limits
        job.limits = self.limits
        futures = [
            self.queue.submit(client._embed_batch, job, start, end)
            for start, end in client._ranges(job, self.batch_size)
        ]
        self.pending.append(_Batch(self.position, job, futures))
        self.position += len(items)

    def finish(self, batch: _Batch) -> EmbeddingBatch[Any]:
        """The batch's result, or its error (the caller then stops the whole stream)."""
        error = first_error(f for f in batch.futures if f.done())
        if error is not None:
            raise error
        self.tally(batch)
        result = self.client._finish(batch.job)
        return EmbeddingBatch(batch.start, result.embeddings, result.usage)

    def tally(self, batch: _Batch) -> None:
        if not batch.tallied:
            batch.tallied = True
            self.client._tally(batch.job, calls=0 if self.counted_call else 1)
            self.counted_call = True

    def stop(self) -> list[concurrent.futures.Future[None]]:
        """Start no further request: queued batches are dropped, backoff sleeps end. Returns
        the futures that may still be running, for the caller to wait on."""
        futures: list[concurrent.futures.Future[None]] = []
        for batch in self.pending:
            batch.job.stop(batch.futures)
            # A future cancelled before it ran is never "notified": waiting on it would hang.
            futures.extend(f for f in batch.futures if not f.cancelled())
        self.queue.close()
        return futures

    def tally_stopped(self) -> None:
        # Their requests were sent and may have been billed: the client's stats count them.
        for batch in self.pending:
            self.tally(batch)
        self.pending.clear()


def _window_size(client: NebulaClient, window: int | None) -> int:
    if window is None:
        return 2 * client.config.max_concurrency
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an integer >= 1 or None, got {window!r}.")
    return window


def _open(
    client: NebulaClient,
    texts: object,
    model: str,
    batch_size: int,
    output: Any,
    window: int | None,
) -> _Window:
    """Check the arguments now, when the caller asks for the iterator, not at its first item."""
    if isinstance(texts, (str, bytes)) or not isinstance(texts, (Iterable, AsyncIterable)):
        raise TypeError(
            f"texts must be an iterable of strings, got {type(texts).__name__}; "
            "wrap a single text in a list: embed_iter([text])."
        )
    client._check_fork()
    client._check_call(model, batch_size, output)
    size = _window_size(client, window)
    queue = client._get_scheduler().open_queue()
    return _Window(client, model, batch_size, output, size, queue)


def embed_iter(
    client: NebulaClient,
    texts: Iterable[str],
    model: str,
    batch_size: int,
    output: Any,
    window: int | None,
) -> Iterator[EmbeddingBatch[Any]]:
    """See `NebulaClient.embed_iter`."""
    if isinstance(texts, AsyncIterable) and not isinstance(texts, Iterable):
        raise TypeError("embed_iter takes a (sync) iterable; use aembed_iter for an async one.")
    state = _open(client, texts, model, batch_size, output, window)
    return _iterate(state, iter(texts))


def _iterate(state: _Window, source: Iterator[str]) -> Iterator[EmbeddingBatch[Any]]:
    try:
        while True:
            while state.wants_more():
                try:
                    items = list(islice(source, state.batch_size))
                except Exception as error:  # the caller's iterator failed: theirs to see
                    state.deferred = error
                    break
                state.add(items)
            if not state.pending:
                break
            batch = state.pending[0]
            if state.queue.nested:  # inside a batch of this client: run in its held slot
                state.queue.help()
            concurrent.futures.wait(batch.futures, return_when=concurrent.futures.FIRST_EXCEPTION)
            result = state.finish(batch)
            state.pending.popleft()
            yield result
            del result  # the consumer holds it; the stream keeps no reference
        if state.deferred is not None:
            raise state.deferred
    finally:
        # A break, close(), error or Ctrl-C: stop queued batches and let those on the wire
        # end, so nothing of this stream runs once the consumer moves on.
        concurrent.futures.wait(state.stop())
        state.tally_stopped()


def aembed_iter(
    client: NebulaClient,
    texts: Iterable[str] | AsyncIterable[str],
    model: str,
    batch_size: int,
    output: Any,
    window: int | None,
) -> AsyncIterator[EmbeddingBatch[Any]]:
    """See `NebulaClient.aembed_iter`."""
    state = _open(client, texts, model, batch_size, output, window)
    if isinstance(texts, AsyncIterable):
        return _aiterate(state, None, aiter(texts))
    return _aiterate(state, iter(texts), None)


async def _take(
    sync: Iterator[str] | None, source: AsyncIterator[str] | None, count: int
) -> list[str]:
    if sync is not None:
        return list(islice(sync, count))
    assert source is not None
    items: list[str] = []
    async for item in source:
        items.append(item)
        if len(items) == count:
            break
    return items


async def _aiterate(
    state: _Window, sync: Iterator[str] | None, source: AsyncIterator[str] | None
) -> AsyncIterator[EmbeddingBatch[Any]]:
    try:
        while True:
            while state.wants_more():
                try:
                    items = await _take(sync, source, state.batch_size)
                except Exception as error:  # the caller's iterator failed: theirs to see
                    state.deferred = error
                    break
                state.add(items)
            if not state.pending:
                break
            batch = state.pending[0]
            if state.queue.nested:  # a private loop inside a batch: run in its held slot
                state.queue.help()
            awaitables = [asyncio.wrap_future(f) for f in batch.futures]
            for awaitable in awaitables:
                awaitable.add_done_callback(consume_outcome)
            await asyncio.wait(awaitables, return_when=asyncio.FIRST_EXCEPTION)
            result = state.finish(batch)
            state.pending.popleft()
            yield result
            del result
        if state.deferred is not None:
            raise state.deferred
    finally:
        running = [f for f in state.stop() if not f.done()]
        if running:
            waiting = [asyncio.wrap_future(f) for f in running]
            for awaitable in waiting:
                awaitable.add_done_callback(consume_outcome)
            # Cancelled again while stopping: give up waiting; requests end within `timeout`.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait(waiting)
        state.tally_stopped()
