"""Cutting a call into requests, and what a 413 (or a too-long input) changes for the rest."""

from __future__ import annotations

import json

import pytest

from nebula_core import BadRequestError, NebulaClient
from nebula_core._batching import (
    BatchLimits,
    Refusal,
    batch_ranges,
    body_size,
    classify_413,
    halves,
    says_input_too_long,
)
from tests.servers import CountingServer, html_error, json_error, vector_of

TEI_TOO_LONG = "Input validation error: `inputs` must have less than 512 tokens. Given: 873"
VLLM_TOO_LONG = "This model's maximum context length is 512 tokens. However, you requested 900"


def refused(message: str | None, status: int = 413) -> BadRequestError:
    return BadRequestError("refused", status_code=status, server_message=message)


# -- pure functions --------------------------------------------------------------------------


def test_batch_ranges_cover_every_input_once_in_order():
    assert batch_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert batch_ranges(8, 4) == [(0, 4), (4, 8)]
    assert batch_ranges(0, 4) == []
    assert batch_ranges(3, 64) == [(0, 3)]


def test_halves_split_a_range_with_the_larger_half_last():
    assert halves(0, 8) == [(0, 4), (4, 8)]
    assert halves(10, 13) == [(10, 11), (11, 13)]
    assert halves(5, 7) == [(5, 6), (6, 7)]


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("HTML page: 413 Request Entity Too Large", Refusal.BODY_SIZE),  # nginx
        ("Request entity too large.", Refusal.BODY_SIZE),
        ("Payload Too Large", Refusal.BODY_SIZE),
        ("request body exceeds 1048576 bytes", Refusal.BODY_SIZE),
        (None, Refusal.BODY_SIZE),
        (
            "Too many inputs: 32 in one request, but at most 10 inputs per request are allowed.",
            Refusal.INPUT_COUNT,
        ),
        ("batch size 64 > maximum allowed batch size 32", Refusal.INPUT_COUNT),
        ("at most 16 inputs per call", Refusal.INPUT_COUNT),
        (TEI_TOO_LONG, Refusal.INPUT_TOO_LONG),
        (VLLM_TOO_LONG, Refusal.INPUT_TOO_LONG),
    ],
)
def test_classify_413_tells_body_size_from_input_count_from_a_too_long_input(message, kind):
    assert classify_413(refused(message)) is kind


def test_says_input_too_long_only_for_token_limit_messages():
    assert says_input_too_long(TEI_TOO_LONG)
    assert says_input_too_long(VLLM_TOO_LONG)
    assert says_input_too_long("input 3 is too long for BAAI/bge-large-en-v1.5: 600 tokens")
    assert not says_input_too_long("model not found")
    assert not says_input_too_long("at most 10 inputs per request")
    assert not says_input_too_long(None)


def test_an_input_count_refusal_caps_counts_just_below_what_failed():
    limits = BatchLimits(32)
    texts = ["t"] * 64
    assert limits.learn(Refusal.INPUT_COUNT, texts[:32])
    assert limits.max_inputs == 31
    assert not limits.learn(Refusal.INPUT_COUNT, texts[:40])  # teaches nothing new
    # A 32-input batch is cut in halves, not trimmed to 31 and a one-input straggler.
    assert limits.split(texts, 0, 32) == [(0, 16), (16, 32)]
    assert limits.split(texts, 32, 48) == [(32, 48)]


def test_a_body_size_refusal_only_splits_batches_at_least_as_large_in_bytes():
    limits = BatchLimits(16)
    texts = ["x" * 1000] * 16 + ["short"] * 16
    assert limits.learn(Refusal.BODY_SIZE, texts[:16])
    assert limits.max_inputs == 16  # counts are untouched
    assert limits.max_bytes == body_size(texts[:16]) - 1
    assert limits.split(texts, 0, 16) == [(0, 8), (8, 16)]
    assert limits.split(texts, 16, 32) == [(16, 32)]  # short texts still go 16 at a time


def test_a_too_long_input_or_a_single_input_teaches_nothing():
    limits = BatchLimits(16)
    assert not limits.learn(Refusal.INPUT_TOO_LONG, ["a"] * 16)
    assert not limits.learn(Refusal.BODY_SIZE, ["a"])
    assert not limits.learn(Refusal.INPUT_COUNT, ["a"])
    assert (limits.max_inputs, limits.max_bytes) == (16, None)


# -- against a real HTTP server (max_concurrency=1: requests in a known order) ----------------


def client_for(server: CountingServer) -> NebulaClient:
    return NebulaClient(
        api_key="ak_test", base_url=server.base_url, max_concurrency=1, retry_base_wait=0.01
    )


def test_a_proxy_body_size_413_splits_big_batches_but_not_later_small_ones():
    limit = 9000  # bytes, like a proxy's client_max_body_size

    def proxy(inputs: list[str]) -> tuple[int, str, bytes] | None:
        size = len(json.dumps({"model": "m", "input": inputs}))
        return html_error(413, "413 Request Entity Too Large") if size > limit else None

    texts = [f"{i:04d} " + "long " * 200 for i in range(16)] + [f"short {i}" for i in range(48)]
    with CountingServer(responder=proxy) as server:
        result = client_for(server).embed(texts, batch_size=16)

    assert result.embeddings == [vector_of(t) for t in texts]
    sizes = [len(inputs) for inputs in server.arrivals]
    # 16 long texts (16 KB) -> 413; halves of 8 fit; the short batches go out whole.
    assert sizes == [16, 8, 8, 16, 16, 16]


def test_an_input_count_413_keeps_later_batches_below_the_refused_count():
    def capped(inputs: list[str]) -> tuple[int, str, bytes] | None:
        if len(inputs) > 10:
            return json_error(413, f"Too many inputs: {len(inputs)}; at most 10 per request.")
        return None

    texts = [f"text {i}" for i in range(64)]
    with CountingServer(responder=capped) as server:
        result = client_for(server).embed(texts, batch_size=32)

    assert result.embeddings == [vector_of(t) for t in texts]
    assert [len(inputs) for inputs in server.arrivals] == [32, 16, 8, 8, 8, 8, 8, 8, 8, 8]


def tei_refusing_long(inputs: list[str]) -> tuple[int, str, bytes] | None:
    # Over 520 words ("long" is one WordPiece token): too long for a 512-token model.
    if any(text.count("long") > 520 for text in inputs):
        return json_error(413, TEI_TOO_LONG)
    return None


def test_one_too_long_input_never_shrinks_the_other_batches():
    texts = [f"text {i}" for i in range(48)]
    texts[5] = "long " * 600
    with CountingServer(responder=tei_refusing_long) as server:
        client = NebulaClient(api_key="ak_test", base_url=server.base_url, max_concurrency=1)
        # A model the client knows no limit for: it learns 512 from the 413.
        result = client.embed(texts, model="acme/unknown-model", batch_size=16)

    others = [i for i in range(48) if i != 5]
    assert [result.embeddings[i] for i in others] == [vector_of(texts[i]) for i in others]
    # The long-input handling re-sent that batch with input 5 cut to the limit; the batch
    # size of the call stayed 16 throughout.
    assert [len(inputs) for inputs in server.arrivals] == [16, 16, 16, 16]
    assert server.arrivals[1][5].count("long") <= 512


def test_a_body_size_413_for_one_input_names_its_position():
    def proxy(inputs: list[str]) -> tuple[int, str, bytes] | None:
        big = any(len(text) > 5000 for text in inputs)
        return html_error(413, "413 Request Entity Too Large") if big else None

    texts = [f"text {i}" for i in range(8)]
    texts[6] = "x" * 6000
    with (
        CountingServer(responder=proxy) as server,
        pytest.raises(BadRequestError, match="input at position 6 alone is too large") as caught,
    ):
        client_for(server).embed(texts, batch_size=8)
    assert caught.value.status_code == 413
    # 8 refused -> 4 ok, 4 refused -> 2 ok, 2 refused -> input 6 alone refused: named.
    assert [len(inputs) for inputs in server.arrivals] == [8, 4, 4, 2, 2, 1]


def test_a_400_that_names_no_token_limit_is_not_split():
    def unknown_model(inputs: list[str]) -> tuple[int, str, bytes] | None:
        return json_error(400, "model 'nope' does not exist")

    with (
        CountingServer(responder=unknown_model) as server,
        pytest.raises(BadRequestError, match="does not exist"),
    ):
        client_for(server).embed(["fine", "also fine"])
    assert [len(inputs) for inputs in server.arrivals] == [2]
