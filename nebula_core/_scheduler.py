"""Fair sharing of one client's request slots between the calls that run on it at once.

Every call opens a `CallQueue` and submits its batches there. Whenever a slot frees, the next
batch comes from the call with the fewest requests running (ties: the call served least
recently), so a one-text query waits for the next free slot, not behind another call's
hundreds of queued batches. The policy is the pure function `next_in_line`; `Scheduler` is the
mechanism (worker threads, one condition variable) and never runs more than `limit` at once.

A call made from a thread that already runs one of the scheduler's batches (an `on_progress`
callback that embeds) runs its own batches in that held slot: waiting for another slot could
wait forever, since every slot may be held by a batch that waits the same way.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["CallQueue", "QueueView", "Scheduler", "next_in_line"]

T = TypeVar("T")

#: A worker with nothing to do for this long exits; a busy client keeps its threads.
IDLE_SECONDS = 10.0


@dataclass(frozen=True)
class QueueView:
    """What the policy needs to know about one call's queue."""

    running: int
    waiting: int
    last_served: int  # dispatch tick of this queue's latest batch; -1 if never served


def next_in_line(queues: Sequence[QueueView]) -> int | None:
    """The index of the queue whose batch takes the next free slot, or None if none waits.

    Fewest running first, so every call gets an equal share of the slots; among equals the
    one served least recently, which makes calls of equal standing take turns.
    """
    best: int | None = None
    for index, queue in enumerate(queues):
        if queue.waiting == 0:
            continue
        if best is None or (queue.running, queue.last_served) < (
            queues[best].running,
            queues[best].last_served,
        ):
            best = index
    return best


@dataclass
class _Task:
    future: concurrent.futures.Future[Any]
    fn: Callable[[], Any]


class CallQueue:
    """One call's batches, waiting for slots of the scheduler that opened it."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self.tasks: deque[_Task] = deque()
        self.running = 0
        self.last_served = -1

    def submit(
        self, fn: Callable[..., T], *args: Any, wake: bool = True
    ) -> concurrent.futures.Future[T]:
        """Queue `fn(*args)`; the future holds its result or error.

        `wake=False` leaves the workers asleep: for a caller about to `help()`, which takes
        the first batch itself and then wakes them for the rest.
        """
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._scheduler._enqueue(self, _Task(future, lambda: fn(*args)), wake=wake)
        return future

    def help(self) -> None:
        """Run this call's batches in the calling thread while its turn comes first.

        A sync caller would otherwise sit idle while a worker runs its batch: this saves the
        thread hop (for a one-batch call, all of it), yet each batch still takes a slot in
        turn, so the client's limit and the fair share hold for the caller too.
        """
        scheduler = self._scheduler
        if scheduler.holds_slot():
            self._run_inline()
            return
        task = scheduler._take_own(self, first=True)
        while task is not None:
            try:
                with scheduler._holding():
                    _run_task(task)
            except Exception:  # noqa: S110 - its future holds it, for the caller to collect
                pass
            except BaseException:
                scheduler._give_back(self)  # Ctrl-C: free the slot, take nothing more
                raise
            task = scheduler._take_own(self, first=False)

    @property
    def nested(self) -> bool:
        """True in a thread that runs one of this scheduler's batches: `help()` runs inline."""
        return self._scheduler.holds_slot()

    def _run_inline(self) -> None:
        # The thread's slot is already counted: its nested batches run in it, one at a time,
        # so the limit holds. Free slots, if any, may take some too (workers are woken).
        scheduler = self._scheduler
        scheduler._wake()
        while (task := scheduler._take_nested(self)) is not None:
            try:
                _run_task(task)
            except Exception:  # noqa: S110 - its future holds it, for the caller to collect
                pass
            finally:
                scheduler._end_nested(self)

    def view(self) -> QueueView:
        return QueueView(self.running, len(self.tasks), self.last_served)

    def cancel(self) -> None:
        """Drop the batches that have not started; those running finish on their own."""
        self._scheduler._drop(self)

    def close(self) -> None:
        """The call is over: forget the queue (drops anything still queued)."""
        self._scheduler._drop(self)


class Scheduler:
    """At most `limit` batches of one client run at once, shared fairly between calls."""

    def __init__(self, limit: int, *, thread_name: str = "nebula-embed") -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit!r}")
        self._limit = limit
        self._thread_name = thread_name
        self._cond = threading.Condition()
        self._queues: list[CallQueue] = []
        self._running = 0
        self._idle_workers = 0
        self._workers = 0
        self._ticks = itertools.count()
        self._retiring = False
        self._local = threading.local()  # `held`: this thread runs one of our batches now

    def holds_slot(self) -> bool:
        """Whether the calling thread is running one of this scheduler's batches."""
        return bool(getattr(self._local, "held", False))

    @contextlib.contextmanager
    def _holding(self) -> Iterator[None]:
        previous = self.holds_slot()
        self._local.held = True
        try:
            yield
        finally:
            self._local.held = previous

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def running(self) -> int:
        """Batches running right now (in workers or in callers' threads)."""
        with self._cond:
            return self._running

    def set_limit(self, limit: int) -> None:
        """Change how many batches may run at once; running batches are never interrupted."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit!r}")
        with self._cond:
            self._limit = limit
            self._spawn_if_needed()
            self._cond.notify_all()

    def open_queue(self) -> CallQueue:
        """A queue for one call; close it when the call ends."""
        return CallQueue(self)

    def close(self) -> None:
        """End the worker threads once the work already queued is done.

        The scheduler stays usable: work submitted later starts new workers, under the same
        limit, so a close() racing running calls never lets more than `limit` run at once.
        """
        with self._cond:
            self._retiring = True
            self._cond.notify_all()

    # -- the mechanism, all under self._cond ---------------------------------------------------

    def _enqueue(self, queue: CallQueue, task: _Task, *, wake: bool) -> None:
        with self._cond:
            if queue not in self._queues:
                self._queues.append(queue)
            queue.tasks.append(task)
            self._retiring = False
            if wake:
                self._spawn_if_needed()
                self._cond.notify()

    def _take_own(self, queue: CallQueue, *, first: bool) -> _Task | None:
        """For a caller helping with its own call: release its slot (unless `first`), and
        take the next batch of `queue` if a slot is free and this call is next in line."""
        with self._cond:
            if not first:
                self._running -= 1
                queue.running -= 1
            task = None
            self._forget_if_idle(queue)
            if self._running < self._limit and queue.tasks:
                views = [q.view() for q in self._queues]
                if queue in self._queues and next_in_line(views) == self._queues.index(queue):
                    task = queue.tasks.popleft()
                    self._start(queue)
            if task is None or first:
                # Workers take what the caller does not: the other slots, or the rest.
                self._spawn_if_needed()
                self._cond.notify_all()
            return task

    def _wake(self) -> None:
        with self._cond:
            self._spawn_if_needed()
            self._cond.notify_all()

    def _take_nested(self, queue: CallQueue) -> _Task | None:
        """The next batch of a call nested in a held slot: no new slot is taken."""
        with self._cond:
            if not queue.tasks:
                self._forget_if_idle(queue)
                return None
            task = queue.tasks.popleft()
            queue.running += 1
            queue.last_served = next(self._ticks)
            return task

    def _end_nested(self, queue: CallQueue) -> None:
        with self._cond:
            queue.running -= 1
            self._forget_if_idle(queue)

    def _forget_if_idle(self, queue: CallQueue) -> None:
        # Only queues with work take part in the policy; an idle one keeps no reference here.
        if not queue.tasks and not queue.running and queue in self._queues:
            self._queues.remove(queue)

    def _start(self, queue: CallQueue) -> None:
        self._running += 1
        queue.running += 1
        queue.last_served = next(self._ticks)

    def _give_back(self, queue: CallQueue) -> None:
        with self._cond:
            self._running -= 1
            queue.running -= 1
            self._forget_if_idle(queue)
            self._spawn_if_needed()
            self._cond.notify_all()

    def _drop(self, queue: CallQueue) -> None:
        with self._cond:
            dropped = list(queue.tasks)
            queue.tasks.clear()
            self._forget_if_idle(queue)
        for task in dropped:
            task.future.cancel()

    def _spawn_if_needed(self) -> None:
        waiting = sum(len(q.tasks) for q in self._queues)
        wanted = min(self._limit, self._running + waiting)
        # Idle workers will pick the work up; start threads only for what they cannot.
        while self._workers < wanted and self._idle_workers < waiting:
            self._workers += 1
            self._idle_workers += 1
            thread = threading.Thread(
                target=self._work, name=f"{self._thread_name}-{self._workers}", daemon=True
            )
            thread.start()

    def _next_task(self) -> tuple[CallQueue, _Task] | None:
        with self._cond:
            while True:
                if self._running < self._limit:
                    index = next_in_line([q.view() for q in self._queues])
                    if index is not None:
                        queue = self._queues[index]
                        task = queue.tasks.popleft()
                        self._idle_workers -= 1
                        self._start(queue)
                        return queue, task
                if self._retiring and not any(q.tasks for q in self._queues):
                    break
                if not self._cond.wait(IDLE_SECONDS) and not any(q.tasks for q in self._queues):
                    break
            self._idle_workers -= 1
            self._workers -= 1
            return None

    def _work(self) -> None:
        while True:
            picked = self._next_task()
            if picked is None:
                return
            queue, task = picked
            try:
                with self._holding():
                    _run_task(task)
            except BaseException:  # noqa: S110 - the task's future holds the error
                pass
            finally:
                with self._cond:
                    self._running -= 1
                    queue.running -= 1
                    self._forget_if_idle(queue)
                    self._idle_workers += 1
                    self._cond.notify()
            del task, queue, picked  # drop the call's references before waiting again


def _run_task(task: _Task) -> None:
    """Run a task into its future; an error is re-raised after, for a caller to see at once."""
    if not task.future.set_running_or_notify_cancel():
        return
    try:
        result = task.fn()
    except BaseException as error:
        task.future.set_exception(error)
        raise
    task.future.set_result(result)
