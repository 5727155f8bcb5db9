"""Reliability under faults, load and hostile input (issue 7): every run either returns exactly
the right vectors or raises the documented error, within its budget."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
import traceback

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nebula_core import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    DeadlineExceededError,
    NebulaClient,
    NebulaError,
    QuotaExceededError,
    RateLimitError,
    ResponseFormatError,
    ServerError,
)
from nebula_core._tokens import truncate_to_tokens
from nebula_core.models import DEFAULT_MODEL
from nebula_core.testing import Fault, NebulaEmulator
from tests.conftest import TEXTS
from tests.servers import CountingServer

# -- the fault table: what each fault does to one embed call ---------------------------------

TRANSIENT = [
    Fault.status(429),
    Fault.status(429, retry_after="0"),
    Fault.status(500),
    Fault.status(502),
    Fault.status(503, retry_after="0"),
    Fault.status(504),
    Fault.html_error(502),
    Fault.drop(),
    Fault.truncate(),
]

FATAL = [
    (Fault.quota_exhausted(), QuotaExceededError),
    (Fault.status(400), BadRequestError),
    (Fault.status(401), AuthenticationError),
    (Fault.malformed_json(), ResponseFormatError),
    (Fault.corrupt("duplicate_index"), ResponseFormatError),
    (Fault.corrupt("out_of_range_index"), ResponseFormatError),
    (Fault.corrupt("non_int_index"), ResponseFormatError),
    (Fault.corrupt("missing_index"), ResponseFormatError),
    (Fault.corrupt("missing_item"), ResponseFormatError),
    (Fault.corrupt("mixed_dimensions"), ResponseFormatError),
    (Fault.corrupt("non_numeric"), ResponseFormatError),
    (Fault.corrupt("empty_data"), ResponseFormatError),
]


@pytest.mark.parametrize("fault", TRANSIENT, ids=str)
def test_each_transient_fault_is_retried_into_the_right_vectors(emu, make_client, fault):
    emu.enqueue(fault)

    result = make_client(max_concurrency=1).embed(TEXTS[:20], batch_size=10)

    assert result.embeddings == [emu.embedding(t) for t in TEXTS[:20]]
    assert len(emu.embeddings_requests) == 3
    assert result.retries == 1


@pytest.mark.parametrize(("fault", "error"), FATAL, ids=[str(f) for f, _ in FATAL])
def test_each_fatal_fault_raises_its_documented_error_without_retrying(
    emu, make_client, fault, error
):
    emu.enqueue(fault)

    with pytest.raises(error):
        make_client(max_concurrency=1).embed(TEXTS[:20], batch_size=10)

    assert len(emu.embeddings_requests) == 1


def test_read_timeout_is_a_retried_connection_error(emu, make_client):
    emu.enqueue(Fault.delay(1.0))

    result = make_client(timeout=0.3).embed(TEXTS[:4])

    assert result.embeddings == [emu.embedding(t) for t in TEXTS[:4]]
    assert result.retries == 1


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    faults=st.lists(
        st.sampled_from(TRANSIENT + [fault for fault, _ in FATAL]), min_size=0, max_size=12
    ),
    concurrency=st.integers(min_value=1, max_value=4),
)
def test_mixed_faults_never_produce_a_wrong_vector(emu, faults, concurrency):
    """Whatever mix of faults the service throws, the call returns exactly the right vectors
    or raises a NebulaError, and never sends more than its retry budget allows."""
    emu.reset()
    emu.enqueue(*faults)
    texts = TEXTS[:48]
    client = NebulaClient(
        api_key=emu.api_key,
        base_url=emu.base_url,
        max_concurrency=concurrency,
        max_retries=3,
        retry_base_wait=0.001,
        max_retry_wait=0.01,
    )
    try:
        result = client.embed(texts, batch_size=8)
    except NebulaError as error:
        fatal_kinds = {str(fault) for fault, _ in FATAL}
        retry_exhausted = isinstance(error, (RateLimitError, ServerError, APIConnectionError))
        assert any(str(f) in fatal_kinds for f in faults) or retry_exhausted
    else:
        assert result.embeddings == [emu.embedding(t) for t in texts]
    finally:
        client.close()
    # Each fault costs at most one extra request; nothing is sent twice otherwise.
    assert len(emu.embeddings_requests) <= 6 + len(faults)


# -- soak --------------------------------------------------------------------------------------


def test_soak_50k_inputs_with_10_percent_transient_failures(emu, caplog):
    caplog.set_level(logging.ERROR, logger="nebula_core")  # thousands of retry lines otherwise
    texts = [f"soak input {i}: {TEXTS[i % len(TEXTS)]}" for i in range(50_000)]
    emu.set_fault_rate(
        0.1,
        [
            Fault.status(429, retry_after="0"),
            Fault.status(503),
            Fault.status(502),
            Fault.drop(),
            Fault.truncate(),
        ],
        seed=7,
    )
    client = NebulaClient(
        api_key=emu.api_key,
        base_url=emu.base_url,
        max_concurrency=8,
        max_retries=6,
        retry_base_wait=0.001,
        max_retry_wait=0.01,
    )

    started = time.monotonic()
    result = client.embed(texts, model="acme/soak-model", batch_size=128)
    elapsed = time.monotonic() - started

    batches = -(-len(texts) // 128)
    expected = [emu.embedding(t, model="acme/soak-model") for t in texts]
    assert result.embeddings == expected
    failed = [r for r in emu.embeddings_requests if r.fault is not None]
    assert result.requests == len(emu.embeddings_requests) == batches + result.retries
    assert result.retries == len(failed)
    assert 0.05 * batches < result.retries < 0.2 * batches
    print(f"soak: {len(texts)} inputs, {batches} batches, {result.retries} retries, {elapsed:.1f}s")


# -- pacing ------------------------------------------------------------------------------------


def test_requests_per_minute_paces_the_job(emu, make_client):
    client = make_client(requests_per_minute=120, max_concurrency=4)  # 2 per second

    started = time.monotonic()
    result = client.embed(TEXTS[:6], batch_size=1)
    elapsed = time.monotonic() - started

    assert result.embeddings == [emu.embedding(t) for t in TEXTS[:6]]
    # A burst of 2, then one every 0.5 s for the remaining 4 (2 s). Pacing can only be late,
    # so the lower bound is exact; the upper one only rules out a bucket refilled at half rate.
    assert 1.8 <= elapsed < 4.5


def test_tokens_per_minute_paces_the_job_and_is_shared_by_sync_and_async(emu, make_client):
    client = make_client(tokens_per_minute=6_000, max_concurrency=4)  # 100 tokens per second
    texts = TEXTS[:16]  # ~16 tokens each by the client's estimate

    unpaced_started = time.monotonic()
    make_client().embed(texts, batch_size=4)
    unpaced = time.monotonic() - unpaced_started

    async def both() -> None:
        loop = asyncio.get_running_loop()
        sync_side = loop.run_in_executor(None, client.embed, texts, "WhereIsAI/UAE-Large-V1", 4)
        await asyncio.gather(sync_side, client.aembed(texts, batch_size=4))

    started = time.monotonic()
    asyncio.run(both())
    elapsed = time.monotonic() - started

    tokens = 2 * sum(emu.count_tokens(t) for t in texts)
    assert unpaced < 1.0
    # Both calls drew on one budget: at least (tokens - one second of burst) / rate.
    assert elapsed >= (tokens - 100) / 100 * 0.8


# -- hostile and bad input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("texts", "error", "message"),
    [
        ([1, "ok"], TypeError, "the input at position 0 is int"),
        (["ok", None], TypeError, "the input at position 1 is NoneType"),
        ([b"bytes"], TypeError, "position 0 is bytes"),
        ([["nested"]], TypeError, "position 0 is list"),
        (["ok", "", "  "], ValueError, "positions 1, 2 are empty"),
        (
            ["ok", "bad \ud800 surrogate"],
            ValueError,
            "The input at position 1 contains lone surrogate",
        ),
        ("just a string", TypeError, "wrap a single text"),
        (None, TypeError, "got NoneType"),
    ],
)
def test_bad_input_fails_before_any_request(emu, make_client, texts, error, message):
    with pytest.raises(error, match=message):
        make_client().embed(texts)

    assert emu.requests == []


def test_a_bad_item_deep_in_a_huge_list_is_found_before_sending(emu, make_client):
    texts = ["fine"] * 100_000
    texts[99_999] = ""

    with pytest.raises(ValueError, match="The input at position 99999 is empty"):
        make_client().embed(texts)

    assert emu.requests == []


def test_nul_bytes_and_unicode_are_embedded_faithfully(emu, make_client):
    texts = ["nul \x00 inside", "emoji 🚀 and accents é", "rtl שלום"]

    result = make_client().embed(texts)

    assert result.embeddings == [emu.embedding(t) for t in texts]
    assert emu.embeddings_requests[0].inputs == texts


def test_a_megabyte_input_is_cut_before_sending_not_a_hang(emu, make_client):
    text = "word " * 200_000
    result = make_client().embed([text])  # on_long_input="truncate": the model's 512 tokens

    assert result.embeddings == [emu.embedding(truncate_to_tokens(DEFAULT_MODEL, text, 512))]
    assert len(emu.embeddings_requests) == 1


def test_a_megabyte_input_of_an_unknown_model_gets_the_service_refusal_not_a_hang(emu, make_client):
    with pytest.raises(BadRequestError, match="token limit of acme/unknown") as caught:
        make_client(on_long_input="error").embed(["word " * 200_000], model="acme/unknown")

    assert caught.value.status_code == 400
    assert "context length" in (caught.value.server_message or "")
    assert len(emu.embeddings_requests) == 1


# -- secrets -----------------------------------------------------------------------------------

SECRET = "ak_reliability_secret_987"


def test_the_key_is_absent_from_debug_logs_and_tracebacks_with_locals(caplog):
    caplog.set_level(logging.DEBUG)
    with NebulaEmulator(api_key="ak_not_this_one") as emu:
        emu.enqueue(Fault.drop(), Fault.status(502))
        client = NebulaClient(api_key=SECRET, base_url=emu.base_url, retry_base_wait=0.001)
        with pytest.raises(AuthenticationError) as caught:
            client.embed(["x"])

    rendered = "".join(
        traceback.TracebackException.from_exception(caught.value, capture_locals=True).format()
    )
    assert SECRET not in rendered
    assert all(SECRET not in record.getMessage() for record in caplog.records)
    assert SECRET not in caplog.text


# -- cancellation ------------------------------------------------------------------------------


def test_ctrl_c_during_a_sync_concurrent_run_stops_promptly():
    with CountingServer(latency=3.0) as server:
        client = NebulaClient(api_key="ak_test", base_url=server.base_url, max_concurrency=2)
        interrupt = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
        interrupt.start()

        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            client.embed(TEXTS[:40], batch_size=2)  # 20 batches: 30 s if it ran to the end
        stopped_after = time.monotonic() - started
        deadline = time.monotonic() + 30
        while server.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)  # the two requests on the wire end on their own

    # Waiting for the requests in flight would take 3 s; the caller got control back at once.
    assert stopped_after < 2.0
    assert server.max_in_flight == 2
    assert len(server.arrivals) == 2  # nothing was sent after the interrupt


async def test_cancelled_aembed_leaks_no_threads_or_connections(emu, make_client):
    baseline = threading.active_count()
    emu.latency = 0.2
    client = make_client(max_concurrency=3)

    task = asyncio.create_task(client.aembed(TEXTS[:60], batch_size=2))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.4)  # let in-flight requests finish
    client.close()
    await asyncio.sleep(0.1)

    assert len(emu.embeddings_requests) <= 3
    assert threading.active_count() <= baseline + 1  # the emulator may still close a socket


def test_closing_the_client_during_a_call_lets_the_call_finish_correctly(emu, make_client):
    emu.latency = 0.2
    client = make_client(max_concurrency=2)
    threading.Timer(0.1, client.close).start()

    result = client.embed(TEXTS[:8], batch_size=1)  # 4 rounds of 2: most batches still queued

    assert result.embeddings == [emu.embedding(t) for t in TEXTS[:8]]


async def test_closing_the_client_during_an_async_call_lets_it_finish_correctly(emu, make_client):
    emu.latency = 0.2
    client = make_client(max_concurrency=2)
    asyncio.get_running_loop().call_later(0.1, client.close)

    result = await client.aembed(TEXTS[:8], batch_size=1)

    assert result.embeddings == [emu.embedding(t) for t in TEXTS[:8]]


def test_pacing_never_waits_past_the_deadline(emu, make_client):
    client = make_client(requests_per_minute=6, deadline=2.0, max_concurrency=1)  # 1 per 10 s

    started = time.monotonic()
    with pytest.raises(DeadlineExceededError, match="1 of 3 inputs were embedded"):
        client.embed(TEXTS[:3], batch_size=1)

    # The second request's turn is 10 s away, past the deadline: the call ends at once
    # instead of waiting for it (generously below the 10 s a waiting client would take).
    assert time.monotonic() - started < 5.0
    assert len(emu.embeddings_requests) == 1


def test_backoff_never_sleeps_past_the_deadline(emu, make_client):
    # Three short waits fit the 5 s deadline; the fourth (30 s) would end past it.
    emu.enqueue(*[Fault.status(503, retry_after="0.2")] * 3, Fault.status(503, retry_after="30"))
    client = make_client(deadline=5.0, max_retry_wait=60.0)

    started = time.monotonic()
    with pytest.raises(DeadlineExceededError, match=r"0 of 2 inputs"):
        client.embed(TEXTS[:2])
    elapsed = time.monotonic() - started

    assert len(emu.embeddings_requests) == 4  # it retried while the waits fitted
    # The 30 s wait was refused outright, not slept until the deadline (5 s) or to its end:
    # the call ended after the three 0.2 s waits, with seconds to spare on a loaded machine.
    assert elapsed < 4.0
