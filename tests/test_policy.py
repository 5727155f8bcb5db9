"""The small pure pieces of policy, on their own: Retry-After, backoff, what to retry, how to read
an error body, and the query instruction catalogue."""

from __future__ import annotations

import pickle
from email.utils import formatdate

import orjson
import pytest

from nebula_core import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    DeadlineExceededError,
    QuotaExceededError,
    RateLimitError,
    ResponseFormatError,
    ServerError,
    with_query_instruction,
)
from nebula_core._codec import decode_embeddings
from nebula_core._response import error_for_status, server_message
from nebula_core._retry import parse_retry_after, retry_wait, should_retry
from nebula_core.models import RETRIEVAL_QUERY_INSTRUCTION


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        ("0.5", 0.5),
        (" 7 ", 7.0),
        ("-4", 0.0),
        ("soon", None),
        (None, None),
        ("nan", None),
    ],
)
def test_retry_after_in_seconds(header, seconds):
    assert parse_retry_after(header) == seconds


def test_retry_after_as_http_date():
    now = 1_800_000_000.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0


def test_retry_after_wins_but_is_capped():
    assert retry_wait(1, 4.0, base=0.5, cap=60) == 4.0
    assert retry_wait(1, 400.0, base=0.5, cap=60) == 60


def test_backoff_grows_with_jitter_and_is_capped():
    for attempt, step in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0)]:
        waits = {retry_wait(attempt, None, base=0.5, cap=60) for _ in range(50)}
        assert all(step / 2 <= w <= step for w in waits)
        assert len(waits) > 1  # jittered
    assert all(retry_wait(30, None, base=0.5, cap=5) <= 5 for _ in range(50))


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (RateLimitError("x"), True),
        (QuotaExceededError("x"), False),
        (ServerError("x", status_code=500), True),
        (ServerError("x", status_code=503), True),
        (ServerError("x", status_code=501), False),
        (ServerError("x", status_code=520), True),
        (ServerError("x", status_code=529), True),
        (ServerError("x", status_code=425), True),
        (APITimeoutError("x", status_code=408), True),
        (QuotaExceededError("x", status_code=402), False),
        (ConfigurationError("x"), False),
        (APIConnectionError("x"), True),
        (APITimeoutError("x"), True),
        (DeadlineExceededError("x", completed=0, total=1), False),
        (BadRequestError("x", status_code=400), False),
        (AuthenticationError("x", status_code=401), False),
        (ResponseFormatError("x"), False),
        (ValueError("x"), False),
    ],
)
def test_what_is_retried(error, retry):
    assert should_retry(error) is retry


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (
            b'{"error": {"message": "bad model", "type": "invalid"}}',
            "application/json",
            "bad model",
        ),
        (b'{"error": "plain error"}', "application/json", "plain error"),
        (b'{"detail": "Not authenticated"}', "application/json", "Not authenticated"),
        (b'{"detail": [{"msg": "field required"}]}', "application/json", "field required"),
        (b'{"message": "too many"}', "application/json", "too many"),
        (
            b"<html><head><title>502 Bad Gateway</title></head></html>",
            "text/html",
            "HTML page: 502 Bad Gateway",
        ),
        (b"upstream timed out", "text/plain", "upstream timed out"),
        (b"", "text/plain", None),
    ],
)
def test_server_message_is_read_from_any_error_shape(body, content_type, message):
    assert server_message(body, content_type) == message


def test_quota_429_is_told_apart_from_throttling():
    quota = error_for_status(429, b"Insufficient balance", {}, where="input 0")
    throttled = error_for_status(429, b"Too many requests", {"Retry-After": "2"}, where="input 0")

    assert isinstance(quota, QuotaExceededError)
    assert type(throttled) is RateLimitError
    assert throttled.retry_after == 2.0


def test_unpacking_places_vectors_by_index():
    body = orjson.dumps(
        {
            "data": [
                {"embedding": [2.0, 2.5], "index": 2},
                {"embedding": [0.0, 0.5], "index": 0},
                {"embedding": [1.0, 1.5], "index": 1},
            ],
            "usage": {"prompt_tokens": 9, "total_tokens": 9},
        }
    )

    decoded = decode_embeddings(body, 3)
    vectors, usage = decoded.to_lists(), decoded.usage

    assert vectors == [[0.0, 0.5], [1.0, 1.5], [2.0, 2.5]]
    assert (usage.prompt_tokens, usage.total_tokens) == (9, 9)


@pytest.mark.parametrize(
    "data",
    [
        [{"embedding": [1.0], "index": True}],
        [{"embedding": [[1.0]], "index": 0}],
        [{"embedding": [None], "index": 0}],
        [{"embedding": [], "index": 0}],
        [{"embedding": "AAAA", "index": 0}],
        ["not an object"],
    ],
)
def test_unpacking_refuses_what_is_not_a_vector(data):
    with pytest.raises(ResponseFormatError):
        decode_embeddings(orjson.dumps({"data": data}), 1)


def test_query_instruction_defaults_per_model_and_can_be_replaced_or_disabled():
    uae = "WhereIsAI/UAE-Large-V1"
    assert with_query_instruction(uae, ["q"], None) == [RETRIEVAL_QUERY_INSTRUCTION + "q"]
    assert with_query_instruction("BAAI/bge-large-en-v1.5", ["q"], None)[0].startswith(
        "Represent this sentence"
    )
    assert with_query_instruction("Qwen/Qwen3-Embedding-8B", ["q"], None)[0].startswith(
        "Instruct: "
    )
    assert with_query_instruction("Qwen/Qwen3-Embedding-8B", ["q"], None)[0].endswith("\nQuery: q")
    assert with_query_instruction(uae, ["q"], "") == ["q"]
    assert with_query_instruction(uae, ["q"], "Find: ") == ["Find: q"]
    assert with_query_instruction("acme/unknown", ["q"], None) == ["q"]


@pytest.mark.parametrize(
    "error",
    [
        DeadlineExceededError("ran out", completed=3, total=9),
        RateLimitError("slow down", server_message="busy", attempts=4, retry_after=2.5),
        ServerError("broken", status_code=503, server_message="overloaded"),
        ResponseFormatError("bad body"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_errors_survive_pickling_with_every_attribute(error):
    clone = pickle.loads(pickle.dumps(error))

    assert type(clone) is type(error)
    assert str(clone) == str(error)
    assert vars(clone) == vars(error)


def test_an_empty_query_is_refused_before_the_prefix_could_hide_it():
    with pytest.raises(ValueError, match="position 0 is empty"):
        with_query_instruction("WhereIsAI/UAE-Large-V1", [" "], None)
