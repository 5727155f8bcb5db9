"""Our client against each realistic behaviour of the emulator: it gets exact vectors or the
documented error, and the emulator's counters show what happened on the wire."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from nebula_core import BadRequestError, NebulaClient, RateLimitError
from nebula_core.models import DEFAULT_MODEL
from nebula_core.testing import PROXY_FAULTS, Fault, NebulaEmulator

MakeClient = Callable[..., NebulaClient]
TEXTS = [f"passage {i} about topic {i % 3}" for i in range(8)]


def refuse_long_inputs() -> dict[str, Any]:
    """Client options under which the server's answer to a long input reaches the caller.

    A client that manages long inputs itself (`on_long_input`) would otherwise learn the
    server's limit from the refusal and cut the text; told "error", it raises.
    """
    if "on_long_input" in inspect.signature(NebulaClient).parameters:
        return {"on_long_input": "error"}
    return {}


def words(tokens: int) -> str:
    return " ".join(f"w{i}" for i in range(tokens - 2))


@pytest.mark.nebula_emulator(idle_timeout=0.2)
def test_the_client_survives_an_idle_closed_connection(
    emu: NebulaEmulator, make_client: MakeClient
) -> None:
    client = make_client(max_concurrency=1)
    assert client.embed(["before"]).embeddings == [emu.embedding("before")]
    time.sleep(0.6)  # the server closes the pooled connection meanwhile
    result = client.embed(["after"])  # no error reaches the user
    assert result.embeddings == [emu.embedding("after")]
    assert emu.stats.idle_closed >= 1
    assert emu.stats.connections == 2  # the client reconnected
    assert emu.stats.statuses == {200: 2}


@pytest.mark.nebula_emulator(requests_per_minute=1, rate_limit_time_scale=30)
def test_the_client_gets_rate_limit_error_then_success(
    emu: NebulaEmulator, make_client: MakeClient
) -> None:
    impatient = make_client(max_retries=0)
    assert impatient.embed(["first"]).embeddings == [emu.embedding("first")]
    with pytest.raises(RateLimitError) as caught:
        impatient.embed(["second"])
    assert caught.value.status_code == 429
    assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= 2.0
    assert "Rate limit reached" in (caught.value.server_message or "")

    patient = make_client(max_retries=6)
    result = patient.embed(["second"])  # waits out Retry-After (2 s at most), then succeeds
    assert result.embeddings == [emu.embedding("second")]
    assert emu.stats.rejected_429 >= 2
    assert emu.stats.statuses[200] == 2


@pytest.mark.parametrize("style", ["text", "html"])
def test_plain_and_html_429s_are_throttling_not_quota(style: str) -> None:
    with NebulaEmulator(requests_per_minute=1, rate_limit_body=style) as emu:  # type: ignore[arg-type]
        client = NebulaClient(api_key=emu.api_key, base_url=emu.base_url, max_retries=0)
        client.embed(["first"])
        with pytest.raises(RateLimitError) as caught:
            client.embed(["second"])
        assert caught.value.retry_after == 60.0
        client.close()


def test_nginx_html_502_and_504_pages_are_retried(
    emu: NebulaEmulator, make_client: MakeClient
) -> None:
    emu.enqueue(Fault.html_error(502), Fault.html_error(504))
    result = make_client().embed(["through the proxy"])
    assert result.embeddings == [emu.embedding("through the proxy")]
    assert result.retries == 2
    assert [r.status for r in emu.embeddings_requests] == [502, 504, 200]


def test_every_proxy_fault_including_cloudflare_52x_is_retried(
    emu: NebulaEmulator, make_client: MakeClient
) -> None:
    emu.enqueue(*PROXY_FAULTS)
    result = make_client(max_retries=len(PROXY_FAULTS)).embed(["through the proxy"])
    assert result.embeddings == [emu.embedding("through the proxy")]
    assert result.retries == 7
    assert [r.status for r in emu.embeddings_requests] == [502, 504, 520, 521, 522, 523, 524, 200]


def test_a_proxy_413_splits_the_batch(emu: NebulaEmulator, make_client: MakeClient) -> None:
    # Room for four inputs per body (and a field or two more), not eight: nginx refuses the
    # first batch in HTML.
    four = len(orjson.dumps({"model": DEFAULT_MODEL, "input": TEXTS[:4]}))
    emu.endpoint.max_body_bytes = four + 64
    result = make_client(max_concurrency=1).embed(TEXTS, batch_size=8)
    assert result.embeddings == [emu.embedding(text) for text in TEXTS]
    sent = [(r.status, len(orjson.loads(r.body)["input"])) for r in emu.embeddings_requests]
    assert sent == [(413, 8), (200, 4), (200, 4)]


@pytest.mark.nebula_emulator(capacity=2, seconds_per_input=0.05)
def test_the_client_gets_every_vector_through_finite_capacity(
    emu: NebulaEmulator, make_client: MakeClient
) -> None:
    texts = [f"text {i}" for i in range(24)]
    result = make_client(max_concurrency=6).embed(texts, batch_size=2)
    assert result.embeddings == [emu.embedding(text) for text in texts]
    assert emu.stats.peak_computing == 2
    assert emu.stats.requests == 12 and emu.stats.inputs == 24


# The server's limit (20) is below the documented 512, so the client sends the input as is.
@pytest.mark.nebula_emulator(long_input="tei", max_input_tokens=20)
def test_a_tei_413_for_one_long_input_names_the_input(
    emu: NebulaEmulator, make_client: MakeClient
) -> None:
    with pytest.raises(BadRequestError) as caught:
        make_client(max_concurrency=1, **refuse_long_inputs()).embed(["fine", words(30)])
    assert caught.value.status_code == 413
    assert caught.value.server_message == (
        "Input validation error: inputs must have less than 20 tokens"
    )


# The server's limit (20) is below the documented 512, so the client sends the input as is.
@pytest.mark.nebula_emulator(long_input="vllm", max_input_tokens=20)
def test_a_vllm_400_reaches_the_user_with_the_servers_message(
    emu: NebulaEmulator, make_client: MakeClient
) -> None:
    with pytest.raises(BadRequestError) as caught:
        make_client(**refuse_long_inputs()).embed([words(30)])
    assert caught.value.status_code == 400
    assert (caught.value.server_message or "").startswith(
        "This model's maximum context length is 20 tokens. However, you requested 30 tokens"
    )
    assert len(emu.embeddings_requests) == 1  # a 400 is not retried


# The server's limit (20) is below the documented 512, so the client sends the input as is.
@pytest.mark.nebula_emulator(long_input="truncate", max_input_tokens=20)
def test_silent_truncation_gives_the_vector_of_the_first_tokens(
    emu: NebulaEmulator, make_client: MakeClient
) -> None:
    result = make_client().embed([words(30)])
    assert result.embeddings == [emu.embedding(words(20))] == [emu.embedding(words(30))]
    assert result.usage.prompt_tokens == 20


@pytest.mark.nebula_emulator(extra_fields="forbid", honour_encoding_format=True)
def test_the_clients_body_passes_a_strict_server_and_gets_floats(
    emu: NebulaEmulator, make_client: MakeClient
) -> None:
    result = make_client().embed(["strict"])
    assert result.embeddings == [emu.embedding("strict")]
    *refused, accepted = emu.embeddings_requests
    # A client that tries base64 first must fall back to the documented body after the 422.
    assert all(r.status == 422 for r in refused) and len(refused) <= 1
    assert orjson.loads(accepted.body) == {"model": DEFAULT_MODEL, "input": ["strict"]}


@pytest.mark.nebula_emulator(vectors="raw")
def test_raw_vectors_reach_the_user_unchanged(emu: NebulaEmulator, make_client: MakeClient) -> None:
    result = make_client().embed(["raw one", "raw two"])
    assert result.embeddings == [emu.embedding("raw one"), emu.embedding("raw two")]
    assert sum(v * v for v in result.embeddings[0]) > 10  # not re-normalized on the way
