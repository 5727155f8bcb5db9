"""Adaptive pacing over real HTTP: a plain rate-limited server on 127.0.0.1 counts what it saw."""

from __future__ import annotations

import asyncio
import pickle

import pytest
from pacing_servers import API_KEY, RateLimitedServer, vector

from nebula_core import ConfigurationError, NebulaClient, RateLimitError

TEXTS = [f"paced passage number {i}" for i in range(120)]


def client_for(server: RateLimitedServer, **options: object) -> NebulaClient:
    settings: dict[str, object] = {
        "api_key": API_KEY,
        "base_url": server.base_url,
        "max_concurrency": 8,
        "max_retries": 10,
        "timeout": 10.0,
    }
    settings.update(options)
    return NebulaClient(**settings)  # type: ignore[arg-type]


def test_limit_unknown_to_the_client_is_learned_from_429s() -> None:
    # 30 requests a second, 8 workers that could send far more: with learning switched off
    # (retries alone), 345 and 379 attempts came back 429 in two runs of this job; with it,
    # 15 to 31, mostly while the first requests find the limit.
    with RateLimitedServer(per_second=30, burst=5).running() as server:
        client = client_for(server)
        result = client.embed(TEXTS, batch_size=1)

    assert result.embeddings == [vector(t) for t in TEXTS]
    assert server.accepted == 120
    assert server.throttled <= 40
    stats = client.stats
    assert stats.throttled == server.throttled
    assert stats.learned_requests_per_minute is not None  # a limit was learned


def test_with_rate_limit_headers_almost_no_request_is_throttled() -> None:
    with RateLimitedServer(per_second=30, burst=60, headers=True).running() as server:
        client = client_for(server)
        result = client.embed(TEXTS, batch_size=1)

    assert result.embeddings == [vector(t) for t in TEXTS]
    assert server.accepted == 120
    # A "minute" of 2 s whose 60 requests may come at once: the client uses one second's
    # worth of it as a burst, then keeps to the rate the headers describe.
    assert server.throttled <= 2
    learned = client.stats.learned_requests_per_minute
    assert learned is not None and 0.8 * 1800 <= learned <= 1.2 * 1800


async def test_async_calls_share_the_same_pacer() -> None:
    with RateLimitedServer(per_second=30, burst=60, headers=True).running() as server:
        client = client_for(server)
        halves = await asyncio.gather(
            client.aembed(TEXTS[:60], batch_size=1), client.aembed(TEXTS[60:], batch_size=1)
        )

    assert [v for r in halves for v in r.embeddings] == [vector(t) for t in TEXTS]
    assert server.throttled <= 4


def test_explicit_requests_per_minute_wins_over_a_higher_limit_in_headers() -> None:
    # The server allows 100 a second and says so; the client was told 600 a minute.
    with RateLimitedServer(per_second=100, burst=100, headers=True).running() as server:
        client = client_for(server, requests_per_minute=600)
        client.embed(TEXTS[:30], batch_size=1)

    assert server.throttled == 0
    assert client.stats.learned_requests_per_minute == pytest.approx(600)
    # A burst of 10, then 10 a second: 30 requests span about 2 s. Counting arrivals in
    # any 1 s window (generously) proves the cap without timing one request.
    arrivals = server.arrivals
    densest = max(sum(1 for t in arrivals if s <= t < s + 1.0) for s in arrivals)
    assert densest <= 21
    assert arrivals[-1] - arrivals[0] >= 1.5


def test_a_sporadic_429_does_not_lower_the_pace() -> None:
    # No limit at all, but request 20 is answered 429 once (a load balancer's hiccup).
    with RateLimitedServer(per_second=None, throttle_at=frozenset({20})).running() as server:
        client = client_for(server)
        result = client.embed(TEXTS, batch_size=1)

    assert result.embeddings == [vector(t) for t in TEXTS]
    assert (server.accepted, server.throttled) == (120, 1)
    stats = client.stats
    assert stats.throttled == 1
    assert stats.learned_requests_per_minute is None  # nothing learned: no limit imposed
    assert stats.pacing_wait_seconds == 0.0


def test_a_429_error_carries_its_rate_limit_headers_and_never_the_key() -> None:
    limited = RateLimitedServer(per_second=1, headers=True, throttle_at=frozenset({1}))
    with limited.running() as server:
        client = client_for(server, max_retries=0)
        with pytest.raises(RateLimitError) as caught:
            client.embed(["first"])

    error = caught.value
    assert error.status_code == 429
    assert set(error.headers) == {
        "retry-after",
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
    }
    assert error.headers["x-ratelimit-limit-requests"] == "1"
    assert server.seen_authorization == {f"Bearer {API_KEY}"}
    assert API_KEY not in repr(error.__dict__)
    assert client.stats.throttled == 1


def test_rate_limit_share_scales_what_headers_say() -> None:
    with RateLimitedServer(per_second=30, burst=60, headers=True).running() as server:
        client = client_for(server, rate_limit_share=0.5)
        client.embed(TEXTS[:40], batch_size=1)

    learned = client.stats.learned_requests_per_minute
    assert learned is not None and 0.8 * 900 <= learned <= 1.2 * 900
    assert server.throttled <= 4


@pytest.mark.parametrize("share", [0, -1, 1.5, True])
def test_rate_limit_share_must_be_a_fraction(share: object) -> None:
    with pytest.raises(ConfigurationError, match="rate_limit_share must be a number in"):
        NebulaClient(api_key=API_KEY, rate_limit_share=share)  # type: ignore[arg-type]


def test_what_pacing_learned_starts_fresh_after_unpickling() -> None:
    with RateLimitedServer(per_second=30, burst=60, headers=True).running() as server:
        client = client_for(server, rate_limit_share=0.5)
        client.embed(TEXTS[:10], batch_size=1)
        assert client.stats.learned_requests_per_minute is not None

    copy = pickle.loads(pickle.dumps(client))
    assert copy.config.rate_limit_share == 0.5
    assert copy.stats.learned_requests_per_minute is None
    assert copy.stats.throttled == 0
