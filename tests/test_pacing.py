"""The pacing policy, driven by a fake clock and synthetic answers: no sleeps."""

from __future__ import annotations

import random
from typing import Protocol

import pytest

from nebula_core._pacing import (
    Pacer,
    PacingStats,
    Permit,
    estimate_tokens,
    parse_reset,
    rate_limit_headers,
)


class FakeClock:
    """A clock that only moves when the pacer asks to sleep (or the test says so)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_pacer(clock: FakeClock, **options: object) -> Pacer:
    return Pacer(clock=clock, **options)  # type: ignore[arg-type]


class BucketServer:
    """A token bucket of `per_second` requests with a `burst`; 429 + Retry-After when empty."""

    def __init__(self, per_second: float, burst: float) -> None:
        self.rate = per_second
        self.capacity = burst
        self.level = burst
        self.updated = 0.0
        self.accepted = 0
        self.throttled = 0

    def answer(self, now: float) -> tuple[int, float | None]:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now
        if self.level < 1:
            self.throttled += 1
            return 429, 1.0
        self.level -= 1
        self.accepted += 1
        return 200, None


class Server(Protocol):
    accepted: int
    throttled: int

    def answer(self, now: float) -> tuple[int, float | None]: ...


def hammer(pacer: Pacer, clock: FakeClock, server: Server, seconds: float) -> None:
    """Four workers, 0.2 s round trips, each retrying a 429 after its Retry-After.

    A small discrete-event loop: each worker has its own time, and the pacer's clock is set
    to it whenever that worker acquires or hears back.
    """
    events: list[tuple[float, int, tuple[Permit, float | None] | None, int]] = [
        (i * 0.05, i, None, 0) for i in range(4)
    ]
    while events:
        events.sort(key=lambda event: event[0])
        at, worker, permit, status = events.pop(0)
        if at >= seconds:
            continue
        clock.now = at
        if permit is None:
            waits: list[float] = []
            permit = pacer.acquire(10, waits.append)
            clock.sleeps.extend(waits)
            sent = at + sum(waits)
            status, retry_after = server.answer(sent + 0.1)
            events.append((sent + 0.2, worker, (permit, retry_after), status))
        else:
            permit, retry_after = permit
            pacer.observe(permit, status=status, retry_after=retry_after)
            events.append((at + (retry_after or 0.0), worker, None, 0))


# -- pure helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("0.5s", 0.5),
        ("20ms", 0.02),
        ("1h2m3s", 3723.0),
        ("12", 12.0),
        ("2.5", 2.5),
        (" 7s ", 7.0),
    ],
)
def test_reset_headers_are_read_in_every_format_services_send(value: str, seconds: float) -> None:
    assert parse_reset(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [None, "", "soon", "5x", "1s later", "-3", "nan", "s"])
def test_unreadable_reset_headers_are_ignored(value: str | None) -> None:
    assert parse_reset(value) is None


def test_only_rate_limit_headers_are_kept_never_auth() -> None:
    kept = rate_limit_headers(
        {
            "Authorization": "Bearer ak_secret",
            "X-Api-Key": "ak_secret",
            "Content-Type": "application/json",
            "X-RateLimit-Remaining-Requests": "59",
            "x-ratelimit-reset-tokens": "6m0s",
            "Retry-After": "2",
        }
    )
    assert kept == {
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-tokens": "6m0s",
        "retry-after": "2",
    }


def test_token_estimate_is_on_the_high_side() -> None:
    assert estimate_tokens(["abcdef", "x"]) == (2 + 3) + (0 + 3)


# -- explicit limits ------------------------------------------------------------------------------


def test_unknown_limit_costs_nothing() -> None:
    clock = FakeClock()
    pacer = make_pacer(clock)
    for _ in range(500):
        permit = pacer.acquire(1000, clock.sleep)
        pacer.observe(permit, status=200, tokens=1000)
    assert clock.sleeps == []
    assert pacer.stats == PacingStats()


def test_explicit_requests_per_minute_allows_a_one_second_burst_then_paces_evenly() -> None:
    clock = FakeClock()
    pacer = make_pacer(clock, requests_per_minute=120)
    for _ in range(6):
        pacer.observe(pacer.acquire(5, clock.sleep), status=200)
    assert clock.sleeps == pytest.approx([0.5, 0.5, 0.5, 0.5])
    assert clock.now == pytest.approx(2.0)
    assert pacer.stats.wait_seconds == pytest.approx(2.0)
    assert pacer.stats.learned_requests_per_minute == pytest.approx(120)


def test_share_scales_the_explicit_limit() -> None:
    clock = FakeClock()
    pacer = make_pacer(clock, requests_per_minute=240, share=0.25)  # 1 request a second
    for _ in range(4):
        pacer.observe(pacer.acquire(5, clock.sleep), status=200)
    assert clock.sleeps == pytest.approx([1.0, 1.0, 1.0])


@pytest.mark.parametrize("share", [0, -0.5, 1.5])
def test_share_outside_zero_to_one_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="share must be in"):
        Pacer(share=share)


def test_tokens_are_corrected_by_what_the_service_counted() -> None:
    clock = FakeClock()
    pacer = make_pacer(clock, tokens_per_minute=6000)  # 100 tokens a second, burst 100
    permit = pacer.acquire(10, clock.sleep)
    pacer.observe(permit, status=200, tokens=100)  # it really cost 100: the burst is spent
    pacer.acquire(50, clock.sleep)
    assert clock.sleeps == pytest.approx([0.5])


def test_a_cancelled_wait_gives_its_reservation_back() -> None:
    clock = FakeClock()
    pacer = make_pacer(clock, requests_per_minute=60)
    pacer.acquire(1, clock.sleep)  # the burst of one

    def cancelled(seconds: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pacer.acquire(1, cancelled)
    pacer.acquire(1, clock.sleep)
    assert clock.sleeps == pytest.approx([1.0])  # not 2.0: the cancelled one took nothing


# -- learning from headers ------------------------------------------------------------------------


def headers(limit: int, remaining: int, reset: str) -> dict[str, str]:
    return {
        "x-ratelimit-limit-requests": str(limit),
        "x-ratelimit-remaining-requests": str(remaining),
        "x-ratelimit-reset-requests": reset,
    }


def test_headers_teach_the_limit_before_any_429() -> None:
    clock = FakeClock()
    pacer = make_pacer(clock)
    permit = pacer.acquire(5, clock.sleep)
    pacer.observe(permit, status=200, headers=headers(600, 599, "100ms"))
    assert pacer.stats.learned_requests_per_minute == pytest.approx(600)
    assert pacer.stats.throttled_responses == 0


def test_headers_of_a_faster_window_are_read_as_a_rate() -> None:
    clock = FakeClock()
    pacer = make_pacer(clock)
    # 20 used, full again in 1 s: the service refills 19.5..20 a second, whatever its "minute".
    pacer.observe(pacer.acquire(5, clock.sleep), status=200, headers=headers(100, 80, "1s"))
    assert pacer.stats.learned_requests_per_minute == pytest.approx(19.5 * 60)


def test_share_scales_a_limit_read_from_headers() -> None:
    clock = FakeClock()
    pacer = make_pacer(clock, share=0.5)
    pacer.observe(pacer.acquire(5, clock.sleep), status=200, headers=headers(600, 599, "0.1s"))
    assert pacer.stats.learned_requests_per_minute == pytest.approx(300)


def test_explicit_limit_wins_over_a_higher_limit_in_headers() -> None:
    clock = FakeClock()
    pacer = make_pacer(clock, requests_per_minute=60)
    pacer.observe(pacer.acquire(5, clock.sleep), status=200, headers=headers(6000, 5999, "10ms"))
    assert pacer.stats.learned_requests_per_minute == pytest.approx(60)


def test_no_remaining_budget_makes_the_next_request_wait() -> None:
    clock = FakeClock()
    pacer = make_pacer(clock)
    pacer.observe(pacer.acquire(5, clock.sleep), status=200, headers=headers(60, 0, "60s"))
    pacer.acquire(5, clock.sleep)
    assert clock.sleeps == pytest.approx([1.0])  # one request's worth at 60 a minute


def test_paced_by_headers_a_job_gets_no_429() -> None:
    clock = FakeClock()
    pacer = make_pacer(clock)
    server = BucketServer(per_second=5, burst=5)
    for _ in range(300):
        permit = pacer.acquire(5, clock.sleep)
        status, _ = server.answer(clock.now)
        remaining = int(server.level)
        reset = (server.capacity - server.level) / server.rate
        pacer.observe(permit, status=status, headers=headers(5, remaining, f"{reset:.3f}s"))
    assert server.throttled == 0
    assert 300 / clock.now >= 0.9 * 5


# -- learning from 429s alone ---------------------------------------------------------------------


def test_without_headers_the_limit_is_learned_from_429s() -> None:
    clock = FakeClock()
    pacer = make_pacer(clock)
    server = BucketServer(per_second=10, burst=10)  # four workers could send 20 a second

    hammer(pacer, clock, server, seconds=120)

    sent = server.accepted + server.throttled
    assert server.accepted / (server.rate * 120) >= 0.9
    assert server.throttled / sent <= 0.05
    learned = pacer.stats.learned_requests_per_minute
    assert learned is not None and 0.8 * 600 <= learned <= 1.1 * 600
    assert pacer.stats.throttled_responses == server.throttled


def test_a_single_sporadic_429_does_not_slow_an_unlimited_job() -> None:
    clock = FakeClock()
    pacer = make_pacer(clock)
    for _ in range(100):
        pacer.observe(pacer.acquire(5, clock.sleep), status=200)
        clock.now += 0.05
    pacer.observe(pacer.acquire(5, clock.sleep), status=429, retry_after=1.0)
    for _ in range(100):
        pacer.observe(pacer.acquire(5, clock.sleep), status=200)
        clock.now += 0.05
    assert clock.sleeps == []
    assert pacer.stats.learned_requests_per_minute is None
    assert pacer.stats.throttled_responses == 1


def test_a_lone_429_after_a_limit_was_learned_lowers_the_pace_by_at_most_eight_percent() -> None:
    clock = FakeClock()
    pacer = make_pacer(clock)
    server = BucketServer(per_second=10, burst=10)
    hammer(pacer, clock, server, seconds=60)
    before = pacer.stats.learned_requests_per_minute
    assert before is not None

    for _ in range(50):  # well-paced answers, then one 429 out of the blue
        pacer.observe(pacer.acquire(5, clock.sleep), status=200)
    pacer.observe(pacer.acquire(5, clock.sleep), status=429, retry_after=1.0)

    after = pacer.stats.learned_requests_per_minute
    assert after is not None and after >= 0.92 * before * 0.999


def test_429s_to_requests_sent_before_a_decrease_do_not_lower_it_again() -> None:
    clock = FakeClock()
    pacer = make_pacer(clock)

    def accepted(count: int) -> None:
        for _ in range(count):
            pacer.observe(pacer.acquire(5, clock.sleep), status=200)
            clock.now += 0.1  # ten a second accepted

    accepted(20)
    pacer.observe(pacer.acquire(5, clock.sleep), status=429, retry_after=1.0)  # lone: ignored
    assert pacer.stats.learned_requests_per_minute is None
    accepted(5)
    in_flight = [pacer.acquire(5, clock.sleep) for _ in range(4)]
    in_flight.append(pacer.acquire(5, clock.sleep))
    pacer.observe(in_flight.pop(), status=429, retry_after=1.0)  # a second one: a limit
    lowered = pacer.stats.learned_requests_per_minute
    assert lowered is not None and lowered == pytest.approx(0.9 * 600, rel=0.05)
    for permit in in_flight:
        pacer.observe(permit, status=429, retry_after=1.0)
    assert pacer.stats.learned_requests_per_minute == lowered
    assert pacer.stats.throttled_responses == 6


def test_adaptive_off_learns_nothing() -> None:
    clock = FakeClock()
    pacer = make_pacer(clock, adaptive=False)
    server = BucketServer(per_second=10, burst=10)
    hammer(pacer, clock, server, seconds=10)
    pacer.observe(pacer.acquire(5, clock.sleep), status=200, headers=headers(60, 0, "1s"))
    assert pacer.stats.learned_requests_per_minute is None
    assert clock.sleeps == []


def test_an_answer_that_never_came_frees_its_permit_without_learning() -> None:
    clock = FakeClock()
    pacer = make_pacer(clock)
    permit = pacer.acquire(5, clock.sleep)
    pacer.observe(permit, status=None)
    pacer.observe(permit, status=429)  # observing twice is a no-op
    assert pacer.stats == PacingStats()
    assert isinstance(permit, Permit) and not permit.open


# -- a learned limit is a hypothesis: re-tested, and forgotten once 429s stop -------------------


class StormServer:
    """429 with Retry-After: 1 to everything until `until`, then accepts everything."""

    def __init__(self, until: float) -> None:
        self.until = until
        self.accepted = 0
        self.throttled = 0
        self.accepted_at: list[float] = []

    def answer(self, now: float) -> tuple[int, float | None]:
        if now < self.until:
            self.throttled += 1
            return 429, 1.0
        self.accepted += 1
        self.accepted_at.append(now)
        return 200, None


def accepted_between(server: StormServer, start: float, end: float) -> int:
    return sum(1 for at in server.accepted_at if start <= at < end)


# Four workers with 0.2 s round trips and nothing to slow them: 20 answers a second.
UNTHROTTLED = 20.0


def test_a_short_429_storm_does_not_slow_the_client_once_it_is_over() -> None:
    clock = FakeClock()
    pacer = make_pacer(clock)
    server = StormServer(until=2.0)

    hammer(pacer, clock, server, seconds=40)

    assert server.throttled >= 8  # the storm taught the pacer a (guessed) limit
    # Within 10 clock seconds (and a bounded number of answers) of the storm's end the
    # client is back to at least 80% of its unthrottled rate, and stays there.
    for start in (12.0, 20.0, 30.0):
        assert accepted_between(server, start, start + 5) >= 0.8 * UNTHROTTLED * 5
    assert accepted_between(server, 0.0, 12.0) <= 200


class LiftedLimitServer(BucketServer):
    """A real limit of 10 a second that is lifted at `lifted`."""

    def __init__(self, lifted: float) -> None:
        super().__init__(per_second=10, burst=10)
        self.lifted = lifted
        self.accepted_at: list[float] = []

    def answer(self, now: float) -> tuple[int, float | None]:
        if now >= self.lifted:
            self.accepted += 1
            self.accepted_at.append(now)
            return 200, None
        return super().answer(now)


def test_a_measured_limit_that_is_lifted_is_forgotten_after_a_bounded_time() -> None:
    clock = FakeClock()
    pacer = make_pacer(clock)
    server = LiftedLimitServer(lifted=60.0)

    hammer(pacer, clock, server, seconds=150)

    learned = pacer.stats.learned_requests_per_minute
    assert learned is None or learned >= 0.8 * UNTHROTTLED * 60
    # The limit was real and learned: about 10 a second until it was lifted...
    assert server.accepted - len(server.accepted_at) <= 1.05 * 10 * 60
    # ...then re-tested: from 10 clock seconds after the lift, at least 80% of the
    # unthrottled rate (main took 40 s: it probed above a learned ceiling at 0.1% an answer).
    for start in (70.0, 100.0, 140.0):
        assert sum(1 for at in server.accepted_at if start <= at < start + 10) >= 0.8 * 200


class SporadicServer:
    """No limit, but a random `share` of answers is a 429 with Retry-After: 0."""

    def __init__(self, share: float) -> None:
        self.share = share
        self.random = random.Random(7)
        self.accepted = 0
        self.throttled = 0

    def answer(self, now: float) -> tuple[int, float | None]:
        if self.random.random() < self.share:
            self.throttled += 1
            return 429, 0.0
        self.accepted += 1
        return 200, None


def test_three_percent_random_429s_keep_at_least_85_percent_of_the_throughput() -> None:
    clean, faulty = SporadicServer(0.0), SporadicServer(0.03)
    for server in (clean, faulty):
        clock = FakeClock()
        hammer(make_pacer(clock), clock, server, seconds=600)

    assert faulty.throttled >= 0.02 * (faulty.accepted + faulty.throttled)
    assert faulty.accepted >= 0.85 * clean.accepted
