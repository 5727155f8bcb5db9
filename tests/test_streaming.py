"""embed_iter / aembed_iter against the emulator: order, laziness, bounds, stopping, errors."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import numpy as np
import pytest

from nebula_core import EmbeddingBatch, InputTooLongError, NebulaClient, Usage
from nebula_core.testing import NebulaEmulator

MakeClient = Callable[..., NebulaClient]


def _texts(count: int) -> list[str]:
    return [f"streamed passage {i} about topic {i % 5}" for i in range(count)]


class Counting:
    """A generator-like source that counts how many items were pulled from it."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.pulled = 0

    def __iter__(self) -> Iterator[str]:
        for text in self.texts:
            self.pulled += 1
            yield text


def _settle(client: NebulaClient, emu: NebulaEmulator) -> int:
    """Wait until none of the client's requests runs, then return how many the server got."""
    scheduler = client._scheduler
    for _ in range(500):
        if scheduler is None or scheduler.running == 0:
            break
        time.sleep(0.01)
    return len(emu.embeddings_requests)


def test_batches_come_in_input_order_with_exact_vectors(
    emu: NebulaEmulator, make_client: MakeClient
) -> None:
    client = make_client()
    texts = _texts(25)

    batches = list(client.embed_iter(iter(texts), batch_size=4))

    assert [b.start for b in batches] == [0, 4, 8, 12, 16, 20, 24]
    assert all(isinstance(b, EmbeddingBatch) for b in batches)
    for b in batches:
        chunk = texts[b.start : b.start + len(b.embeddings)]
        assert b.embeddings == [emu.embedding(t) for t in chunk]
        assert b.usage == Usage(
            prompt_tokens=sum(emu.count_tokens(t) for t in chunk),
            total_tokens=sum(emu.count_tokens(t) for t in chunk),
        )
    assert sorted(len(r.inputs or []) for r in emu.embeddings_requests) == [1] + [4] * 6
    assert client.stats.calls == 1
    assert client.stats.inputs == 25


def test_the_input_is_pulled_only_a_window_ahead(
    emu: NebulaEmulator, make_client: MakeClient
) -> None:
    client = make_client(max_concurrency=2)
    source = Counting(_texts(1000))

    stream = client.embed_iter(source, batch_size=5, window=3)
    assert source.pulled == 0  # nothing happens before the first next()
    first = next(stream)
    assert first.start == 0
    assert source.pulled == 15  # the window: 3 batches of 5
    # While the consumer holds the batch, nothing more is pulled or sent.
    assert _settle(client, emu) == 3
    time.sleep(0.2)
    assert len(emu.embeddings_requests) == 3
    assert source.pulled == 15

    second = next(stream)
    assert second.start == 5
    assert source.pulled == 20  # one batch refilled for the one consumed
    stream.close()
    assert len(emu.embeddings_requests) <= 4


def test_default_window_is_twice_max_concurrency(
    emu: NebulaEmulator, make_client: MakeClient
) -> None:
    client = make_client(max_concurrency=3)
    source = Counting(_texts(500))
    stream = client.embed_iter(source, batch_size=2)
    next(stream)
    assert source.pulled == 2 * 3 * 2
    stream.close()


@pytest.mark.nebula_emulator(capacity=32, seconds_per_input=0.01)
def test_requests_in_flight_never_exceed_max_concurrency(
    emu: NebulaEmulator, make_client: MakeClient
) -> None:
    client = make_client(max_concurrency=2)
    texts = _texts(120)

    starts = [b.start for b in client.embed_iter(texts, batch_size=3, window=10)]

    assert starts == list(range(0, 120, 3))
    assert emu.stats.peak_computing == 2


def test_breaking_out_cancels_queued_batches_and_waits_for_running_ones(
    emu: NebulaEmulator, make_client: MakeClient
) -> None:
    emu.latency = 0.3
    client = make_client(max_concurrency=2)
    source = Counting(_texts(400))

    for batch in client.embed_iter(source, batch_size=4, window=6):
        assert batch.start == 0
        break

    # The emulator records a request when it answers: had the stream not waited for the
    # requests on the wire, they would be recorded during the sleep below (latency 0.3 s).
    sent = len(emu.embeddings_requests)
    # Never more than the window, however late a loaded machine lets the consumer break.
    assert sent <= 6
    time.sleep(0.6)
    # No request still running, and no queued batch starts later.
    assert len(emu.embeddings_requests) == sent
    assert source.pulled == 24
    assert client.stats.requests == sent


@pytest.mark.parametrize(
    ("bad", "error", "words"),
    [(None, TypeError, "must be a str"), ("   ", ValueError, "whitespace-only")],
)
def test_a_bad_item_is_named_by_its_stream_position_after_the_batches_before_it(
    emu: NebulaEmulator, make_client: MakeClient, bad: object, error: type, words: str
) -> None:
    client = make_client()
    texts: list[object] = list(_texts(2000))
    texts[1000] = bad
    got: list[int] = []

    with pytest.raises(error) as caught:
        for batch in client.embed_iter(texts, batch_size=64, window=4):  # type: ignore[arg-type]
            got.append(batch.start)

    assert "position 1000 " in str(caught.value)
    assert words in str(caught.value)
    assert got == list(range(0, 960, 64))  # every batch before the one holding item 1000
    assert len(emu.embeddings_requests) == 15  # that batch and later ones were never sent


def test_a_failing_source_is_raised_after_the_batches_before_it(
    emu: NebulaEmulator, make_client: MakeClient
) -> None:
    client = make_client()

    def source() -> Iterator[str]:
        yield from _texts(10)
        raise RuntimeError("the database cursor died")

    got: list[int] = []
    with pytest.raises(RuntimeError, match="cursor died"):
        for batch in client.embed_iter(source(), batch_size=4):
            got.append(batch.start)
    assert got == [0, 4]


def test_long_input_policy_and_dimensions_apply_per_batch_like_embed(
    emu: NebulaEmulator, make_client: MakeClient
) -> None:
    long_text = " ".join(f"word{i}" for i in range(60))
    texts = _texts(9)
    texts[6] = long_text
    client = make_client(on_long_input="average", max_input_tokens=16, dimensions=256)

    model = "Qwen/Qwen3-Embedding-8B"

    batches = list(client.embed_iter(texts, model, batch_size=4))

    streamed = [v for b in batches for v in b.embeddings]
    assert len(emu.embeddings_requests) > 3  # the long text went as several pieces
    assert streamed == client.embed(texts, model).embeddings
    assert all(len(v) == 256 for v in streamed)


def test_the_error_policy_names_the_stream_position(
    emu: NebulaEmulator, make_client: MakeClient
) -> None:
    texts = _texts(12)
    texts[9] = " ".join(f"word{i}" for i in range(60))
    client = make_client(on_long_input="error", max_input_tokens=16)

    got: list[int] = []
    with pytest.raises(InputTooLongError) as caught:
        for batch in client.embed_iter(texts, batch_size=4):
            got.append(batch.start)
    assert caught.value.positions == [9]
    assert got == [0, 4]


def test_numpy_output_yields_float32_arrays(emu: NebulaEmulator, make_client: MakeClient) -> None:
    client = make_client()
    texts = _texts(10)

    batches = list(client.embed_iter(texts, batch_size=4, output="numpy"))

    assert [b.embeddings.shape for b in batches] == [(4, 1024), (4, 1024), (2, 1024)]
    stacked = np.concatenate([b.embeddings for b in batches])
    assert stacked.dtype == np.float32
    assert np.array_equal(stacked, np.array([emu.embedding(t) for t in texts], np.float32))


def test_bad_arguments_fail_when_the_iterator_is_made(make_client: MakeClient) -> None:
    client = make_client()
    with pytest.raises(TypeError, match="iterable of strings"):
        client.embed_iter("one text")
    with pytest.raises(ValueError, match="window"):
        client.embed_iter(["a"], window=0)
    with pytest.raises(ValueError, match="batch_size"):
        client.embed_iter(["a"], batch_size=0)


def test_a_query_is_not_queued_behind_a_stream(
    emu: NebulaEmulator, make_client: MakeClient
) -> None:
    emu.latency = 0.05
    client = make_client(max_concurrency=2)
    started = threading.Event()
    starts: list[int] = []

    def consume() -> None:
        for batch in client.embed_iter(_texts(80), batch_size=1, window=24):
            starts.append(batch.start)
            started.set()

    thread = threading.Thread(target=consume)
    thread.start()
    started.wait(10)
    sent_before = len(emu.embeddings_requests)
    query = client.embed(["what is the query?"]).embeddings
    thread.join(30)

    assert query == [emu.embedding("what is the query?")]
    assert starts == list(range(80))
    order = [r.inputs for r in emu.embeddings_requests]
    position = order.index(["what is the query?"])
    # Only requests already on the wire went ahead of it (on a loaded machine, up to two
    # rounds of the 2 slots while the query is being queued), not the stream's ~20 queued.
    assert position <= sent_before + 6


async def test_aembed_iter_takes_an_async_source_and_keeps_order(
    emu: NebulaEmulator, make_client: MakeClient
) -> None:
    client = make_client()
    texts = _texts(21)
    pulled = 0

    async def source() -> AsyncIterator[str]:
        nonlocal pulled
        for text in texts:
            pulled += 1
            yield text

    stream = client.aembed_iter(source(), batch_size=5, window=2)
    first = await anext(stream)
    assert pulled == 10
    batches = [first] + [b async for b in stream]

    assert [b.start for b in batches] == [0, 5, 10, 15, 20]
    assert [v for b in batches for v in b.embeddings] == [emu.embedding(t) for t in texts]


async def test_aembed_iter_numpy_from_a_plain_list(
    emu: NebulaEmulator, make_client: MakeClient
) -> None:
    client = make_client()
    texts = _texts(6)
    batches = [b async for b in client.aembed_iter(texts, batch_size=4, output="numpy")]
    stacked = np.concatenate([b.embeddings for b in batches])
    assert np.array_equal(stacked, np.array([emu.embedding(t) for t in texts], np.float32))


async def test_cancelling_the_consuming_task_stops_the_stream(
    emu: NebulaEmulator, make_client: MakeClient
) -> None:
    emu.latency = 0.3
    client = make_client(max_concurrency=2)
    got_one = asyncio.Event()

    async def consume() -> None:
        async with contextlib.aclosing(client.aembed_iter(_texts(400), batch_size=4)) as stream:
            async for _ in stream:
                got_one.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_one.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    # Requests are recorded when answered: one still on the wire would show up in the sleep.
    sent = len(emu.embeddings_requests)
    assert sent <= 2 * 2 + 2
    await asyncio.sleep(0.6)
    assert len(emu.embeddings_requests) == sent


@pytest.mark.nebula_emulator(max_inputs_per_request=4)
def test_a_413_learned_by_one_batch_splits_the_later_ones_in_advance(
    emu: NebulaEmulator, make_client: MakeClient
) -> None:
    client = make_client()
    texts = _texts(32)

    batches = list(client.embed_iter(texts, batch_size=8, window=1))

    assert [v for b in batches for v in b.embeddings] == [emu.embedding(t) for t in texts]
    statuses = [r.status for r in emu.embeddings_requests]
    assert statuses.count(413) == 1  # only the first batch was refused
    assert statuses.count(200) == 8
