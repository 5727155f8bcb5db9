"""The emulator's per-key rate limits: 429s with Retry-After, x-ratelimit-* headers, counters.

The limiter's arithmetic is tested on a fake clock; the HTTP tests use limits that no test
can refill by accident (one request per minute), or a compressed clock.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
import requests

from nebula_core.models import DEFAULT_MODEL
from nebula_core.testing import NebulaEmulator
from nebula_core.testing._ratelimit import RateLimiter, format_duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def post(emu: NebulaEmulator, inputs: list[str], **body: Any) -> requests.Response:
    return requests.post(
        f"{emu.base_url}/embeddings",
        data=orjson.dumps({"model": DEFAULT_MODEL, "input": inputs, **body}),
        headers={"Authorization": f"Bearer {emu.api_key}"},
        timeout=30,
    )


# -- the limiter on a fake clock ------------------------------------------------------------


def test_bucket_refills_continuously() -> None:
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=60, clock=clock)
    for _ in range(60):
        assert limiter.admit("k", 0).allowed
    refused = limiter.admit("k", 0)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(1.0)  # one request refills each second
    assert refused.exceeded == "requests"
    assert refused.remaining_requests == 0
    clock.now += 1.0
    assert limiter.admit("k", 0).allowed


def test_window_frees_a_slot_when_its_request_is_a_minute_old() -> None:
    clock = FakeClock()
    limiter = RateLimiter(tokens_per_minute=100, algorithm="window", clock=clock)
    assert limiter.admit("k", 60).allowed
    clock.now += 20
    assert limiter.admit("k", 40).allowed
    clock.now += 10
    refused = limiter.admit("k", 30)
    assert not refused.allowed and refused.exceeded == "tokens"
    assert refused.retry_after == pytest.approx(30.0)  # the 60-token request expires first
    assert refused.remaining_tokens == 0
    assert refused.reset_tokens == pytest.approx(50.0)  # when the last one expires
    clock.now += 30
    assert limiter.admit("k", 30).allowed


def test_limits_are_kept_per_key() -> None:
    limiter = RateLimiter(requests_per_minute=1, clock=FakeClock())
    assert limiter.admit("key-a", 0).allowed
    assert not limiter.admit("key-a", 0).allowed
    assert limiter.admit("key-b", 0).allowed


def test_tokens_limit_counts_tokens_and_a_huge_request_fits_a_full_bucket() -> None:
    clock = FakeClock()
    limiter = RateLimiter(tokens_per_minute=1000, clock=clock)
    assert limiter.admit("k", 5000).allowed  # bigger than the limit: admitted, becomes a debt
    refused = limiter.admit("k", 1)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx((4000 + 1) * 60 / 1000)


def test_time_scale_compresses_the_minute() -> None:
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=60, time_scale=60, clock=clock)
    for _ in range(60):
        assert limiter.admit("k", 0).allowed
    refused = limiter.admit("k", 0)
    assert refused.retry_after == pytest.approx(1 / 60)  # wall seconds
    assert refused.reset_requests == pytest.approx(1.0)  # a full emulated minute = 1 s
    clock.now += 1 / 60
    assert limiter.admit("k", 0).allowed


def test_reset_durations_look_like_openais() -> None:
    assert format_duration(0.017) == "17ms"
    assert format_duration(0.0) == "0ms"
    assert format_duration(1.0) == "1s"
    assert format_duration(2.5) == "2.5s"
    assert format_duration(360.0) == "6m0s"
    assert format_duration(3723.0) == "1h2m3s"


@pytest.mark.parametrize(
    "options",
    [
        {"requests_per_minute": 0},
        {"tokens_per_minute": 1.5},
        {"rate_limit_algorithm": "leaky"},
        {"rate_limit_time_scale": 0},
        {"rate_limit_body": "xml"},
    ],
)
def test_rate_limit_options_refuse_nonsense(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        NebulaEmulator(**options)


# -- over HTTP ---------------------------------------------------------------------------------


def test_over_the_request_limit_the_answer_is_429_with_retry_after() -> None:
    with NebulaEmulator(requests_per_minute=1) as emu:
        assert post(emu, ["one"]).status_code == 200
        refused = post(emu, ["two"])
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "60"
        assert 59_000 <= int(refused.headers["retry-after-ms"]) <= 60_000
        error = refused.json()["error"]
        assert re.fullmatch(
            rf"Rate limit reached for {re.escape(DEFAULT_MODEL)} on requests per min \(RPM\): "
            r"Limit 1\. Please try again in (59\.\d+|60)s\.",
            error.pop("message"),
        )
        assert error == {"type": "requests", "param": None, "code": "rate_limit_exceeded"}
        assert "x-ratelimit-limit-requests" not in refused.headers  # headers are opt-in
        stats = emu.stats
        assert (stats.requests, stats.rejected_429, stats.statuses) == (2, 1, {200: 1, 429: 1})
        assert stats.tokens == emu.count_tokens("one")


def test_over_the_token_limit_the_answer_is_429() -> None:
    with NebulaEmulator(tokens_per_minute=10) as emu:
        assert post(emu, ["a b c d e f"]).status_code == 200  # 8 tokens
        refused = post(emu, ["a b c"])  # 5 more: over 10
        assert refused.status_code == 429
        assert refused.json()["error"]["type"] == "tokens"
        assert "tokens per min (TPM): Limit 10" in refused.json()["error"]["message"]
        assert emu.stats.rejected_429 == 1
        assert emu.stats.tokens == 8


@pytest.mark.parametrize(
    ("style", "content_type", "start"),
    [
        ("text", "text/plain; charset=utf-8", b"429 Too Many Requests: rate limit exceeded"),
        ("html", "text/html", b"<html>\r\n<head><title>429 Too Many Requests</title>"),
    ],
)
def test_429_bodies_come_in_realistic_styles(style: str, content_type: str, start: bytes) -> None:
    with NebulaEmulator(requests_per_minute=1, rate_limit_body=style) as emu:  # type: ignore[arg-type]
        post(emu, ["one"])
        refused = post(emu, ["two"])
        assert refused.status_code == 429
        assert refused.headers["Content-Type"] == content_type
        assert refused.content.startswith(start)
        assert refused.headers["Retry-After"] == "60"


def test_rate_limit_headers_go_on_every_answer() -> None:
    with NebulaEmulator(
        requests_per_minute=2, tokens_per_minute=1000, rate_limit_headers=True
    ) as emu:
        first = post(emu, ["hello world"])  # 4 tokens
        assert first.status_code == 200
        assert first.headers["x-ratelimit-limit-requests"] == "2"
        assert first.headers["x-ratelimit-remaining-requests"] == "1"
        assert first.headers["x-ratelimit-reset-requests"] in ("30s", "29.999s", "29.998s")
        assert first.headers["x-ratelimit-limit-tokens"] == "1000"
        assert first.headers["x-ratelimit-remaining-tokens"] == "996"
        assert first.headers["x-ratelimit-reset-tokens"].endswith("ms")  # 4 tokens: 240 ms
        invalid = post(emu, [""])  # a 400 uses no allowance but still reports it
        assert invalid.status_code == 400
        assert invalid.headers["x-ratelimit-remaining-requests"] == "1"
        assert post(emu, ["again"]).headers["x-ratelimit-remaining-requests"] == "0"
        refused = post(emu, ["over"])
        assert refused.status_code == 429
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        assert refused.headers["Retry-After"] == "30"


def test_a_compressed_clock_sends_sub_second_retry_after() -> None:
    with NebulaEmulator(requests_per_minute=1, rate_limit_time_scale=60) as emu:
        post(emu, ["one"])
        refused = post(emu, ["two"])
        assert refused.status_code == 429
        assert 0.5 < float(refused.headers["Retry-After"]) <= 1.0  # one emulated minute


def test_reset_gives_every_key_its_full_allowance_and_zeroes_the_counters() -> None:
    with NebulaEmulator(requests_per_minute=1) as emu:
        post(emu, ["one"])
        assert post(emu, ["two"]).status_code == 429
        emu.reset()
        assert emu.stats.requests == 0 and emu.stats.rejected_429 == 0
        assert post(emu, ["three"]).status_code == 200


def test_a_wrong_key_is_refused_before_the_rate_limit_counts() -> None:
    with NebulaEmulator(requests_per_minute=1) as emu:
        wrong = requests.post(
            f"{emu.base_url}/embeddings",
            json={"model": DEFAULT_MODEL, "input": ["x"]},
            headers={"Authorization": "Bearer ak_wrong"},
            timeout=10,
        )
        assert wrong.status_code == 401
        assert post(emu, ["x"]).status_code == 200


@pytest.mark.nebula_emulator(requests_per_minute=1, rate_limit_headers=True)
def test_the_marker_sets_the_rate_limits(nebula_emulator: NebulaEmulator) -> None:
    assert post(nebula_emulator, ["x"]).headers["x-ratelimit-limit-requests"] == "1"
    assert post(nebula_emulator, ["x"]).status_code == 429
