"""NebulaClient against the emulator over real HTTP: ordering, batching, retries, concurrency,
validation, errors and secret hygiene (SPEC §4 items 1-5)."""

from __future__ import annotations

import asyncio
import gc
import logging
import pickle
import time
import warnings
from email.utils import formatdate

import pytest

from nebula_core import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    DeadlineExceededError,
    NebulaClient,
    QuotaExceededError,
    RateLimitError,
    ResponseFormatError,
    ServerError,
    Usage,
)
from nebula_core.testing import Fault, NebulaEmulator
from tests.conftest import TEXTS, LoopTicks
from tests.servers import CountingServer, vector_of

MODEL = "WhereIsAI/UAE-Large-V1"


# -- 1. index-ordered unpacking -----------------------------------------------------------


def test_results_follow_index_not_response_order(emu, make_client):
    result = make_client().embed(TEXTS, batch_size=16)

    assert result.embeddings == [emu.embedding(text) for text in TEXTS]
    assert len(emu.embeddings_requests) == 13  # ceil(200 / 16)
    assert result.requests == 13
    assert result.retries == 0


def test_usage_is_summed_over_every_request(emu, make_client):
    result = make_client().embed(TEXTS[:50], batch_size=8)

    tokens = sum(emu.count_tokens(text) for text in TEXTS[:50])
    assert result.usage == Usage(prompt_tokens=tokens, total_tokens=tokens)


def test_each_request_carries_model_and_its_slice_of_inputs(emu, make_client):
    make_client(max_concurrency=1).embed(TEXTS[:10], model="BAAI/bge-large-en-v1.5", batch_size=4)

    sent = [(r.model, r.inputs) for r in emu.embeddings_requests]
    assert sent == [
        ("BAAI/bge-large-en-v1.5", TEXTS[0:4]),
        ("BAAI/bge-large-en-v1.5", TEXTS[4:8]),
        ("BAAI/bge-large-en-v1.5", TEXTS[8:10]),
    ]


def test_model_dimensions_come_from_the_service(emu, make_client):
    client = make_client()
    qwen = client.embed(["a text"], model="Qwen/Qwen3-Embedding-8B").embeddings[0]
    unknown = client.embed(["a text"], model="acme/new-model").embeddings[0]

    assert len(qwen) == 4096
    assert qwen == emu.embedding("a text", model="Qwen/Qwen3-Embedding-8B")
    assert len(unknown) == 768


@pytest.mark.parametrize(
    ("kind", "detail"),
    [
        ("missing_index", "index None"),
        ("duplicate_index", "appears more than once"),
        ("out_of_range_index", "outside 0..3"),
        ("non_int_index", "indices must be integers"),
        ("missing_item", "sent 4 inputs but got 3"),
        ("extra_item", "sent 4 inputs but got 5"),
        ("mixed_dimensions", "different lengths"),
        ("non_numeric", "non-numeric"),
        ("empty_data", "sent 4 inputs but got 0"),
        ("no_data", "'data' is missing"),
        ("not_a_list", "'data' is missing or not a list"),
    ],
)
def test_inconsistent_response_raises_instead_of_misaligning(emu, make_client, kind, detail):
    emu.enqueue(Fault.corrupt(kind))

    with pytest.raises(ResponseFormatError, match="cannot be trusted") as caught:
        make_client().embed(TEXTS[:4])

    assert detail in str(caught.value)
    assert len(emu.embeddings_requests) == 1  # a wrong body is not retried into a right one


def test_malformed_json_is_a_format_error(emu, make_client):
    emu.enqueue(Fault.malformed_json())

    with pytest.raises(ResponseFormatError, match="not JSON"):
        make_client().embed(TEXTS[:3])


# -- 2. one retry layer ---------------------------------------------------------------------


def test_429_is_retried_after_retry_after_seconds(emu, make_client, caplog):
    emu.enqueue(Fault.status(429, retry_after="1"))
    caplog.set_level(logging.WARNING, logger="nebula_core")

    started = time.monotonic()
    result = make_client().embed(TEXTS[:3])
    elapsed = time.monotonic() - started

    assert result.embeddings == [emu.embedding(t) for t in TEXTS[:3]]
    assert len(emu.embeddings_requests) == 2
    assert result.retries == 1
    assert elapsed >= 1.0
    warnings_logged = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings_logged) == 1
    assert "HTTP 429" in warnings_logged[0].getMessage()
    assert "retry 1 of 6 in 1.00s" in warnings_logged[0].getMessage()


def test_retry_after_as_http_date_is_honoured(emu, make_client):
    emu.enqueue(Fault.status(503, retry_after=formatdate(time.time() + 2, usegmt=True)))

    started = time.monotonic()
    make_client().embed(TEXTS[:2])

    assert time.monotonic() - started >= 0.9  # HTTP-dates have one-second resolution
    assert len(emu.embeddings_requests) == 2


def test_retry_after_is_capped_by_max_retry_wait(emu, make_client, caplog):
    emu.enqueue(Fault.status(429, retry_after="3600"))
    caplog.set_level(logging.WARNING, logger="nebula_core")

    make_client(max_retry_wait=0.2).embed(TEXTS[:2])  # an hour's wait would hit the timeout

    assert len(emu.embeddings_requests) == 2
    assert "retry 1 of 6 in 0.20s" in caplog.records[-1].getMessage()


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_transient_server_errors_are_retried(emu, make_client, status):
    emu.enqueue(Fault.status(status), Fault.status(status))

    result = make_client().embed(TEXTS[:5])

    assert result.embeddings == [emu.embedding(t) for t in TEXTS[:5]]
    assert len(emu.embeddings_requests) == 3
    assert result.retries == 2


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, BadRequestError),
        (422, BadRequestError),
        (501, ServerError),
    ],
)
def test_client_errors_are_never_retried(emu, make_client, status, error):
    emu.enqueue(Fault.status(status, message="the server's own words"))

    with pytest.raises(error) as caught:
        make_client().embed(TEXTS[:5])

    assert caught.value.status_code == status
    assert caught.value.server_message == "the server's own words"
    assert "the server's own words" in str(caught.value)
    assert len(emu.embeddings_requests) == 1


def test_exhausted_quota_is_not_retried(emu, make_client):
    emu.enqueue(Fault.quota_exhausted())

    with pytest.raises(QuotaExceededError, match="top up"):
        make_client().embed(TEXTS[:5])

    assert len(emu.embeddings_requests) == 1


def test_retries_stop_after_max_retries(emu, make_client):
    emu.enqueue(*[Fault.status(429)] * 5)

    with pytest.raises(RateLimitError) as caught:
        make_client(max_retries=2).embed(TEXTS[:5])

    assert len(emu.embeddings_requests) == 3
    assert caught.value.attempts == 3
    assert "gave up after 3 attempts" in str(caught.value)
    assert "max_concurrency" in str(caught.value)  # says what to do next


def test_dropped_connection_is_retried(emu, make_client):
    emu.enqueue(Fault.drop())

    result = make_client().embed(TEXTS[:5])

    assert result.embeddings == [emu.embedding(t) for t in TEXTS[:5]]
    assert len(emu.embeddings_requests) == 2


def test_body_cut_short_of_content_length_is_retried(emu, make_client):
    emu.enqueue(Fault.truncate())

    result = make_client().embed(TEXTS[:5])

    assert result.embeddings == [emu.embedding(t) for t in TEXTS[:5]]
    assert len(emu.embeddings_requests) == 2


def test_read_timeout_is_retried_then_reported(emu, make_client):
    emu.enqueue(Fault.delay(1.0), Fault.delay(1.0))

    with pytest.raises(APITimeoutError, match=r"did not answer within 0\.2s"):
        make_client(timeout=0.2, max_retries=1).embed(TEXTS[:2])

    emu.enqueue(Fault.delay(1.0))
    assert make_client(timeout=0.2).embed(TEXTS[:2]).retries == 1


def test_unreachable_service_is_a_connection_error():
    client = NebulaClient(
        api_key="ak_x", base_url="http://127.0.0.1:9/v1", max_retries=1, retry_base_wait=0.01
    )

    with pytest.raises(APIConnectionError, match="Could not complete the request"):
        client.embed(["hello"])


def test_html_error_page_is_summarised_not_dumped(emu, make_client):
    emu.enqueue(*[Fault.html_error(502)] * 3)

    with pytest.raises(ServerError) as caught:
        make_client(max_retries=2).embed(TEXTS[:2])

    assert caught.value.status_code == 502
    assert "HTML page" in str(caught.value)
    assert "<html" not in str(caught.value)


# -- 3. batching, 413 and concurrency -------------------------------------------------------


def test_413_splits_the_batch_and_remembers_the_smaller_size():
    with NebulaEmulator(max_inputs_per_request=10) as emu:
        client = NebulaClient(api_key=emu.api_key, base_url=emu.base_url, max_concurrency=1)
        result = client.embed(TEXTS[:64], batch_size=32)

        assert result.embeddings == [emu.embedding(t) for t in TEXTS[:64]]
        sizes = [len(r.inputs or []) for r in emu.embeddings_requests]
        # 32 -> 413, 16 -> 413, then 8 at a time for the rest of the call.
        assert sizes == [32, 16, 8, 8, 8, 8, 8, 8, 8, 8]
        assert [r.status for r in emu.embeddings_requests[:2]] == [413, 413]


def test_a_single_input_too_large_names_its_position(emu, make_client):
    # The pair is refused, input 0 alone goes through, input 1 alone is refused again.
    emu.enqueue(Fault.status(413), Fault.delay(0), Fault.status(413))

    with pytest.raises(BadRequestError, match="input at position 1 alone is too large"):
        make_client(max_concurrency=1).embed(TEXTS[:2], batch_size=2)


@pytest.mark.parametrize("limit", [1, 2, 4])
def test_sync_batches_run_concurrently_but_never_more_than_max_concurrency(limit):
    texts = TEXTS[:64]  # 8 batches of 8
    with CountingServer(latency=0.05) as server:
        client = NebulaClient(api_key="ak_test", base_url=server.base_url, max_concurrency=limit)
        result = client.embed(texts, batch_size=8)
        client.close()

    assert result.embeddings == [vector_of(t) for t in texts]
    assert len(server.arrivals) == 8
    assert server.max_in_flight == limit  # all slots used, and not one request more


async def test_async_batches_run_concurrently_without_blocking_the_loop():
    texts = TEXTS[:64]
    with CountingServer(latency=0.2) as server:
        client = NebulaClient(api_key="ak_test", base_url=server.base_url, max_concurrency=4)
        async with LoopTicks() as loop:
            result = await client.aembed(texts, batch_size=8)
        client.close()

    assert result.embeddings == [vector_of(t) for t in texts]
    assert server.max_in_flight == 4  # 8 batches, 4 in flight, never 5
    assert loop.ticks >= 20  # the loop kept running while requests were in flight (>= 0.4 s)


async def test_concurrent_aembed_calls_share_the_concurrency_bound():
    with CountingServer(latency=0.05) as server:
        client = NebulaClient(api_key="ak_test", base_url=server.base_url, max_concurrency=2)
        first, second = await asyncio.gather(
            client.aembed(TEXTS[:16], batch_size=4), client.aembed(TEXTS[16:32], batch_size=4)
        )
        client.close()

    assert first.embeddings + second.embeddings == [vector_of(t) for t in TEXTS[:32]]
    assert server.max_in_flight == 2  # two calls, one bound of 2 for the client


# -- 4. validation before any request -------------------------------------------------------


def test_non_string_inputs_are_refused_by_position(emu, make_client):
    with pytest.raises(TypeError, match=r"positions 1, 3 are NoneType, bytes"):
        make_client().embed(["ok", None, "fine", b"bytes"])  # type: ignore[list-item]

    assert emu.requests == []


def test_blank_inputs_are_refused_by_position(emu, make_client):
    with pytest.raises(ValueError, match=r"positions 0, 2 are empty or whitespace-only"):
        make_client().embed(["", "ok", " \n\t", "fine"])

    assert emu.requests == []


def test_a_bare_string_is_refused(emu, make_client):
    with pytest.raises(TypeError, match=r"wrap a single text in a list"):
        make_client().embed("a single text")

    assert emu.requests == []


def test_an_empty_list_sends_nothing(emu, make_client):
    result = make_client().embed([])

    assert result.embeddings == []
    assert result.requests == 0
    assert emu.requests == []


async def test_async_validation_happens_before_any_request(emu, make_client):
    with pytest.raises(ValueError, match="position 1"):
        await make_client().aembed(["ok", "   "])

    assert emu.requests == []


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, True])
def test_bad_batch_size_is_refused(make_client, batch_size):
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        make_client().embed(["x"], batch_size=batch_size)


# -- configuration ---------------------------------------------------------------------------


def test_key_and_base_url_come_from_the_environment(emu, monkeypatch):
    monkeypatch.setenv("NEBULA_API_KEY", emu.api_key)
    monkeypatch.setenv("NEBULA_BASE_URL", emu.base_url)

    result = NebulaClient().embed(["from the environment"])

    assert result.embeddings == [emu.embedding("from the environment")]


def test_arguments_win_over_the_environment(emu, monkeypatch):
    monkeypatch.setenv("NEBULA_API_KEY", "ak_wrong")
    monkeypatch.setenv("NEBULA_BASE_URL", "http://127.0.0.1:9/v1")

    client = NebulaClient(api_key=emu.api_key, base_url=emu.base_url + "/")

    assert client.embed(["x"]).embeddings == [emu.embedding("x")]


def test_wrong_key_is_an_authentication_error(emu, make_client):
    with pytest.raises(AuthenticationError, match="NEBULA_API_KEY") as caught:
        make_client(api_key="ak_wrong").embed(["x"])

    assert caught.value.status_code == 401
    assert len(emu.embeddings_requests) == 1


def test_missing_key_says_how_to_set_it():
    with pytest.raises(ConfigurationError, match="NEBULA_API_KEY"):
        NebulaClient()


@pytest.mark.parametrize(
    "base_url", ["not a url", "ftp://example.com/v1", "https://", "https://u:p@example.com/v1"]
)
def test_a_base_url_that_is_not_a_url_is_refused(base_url):
    with pytest.raises(ConfigurationError, match="base_url"):
        NebulaClient(api_key="ak_x", base_url=base_url)


def test_plain_http_to_a_remote_host_warns():
    with pytest.warns(UserWarning, match="unencrypted"):
        NebulaClient(api_key="ak_x", base_url="http://example.com/v1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NebulaClient(api_key="ak_x", base_url="http://127.0.0.1:8000/v1")
        NebulaClient(api_key="ak_x", base_url="http://localhost:8000/v1")


@pytest.mark.parametrize(
    ("option", "value"),
    [("timeout", 0), ("max_retries", -1), ("max_concurrency", 0), ("deadline", -5)],
)
def test_bad_options_are_refused_by_name(option, value):
    with pytest.raises(ConfigurationError, match=option):
        NebulaClient(api_key="ak_x", **{option: value})


# -- 5. secret hygiene ------------------------------------------------------------------------

SECRET = "ak_super_secret_value_1234"


def test_the_key_never_appears_in_repr_or_str():
    client = NebulaClient(api_key=SECRET, base_url="http://127.0.0.1:9/v1")

    for text in (repr(client), str(client), repr(client.config), str(client.config)):
        assert SECRET not in text


def test_the_key_never_appears_in_errors_or_logs(caplog):
    caplog.set_level(logging.DEBUG)
    with NebulaEmulator(api_key="ak_other") as emu:
        emu.enqueue(Fault.status(503))
        client = NebulaClient(api_key=SECRET, base_url=emu.base_url, retry_base_wait=0.01)
        with pytest.raises(AuthenticationError) as caught:
            client.embed(["x"])

    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    assert caplog.records  # something was logged, and none of it is the key
    assert all(SECRET not in record.getMessage() for record in caplog.records)


def test_the_key_is_not_sent_to_another_host_on_redirect():
    with NebulaEmulator(api_key=SECRET) as origin, NebulaEmulator(api_key=SECRET) as other:
        # Same machine, different host name: requests must drop the Authorization header.
        elsewhere = other.base_url.replace("127.0.0.1", "localhost") + "/embeddings"
        origin.enqueue(Fault.redirect(elsewhere, code=307))
        client = NebulaClient(api_key=SECRET, base_url=origin.base_url)

        with pytest.raises(AuthenticationError):
            client.embed(["x"])

        assert len(other.embeddings_requests) == 1
        assert "Authorization" not in other.embeddings_requests[0].headers


def test_default_headers_are_not_sent_to_another_host_on_redirect():
    gateway = {"X-Api-Key": "gw-SECRET", "X-Trace": "also-dropped"}
    with NebulaEmulator(api_key=SECRET) as origin, NebulaEmulator(api_key=SECRET) as other:
        elsewhere = other.base_url.replace("127.0.0.1", "localhost") + "/embeddings"
        origin.enqueue(Fault.redirect(elsewhere, code=307))
        origin.enqueue(Fault.redirect(origin.base_url + "/embeddings", code=307))
        client = NebulaClient(api_key=SECRET, base_url=origin.base_url, default_headers=gateway)

        with pytest.raises(AuthenticationError):
            client.embed(["x"])
        # A redirect on the same host keeps them: they may be what the gateway checks.
        client.embed(["y"])

    [sent_elsewhere] = other.embeddings_requests
    assert "X-Api-Key" not in sent_elsewhere.headers
    assert "X-Trace" not in sent_elsewhere.headers
    assert origin.embeddings_requests[-1].headers["X-Api-Key"] == "gw-SECRET"


def test_a_key_with_a_line_break_is_refused_without_echoing_it():
    with pytest.raises(ConfigurationError, match="line break") as caught:
        NebulaClient(api_key="ak_abc\r\nX-Injected: 1")

    assert "X-Injected" not in str(caught.value)


# -- pickling, deadline and cancellation ------------------------------------------------------


def test_the_client_pickles_and_works_after(emu, make_client):
    client = make_client()
    client.embed(["warm up the session"])

    clone = pickle.loads(pickle.dumps(client))

    assert clone.embed(["after pickling"]).embeddings == [emu.embedding("after pickling")]
    assert clone.config == client.config


def test_deadline_stops_retrying_and_says_how_much_was_done(emu, make_client):
    emu.set_fault_rate(1.0, [Fault.status(503, retry_after="0.3")], seed=1)

    started = time.monotonic()
    with pytest.raises(DeadlineExceededError, match=r"0 of 4 inputs were embedded") as caught:
        make_client(deadline=1.0, max_retries=50).embed(TEXTS[:4])

    # Retries every 0.3 s fit 4 requests into the deadline; 50 retries would take 15 s.
    assert time.monotonic() - started < 5.0
    assert 1 <= len(emu.embeddings_requests) <= 4
    assert caught.value.completed == 0
    assert caught.value.total == 4
    assert "HTTP 503" in str(caught.value)


async def test_cancelling_aembed_stops_new_requests(emu, make_client):
    emu.latency = 0.2
    client = make_client(max_concurrency=2)

    task = asyncio.create_task(client.aembed(TEXTS[:40], batch_size=2))  # 20 batches
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    sent_at_cancel = len(emu.embeddings_requests)
    await asyncio.sleep(0.6)

    assert sent_at_cancel <= 4
    assert len(emu.embeddings_requests) <= sent_at_cancel + 2  # only those already in flight


def test_stats_add_up_every_call_including_failed_ones(emu, make_client):
    client = make_client(max_retries=1)
    emu.enqueue(Fault.status(503))
    first = client.embed(TEXTS[:10], batch_size=4)
    emu.enqueue(Fault.status(400))
    with pytest.raises(BadRequestError):
        client.embed(TEXTS[:2])

    stats = client.stats
    assert (stats.calls, stats.inputs, stats.requests, stats.retries) == (2, 10, 5, 1)
    assert stats.total_tokens == first.usage.total_tokens
    assert pickle.loads(pickle.dumps(client)).stats.calls == 0  # counts belong to one process


def test_a_netrc_entry_for_the_host_does_not_replace_the_key(
    emu, make_client, tmp_path, monkeypatch
):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password something-else\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))

    result = make_client().embed(["x"])

    assert result.embeddings == [emu.embedding("x")]
    assert emu.embeddings_requests[0].headers["Authorization"] == "Bearer ***"


def test_a_call_leaves_no_reference_cycles_behind(emu, make_client):
    """Cyclic garbage would keep each dropped result alive until a full GC pass: an ingestion
    loop would then hold many results in memory at once."""
    client = make_client(max_concurrency=2)
    client.embed(TEXTS[:8], batch_size=2)  # warm up pools and sessions
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            client.embed(TEXTS[:8], batch_size=2)
        unreachable = gc.collect()
    finally:
        gc.enable()

    assert unreachable == 0
