"""The shared state of one embed call: its results, counters, deadline and cancel switch."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from nebula_core._batching import BatchLimits
from nebula_core._codec import DecodedBatch, Output, Usage, require_numpy
from nebula_core._long_inputs import LongInputPlan
from nebula_core._retry import Cancelled
from nebula_core.errors import DeadlineExceededError, NebulaError, ResponseFormatError

if TYPE_CHECKING:
    from nebula_core._codec import FloatArray

__all__ = ["Job", "ProgressCallback", "consume_outcome", "first_error"]

ProgressCallback = Callable[[int], None]
"""Called with the number of inputs a finished request embedded (from worker threads)."""


class Job:
    """One call's inputs and everything its batches write back, guarded by one lock."""

    def __init__(
        self,
        texts: list[str],
        model: str,
        batch_size: int,
        deadline: float | None,
        on_progress: ProgressCallback | None,
        plan: LongInputPlan | None = None,
        output: Output = "list",
    ) -> None:
        self.texts = texts
        # Where texts[0] sits in the caller's whole input (a stream's batch starts later).
        self.offset = 0
        self.model = model
        # The texts as planned for the model's token limit (pieces, cut texts) and how their
        # vectors map back to the caller's inputs.
        self.plan = plan or LongInputPlan(model, "truncate", None, texts)
        self.output = output
        # output="numpy": one (N, D) float32 array, allocated when the first batch tells D.
        self.array: FloatArray | None = None
        # Placeholders that are freed one by one as vectors arrive keep the GC's allocation
        # count flat, so no collection walks the freshly parsed vectors mid-call.
        self.vectors: list[list[float]] = [[] for _ in texts] if output == "list" else []
        self.usage = Usage()
        self.requests = 0
        self.retries = 0
        self.completed = 0
        self.dimensions: int | None = None
        self.limits = BatchLimits(batch_size)
        self.deadline = deadline
        self.deadline_at = None if deadline is None else time.monotonic() + deadline
        self.cancelled = threading.Event()
        self.on_progress = on_progress
        self.lock = threading.Lock()

    def stop(self, futures: Sequence[concurrent.futures.Future[None]]) -> None:
        """Start no further request for this call: queued batches are dropped, retries end."""
        self.cancelled.set()
        for future in futures:
            future.cancel()

    def sleep(self, seconds: float) -> None:
        """Wait (backoff or pacing), but wake at once if the call is cancelled, and refuse a
        wait that would outlast the call's deadline."""
        remaining = self.remaining()
        if remaining is not None and seconds >= remaining:
            raise self.deadline_error(None)
        if self.cancelled.wait(seconds):
            raise Cancelled

    def remaining(self) -> float | None:
        return None if self.deadline_at is None else self.deadline_at - time.monotonic()

    def deadline_error(self, last: NebulaError | None) -> DeadlineExceededError:
        cause = f" The last error was: {last}" if last else ""
        return DeadlineExceededError(
            f"The {self.deadline:g}s deadline of this embed call stopped it after "
            f"{self.completed} of {len(self.texts)} inputs were embedded "
            f"({self.requests} requests, {self.retries} retries). Raise deadline=..., or embed "
            f"fewer texts per call.{cause}",
            completed=self.completed,
            total=len(self.texts),
        )

    def count_request(self) -> None:
        with self.lock:
            self.requests += 1

    def count_retry(self) -> None:
        with self.lock:
            self.retries += 1

    def store(self, start: int, batch: DecodedBatch) -> None:
        count = len(batch)
        # Converted outside the lock: other batches keep storing meanwhile.
        vectors = batch.to_lists() if self.output == "list" else None
        with self.lock:
            width = batch.dimensions
            if self.dimensions is None:
                self.dimensions = width
            elif width != self.dimensions:
                raise ResponseFormatError(
                    f"The service returned {width}-dimensional vectors for inputs {start}.."
                    f"{start + count - 1} but {self.dimensions}-dimensional ones earlier "
                    "in the same call; a vector store cannot hold both. No vectors were returned."
                )
            if vectors is not None:
                self.vectors[start : start + count] = vectors
            else:
                if self.array is None:
                    np = require_numpy()
                    self.array = np.empty((len(self.texts), width), dtype=np.float32)
                batch.fill(self.array[start : start + count])
            self.usage = self.usage + batch.usage
            self.completed += count
        if self.on_progress is not None:
            self.on_progress(count)


def first_error(
    done: Iterable[asyncio.Future[None] | concurrent.futures.Future[None]],
) -> BaseException | None:
    """The error that ended a call; a `Cancelled` is only an echo of stopping, never the cause."""
    errors = [f.exception() for f in done if not f.cancelled() and f.exception() is not None]
    real = [e for e in errors if not isinstance(e, Cancelled)]
    return (real or errors or [None])[0]


def consume_outcome(future: asyncio.Future[None]) -> None:
    """A done-callback that marks an error as seen, so asyncio does not log it again."""
    if not future.cancelled():
        future.exception()
