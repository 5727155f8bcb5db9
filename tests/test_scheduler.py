"""Fair share of a client's slots between calls, the concurrency bound, close() and fork.

Timing-free: every assertion counts requests (in arrival order, or in flight) or slots."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace

import pytest

from nebula_core import DeadlineExceededError, NebulaClient
from nebula_core._scheduler import QueueView, Scheduler, next_in_line
from nebula_core.testing import NebulaEmulator
from tests.servers import CountingServer, vector_of

INGEST = [f"document {i} on subject {i % 11}" for i in range(1280)]  # 160 batches of 8
QUERY = "what does subject 3 say?"


def wait_until(condition: Callable[[], bool], limit: float = 30.0) -> None:
    """Poll for a state (not a time): the limit only stops a broken test from hanging."""
    end = time.monotonic() + limit
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("condition not reached")
        time.sleep(0.002)


# -- the policy, without threads ------------------------------------------------------------


def test_the_call_with_fewest_running_goes_next():
    ingestion = QueueView(running=4, waiting=156, last_served=3)
    query = QueueView(running=0, waiting=1, last_served=-1)
    assert next_in_line([ingestion, query]) == 1


def test_queues_with_nothing_waiting_are_skipped():
    assert next_in_line([QueueView(0, 0, -1), QueueView(3, 2, 7)]) == 1
    assert next_in_line([QueueView(0, 0, -1), QueueView(2, 0, 4)]) is None
    assert next_in_line([]) is None


def test_equal_calls_take_turns_least_recently_served_first():
    assert next_in_line([QueueView(1, 5, 10), QueueView(1, 5, 3)]) == 1
    assert next_in_line([QueueView(1, 5, 2), QueueView(1, 5, 3)]) == 0


def simulate(
    batches: list[int], limit: int, steps: int, late: dict[int, tuple[int, int]] | None = None
) -> list[int]:
    """Replays the policy: `limit` slots; each step the oldest running batch ends and free
    slots are refilled; `late[tick] = (queue, n)` adds n batches to a queue at that step.
    Returns which queue each started batch came from."""
    running: list[int] = []  # queue index of each running batch, oldest first
    counts = [0] * len(batches)
    waiting = list(batches)
    served = [-1] * len(batches)
    order: list[int] = []
    for tick in range(steps):
        if late and tick in late:
            queue, n = late[tick]
            waiting[queue] += n
        while len(running) < limit:
            views = [QueueView(counts[q], waiting[q], served[q]) for q in range(len(batches))]
            pick = next_in_line(views)
            if pick is None:
                break
            waiting[pick] -= 1
            counts[pick] += 1
            served[pick] = tick * limit + len(running)
            running.append(pick)
            order.append(pick)
        if running:
            counts[running.pop(0)] -= 1
    return order


def test_two_big_calls_share_the_slots_evenly():
    order = simulate([100, 100], limit=4, steps=40)
    first_40 = order[:40]
    assert first_40.count(0) == first_40.count(1) == 20


def test_a_one_batch_call_takes_the_very_next_slot():
    # An ingestion (queue 0) fills all four slots; the query (queue 1) arrives at step 3.
    order = simulate([160, 0], limit=4, steps=6, late={3: (1, 1)})
    # Steps 0..2 start 4 + 1 + 1 ingestion batches; at step 3 the freed slot is the query's.
    assert order[:8] == [0, 0, 0, 0, 0, 0, 1, 0]


# -- the mechanism: real threads, no HTTP ----------------------------------------------------


class Probe:
    """Tasks that report how many of them run at once and block until released."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.started: list[str] = []
        self.release = threading.Event()

    def task(self, name: str) -> str:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.started.append(name)
        self.release.wait(30)
        with self.lock:
            self.now -= 1
        return name


def test_the_scheduler_runs_exactly_limit_tasks_at_once():
    scheduler = Scheduler(3)
    probe = Probe()
    queues = [scheduler.open_queue() for _ in range(3)]
    futures = [q.submit(probe.task, f"{i}-{j}") for j in range(10) for i, q in enumerate(queues)]
    wait_until(lambda: probe.now == 3)
    probe.release.set()
    assert sorted(f.result(30) for f in futures) == sorted(
        f"{i}-{j}" for j in range(10) for i in range(3)
    )
    assert probe.peak == 3
    scheduler.close()


def test_set_limit_raises_and_lowers_the_bound_of_a_live_scheduler():
    scheduler = Scheduler(2)
    probe = Probe()
    queue = scheduler.open_queue()
    futures = [queue.submit(probe.task, str(i)) for i in range(12)]
    wait_until(lambda: probe.now == 2)
    assert scheduler.running == 2 and probe.peak == 2

    scheduler.set_limit(5)
    wait_until(lambda: probe.now == 5)
    assert probe.peak == 5 and scheduler.running == 5

    scheduler.set_limit(1)
    seen: list[int] = []
    late = scheduler.open_queue()
    later = [late.submit(lambda: seen.append(scheduler.running)) for _ in range(3)]
    probe.release.set()
    for future in futures + later:
        future.result(30)
    assert seen == [1, 1, 1]  # once lowered, nothing started beside another task
    with pytest.raises(ValueError, match="limit must be >= 1"):
        scheduler.set_limit(0)
    scheduler.close()


def test_cancel_drops_the_queued_batches_of_that_call_only():
    scheduler = Scheduler(1)
    probe = Probe()
    first, second = scheduler.open_queue(), scheduler.open_queue()
    running = first.submit(probe.task, "running")
    wait_until(lambda: probe.now == 1)
    dropped = [first.submit(probe.task, f"dropped {i}") for i in range(3)]
    kept = second.submit(probe.task, "kept")
    first.cancel()
    probe.release.set()
    assert running.result(30) == "running" and kept.result(30) == "kept"
    assert all(f.cancelled() for f in dropped)
    assert probe.started == ["running", "kept"]
    scheduler.close()


def test_a_helping_caller_waits_for_a_slot_like_any_batch():
    scheduler = Scheduler(1)
    probe = Probe()
    blocker = scheduler.open_queue().submit(probe.task, "blocker")
    wait_until(lambda: probe.now == 1)
    queue = scheduler.open_queue()
    mine = queue.submit(threading.current_thread, wake=False)
    queue.help()  # the only slot is taken: the caller must not run its batch itself
    assert not mine.done()
    probe.release.set()
    assert blocker.result(30) == "blocker"
    assert mine.result(30) is not threading.current_thread()  # a worker ran it, in its turn
    scheduler.close()


def test_a_helping_caller_runs_its_own_batches_when_its_turn_comes_first():
    scheduler = Scheduler(1)
    queue = scheduler.open_queue()
    mine = [queue.submit(threading.current_thread, wake=False) for _ in range(5)]
    queue.help()
    assert [f.result(0) for f in mine] == [threading.current_thread()] * 5  # no thread hop
    assert scheduler.running == 0
    scheduler.close()


def test_a_closed_scheduler_finishes_what_was_queued_and_accepts_more():
    baseline = threading.active_count()
    scheduler = Scheduler(1)
    probe = Probe()
    queue = scheduler.open_queue()
    futures = [queue.submit(probe.task, str(i)) for i in range(4)]
    wait_until(lambda: probe.now == 1)
    scheduler.close()
    late = queue.submit(lambda: "submitted after close")
    probe.release.set()
    assert [f.result(30) for f in futures] == ["0", "1", "2", "3"]
    assert late.result(30) == "submitted after close"
    scheduler.close()
    wait_until(lambda: threading.active_count() == baseline)  # its workers ended


# -- against a real HTTP server --------------------------------------------------------------


def client_for(server: CountingServer, **options: object) -> NebulaClient:
    return NebulaClient(api_key="ak_test", base_url=server.base_url, timeout=30.0, **options)  # type: ignore[arg-type]


async def test_a_one_text_aembed_during_a_160_batch_aembed_waits_for_one_slot():
    with CountingServer(latency=0.02) as server:
        client = client_for(server, max_concurrency=4)
        ingestion = asyncio.create_task(client.aembed(INGEST, batch_size=8))
        while len(server.arrivals) < 12:
            await asyncio.sleep(0.005)
        issued_at = len(server.arrivals)
        query = await client.aembed([QUERY])
        result = await ingestion
        client.close()

    # Requests that reached the server after the query was issued and before it: with a FIFO
    # pool this was the ingestion's whole queue (~140); with a fair share, the next free slot.
    # The count is read before the query is queued, so on a loaded machine the 4 slots may
    # each start one more ingestion request in between: bound by two rounds of slots.
    overtaken = server.arrival_of(QUERY) - issued_at
    assert overtaken <= 8, overtaken
    assert query.embeddings == [vector_of(QUERY)]
    assert result.embeddings == [vector_of(t) for t in INGEST]
    assert server.max_in_flight == 4


def test_a_one_text_embed_during_a_160_batch_embed_in_another_thread_waits_for_one_slot():
    with CountingServer(latency=0.02) as server:
        client = client_for(server, max_concurrency=4)
        results: list[object] = []
        ingestion = threading.Thread(
            target=lambda: results.append(client.embed(INGEST, batch_size=8))
        )
        ingestion.start()
        wait_until(lambda: len(server.arrivals) >= 12)
        issued_at = len(server.arrivals)
        query = client.embed([QUERY])
        ingestion.join(60)
        client.close()

    assert server.arrival_of(QUERY) - issued_at <= 8  # two rounds of slots, not ~140
    assert query.embeddings == [vector_of(QUERY)]
    assert results[0].embeddings == [vector_of(t) for t in INGEST]  # type: ignore[attr-defined]
    assert server.max_in_flight == 4


@pytest.mark.parametrize("limit", [1, 3])
def test_never_more_than_max_concurrency_in_flight_not_even_one_more(limit):
    with CountingServer(latency=0.03) as server:
        client = client_for(server, max_concurrency=limit)
        texts = INGEST[:96]
        side = threading.Thread(target=lambda: client.embed(["side call"] * 3, batch_size=1))
        side.start()
        result = client.embed(texts, batch_size=4)
        single = client.embed(["one more"])  # the one-batch path takes a slot too
        side.join(30)
        client.close()

    assert result.embeddings == [vector_of(t) for t in texts]
    assert single.embeddings == [vector_of("one more")]
    assert server.max_in_flight == limit  # reached, never exceeded
    assert len(server.arrivals) == 24 + 3 + 1


async def test_concurrent_aembed_calls_take_turns_on_the_slots():
    with CountingServer(latency=0.02) as server:
        client = client_for(server, max_concurrency=2)
        first = [f"first {i}" for i in range(16)]
        second = [f"second {i}" for i in range(16)]
        a, b = await asyncio.gather(
            client.aembed(first, batch_size=2), client.aembed(second, batch_size=2)
        )
        client.close()

    assert a.embeddings == [vector_of(t) for t in first]
    assert b.embeddings == [vector_of(t) for t in second]
    assert server.max_in_flight == 2
    owners = [inputs[0].split()[0] for inputs in server.arrivals]
    # Fair share: within any window of four requests both calls are served.
    for window in range(len(owners) - 3):
        assert set(owners[window : window + 4]) == {"first", "second"}, owners


def test_close_during_a_sync_call_lets_it_finish_and_the_client_works_after():
    with CountingServer(latency=0.02) as server:
        client = client_for(server, max_concurrency=2)
        outcome: list[object] = []

        def ingest() -> None:
            try:
                outcome.append(client.embed(INGEST[:160], batch_size=8))
            except BaseException as error:  # pragma: no cover - the failure being tested
                outcome.append(error)

        thread = threading.Thread(target=ingest)
        thread.start()
        wait_until(lambda: len(server.arrivals) >= 3)
        client.close()
        more = [f"after close {i}" for i in range(8)]
        after = client.embed(more, batch_size=1)  # while the first call still runs
        thread.join(60)
        client.close()

    assert outcome[0].embeddings == [vector_of(t) for t in INGEST[:160]]  # type: ignore[attr-defined]
    assert after.embeddings == [vector_of(t) for t in more]
    assert server.max_in_flight == 2  # the bound holds across close()


async def test_close_during_an_async_call_lets_it_finish():
    with CountingServer(latency=0.02) as server:
        client = client_for(server, max_concurrency=2)
        task = asyncio.create_task(client.aembed(INGEST[:160], batch_size=8))
        while len(server.arrivals) < 3:
            await asyncio.sleep(0.005)
        client.close()
        result = await task
        after = await client.aembed(["after close"])
        client.close()

    assert result.embeddings == [vector_of(t) for t in INGEST[:160]]
    assert after.embeddings == [vector_of("after close")]


def test_close_racing_calls_that_are_starting_never_breaks_them():
    with CountingServer() as server:
        client = client_for(server, max_concurrency=4)
        outcomes: list[object] = []

        def call(n: int) -> None:
            texts = [f"race {n} {i}" for i in range(40)]
            try:
                outcomes.append(
                    client.embed(texts, batch_size=1).embeddings == [vector_of(t) for t in texts]
                )
            except BaseException as error:  # pragma: no cover - the failure being tested
                outcomes.append(error)

        for round_ in range(10):
            threads = [threading.Thread(target=call, args=(round_ * 3 + k,)) for k in range(3)]
            for thread in threads:
                thread.start()
            for _ in range(5):
                client.close()
            for thread in threads:
                thread.join(60)
        client.close()

    assert outcomes == [True] * 30


def test_a_forked_child_starts_fresh_even_on_the_one_batch_path():
    with NebulaEmulator() as emu:
        # One request a second and a half-second deadline: the parent's bucket is empty after
        # one call, so a child that reused it would fail at once with DeadlineExceededError.
        client = NebulaClient(
            api_key=emu.api_key, base_url=emu.base_url, requests_per_minute=60, deadline=0.5
        )
        client.embed(["parent"])
        with pytest.raises(DeadlineExceededError):
            client.embed(["parent again"])
        # And another parent thread holds the pacer's lock at the moment of the fork.
        client._pacer._lock.acquire()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                ok = client.embed(["child"]).embeddings == [emu.embedding("child")]
                code = 0 if ok else 2
            except DeadlineExceededError:
                code = 3
            finally:
                os._exit(code)
        client._pacer._lock.release()
        end = time.monotonic() + 30
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > end:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail("the forked child hung on a lock inherited from the parent")
            time.sleep(0.01)
        client.close()
    assert os.waitstatus_to_exitcode(status) == 0


# -- a call made from inside a batch (an on_progress callback) --------------------------------


def _nesting_progress(client: NebulaClient, inner: list[object]) -> Callable[[int], None]:
    """A progress hook that embeds from inside the batch that reports: the thread holds a slot."""

    def on_progress(done: int) -> None:
        texts = [f"inner {done} {i}" for i in range(3)]
        inner.append((texts, client.embed(texts, batch_size=1)))

    return on_progress


def _check_nested_run(
    server: CountingServer, limit: int, outer: object, inner: list[object], after: object
) -> None:
    texts = INGEST[:16]
    assert outer.embeddings == [vector_of(t) for t in texts]  # type: ignore[attr-defined]
    assert len(inner) == 8  # one progress report per batch of 2
    for inner_texts, result in inner:  # type: ignore[misc]
        assert result.embeddings == [vector_of(t) for t in inner_texts]
    assert after.embeddings == [vector_of("after")]  # type: ignore[attr-defined]
    assert len(server.arrivals) == 8 + 8 * 3 + 1
    assert 1 <= server.max_in_flight <= limit


@pytest.mark.timeout(60)
@pytest.mark.parametrize("limit", [1, 4])
def test_embed_inside_on_progress_of_embed_runs_in_the_held_slot(limit):
    with CountingServer(latency=0.01) as server:
        client = client_for(server, max_concurrency=limit)
        inner: list[object] = []
        progress = _nesting_progress(client, inner)
        outer = client.embed(INGEST[:16], batch_size=2, on_progress=progress)
        after = client.embed(["after"])  # the client is not left stuck
        running = client._scheduler.running  # type: ignore[union-attr]
        client.close()
    _check_nested_run(server, limit, outer, inner, after)
    assert running == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("limit", [1, 4])
async def test_embed_inside_on_progress_of_aembed_runs_in_the_held_slot(limit):
    with CountingServer(latency=0.01) as server:
        client = client_for(server, max_concurrency=limit)
        inner: list[object] = []
        progress = _nesting_progress(client, inner)
        outer = await client.aembed(INGEST[:16], batch_size=2, on_progress=progress)
        after = await client.aembed(["after"])
        # The worker frees its slot just after the future resolves: wait for that state.
        wait_until(lambda: client._scheduler.running == 0)  # type: ignore[union-attr]
        client.close()
    _check_nested_run(server, limit, outer, inner, after)


@pytest.mark.timeout(60)
def test_embed_nested_in_embed_from_concurrent_calls_holding_every_slot():
    # Two outer calls on two slots, each nesting in every report: no slot is ever free.
    with CountingServer(latency=0.01) as server:
        client = client_for(server, max_concurrency=2)
        inners: list[list[object]] = [[], []]
        outers: list[object] = [None, None]

        def outer_call(k: int) -> None:
            texts = [f"outer {k} {i}" for i in range(8)]
            progress = _nesting_progress(client, inners[k])
            outers[k] = (texts, client.embed(texts, batch_size=2, on_progress=progress))

        threads = [threading.Thread(target=outer_call, args=(k,), daemon=True) for k in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(50)
        after = client.embed(["after"])
        client.close()
    for k in (0, 1):
        texts, result = outers[k]  # type: ignore[misc]
        assert result.embeddings == [vector_of(t) for t in texts]
        assert len(inners[k]) == 4
    assert after.embeddings == [vector_of("after")]
    assert len(server.arrivals) == 2 * (4 + 4 * 3) + 1
    assert server.max_in_flight <= 2


@pytest.mark.timeout(60)
def test_aembed_on_a_private_loop_inside_on_progress_runs_in_the_held_slot():
    with CountingServer(latency=0.01) as server:
        client = client_for(server, max_concurrency=1)
        inner: list[object] = []

        def on_progress(done: int) -> None:
            texts = [f"inner {done} {i}" for i in range(3)]
            inner.append((texts, asyncio.run(client.aembed(texts, batch_size=1))))

        outer = client.embed(INGEST[:16], batch_size=2, on_progress=on_progress)
        after = client.embed(["after"])
        client.close()
    _check_nested_run(server, 1, outer, inner, after)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("limit", [1, 2])
def test_embed_iter_inside_on_progress_runs_in_the_held_slot(limit):
    with CountingServer(latency=0.01) as server:
        client = client_for(server, max_concurrency=limit)
        inner: list[object] = []

        def on_progress(done: int) -> None:
            texts = [f"inner {done} {i}" for i in range(3)]
            batches = list(client.embed_iter(texts, batch_size=1))
            vectors = [v for b in batches for v in b.embeddings]
            inner.append((texts, SimpleNamespace(embeddings=vectors)))

        outer = client.embed(INGEST[:16], batch_size=2, on_progress=on_progress)
        after = client.embed(["after"])
        client.close()
    _check_nested_run(server, limit, outer, inner, after)
