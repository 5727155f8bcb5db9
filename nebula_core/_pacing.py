"""Adaptive pacing: one shared pacer per client that keeps requests inside the account's limits.

Each limit (requests, tokens) is a token bucket whose rate comes from, in order of trust:

1. an explicit `requests_per_minute` / `tokens_per_minute` (a hard cap: never exceeded);
2. the service's `x-ratelimit-limit-*` / `-remaining-*` / `-reset-*` headers, when it sends them;
3. otherwise the 429s themselves: when 429s cluster (3 of the last 20 answers), pace a little
   under the rate the service was accepting; climb back quickly to that ceiling, then probe
   above it, slowly at first and ever faster while no 429 comes. A learned ceiling is only a
   hypothesis: once 429s stop (a storm that ended, a limit that was lifted) the pace is back
   to unthrottled within a few hundred answers, and sporadic 429s (transient faults, not a
   limit) cost little.

Until something is known the pacer does not slow anything down. All the policy is pure logic
over an injectable clock, so tests drive it without sleeping.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "Pacer",
    "PacingStats",
    "Permit",
    "estimate_tokens",
    "parse_reset",
    "rate_limit_headers",
]

# One second of budget as burst: smooth pacing rather than a minute's worth at once.
BURST_SECONDS = 1.0
# After a 429 without headers: pace at this fraction of the rate the service was accepting.
DECREASE = 0.9
# Per accepted request: climb this fast back to cruising just under the ceiling, then probe
# this slowly above it (a limit that was raised is found again).
CRUISE = 0.92
FAST_CLIMB = 0.03
SLOW_PROBE = 0.001
# A learned ceiling is a hypothesis, re-tested ever harder while no limit is confirmed: past
# PROBE_HOLD accepted answers since the last confirmed limit, the step doubles every
# PROBE_DOUBLING answers (up to MAX_STEP), so a limit that is gone (a 429 storm that ended, a
# false alarm) stops slowing the client within a few hundred answers, while a real limit is
# re-tested rarely enough to keep 429s under 5%. A pace only guessed from Retry-After, never
# measured, climbs from GUESS_STEP, doubled every GUESS_DOUBLING answers.
PROBE_HOLD = 200
PROBE_DOUBLING = 20.0
GUESS_STEP = 0.1
GUESS_DOUBLING = 4.0
MAX_STEP = 0.5
LONE_SETBACK = 100
# How much one throttling episode moves the ceiling (the rest is its history).
CEILING_WEIGHT = 0.5
# A ceiling (or a guessed pace, the rate accepted at it) exceeded this many times over without
# another 429 was not a limit: forget it.
FORGET_ABOVE = 3.0
# A 429 is taken for a limit only when at least CONFIRM_COUNT of the last CONFIRM_WINDOW
# answers were 429s: sporadic faults (a few percent of answers) rarely cluster like that,
# and the occasional false alarm is climbed back from quickly.
CONFIRM_WINDOW = 20
CONFIRM_COUNT = 3
# Before any limit is learned, two 429s within this many answers are enough: a client that
# hammers a slow tier must learn its limit fast, and a false alarm is climbed back from.
FIRST_CONFIRM_WINDOW = 10
# The accepted rate is measured over the last answers within this many seconds.
WINDOW_ANSWERS = 256
WINDOW_SECONDS = 20.0
MIN_SAMPLES = 4

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|h|m|s)")


def estimate_tokens(texts: Sequence[str]) -> int:
    """A deliberately high guess of the tokens a batch will cost, before the service counts it.

    English averages about four characters a token; we assume three and add the two special
    tokens most encoders wrap around each input, so pacing errs on the side of fewer 429s.
    """
    return sum(len(text) // 3 + 3 for text in texts)


def rate_limit_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Only the headers pacing reads (`x-ratelimit-*`, `retry-after`), lower-cased.

    A plain dict that can ride on an exception: it never holds auth or any other header.
    """
    kept: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith("x-ratelimit-") or lower == "retry-after":
            kept[lower] = value
    return kept


def parse_reset(value: str | None) -> float | None:
    """Seconds from an `x-ratelimit-reset-*` value: "1s", "6m0s", "0.5s", "20ms", "1h2m" or "12".

    None when absent or unreadable, so a strange header is ignored rather than trusted.
    """
    if value is None:
        return None
    text = value.strip().lower()
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
        position = 0
        for match in _DURATION_PART.finditer(text):
            if match.start() != position:
                return None
            number, unit = float(match.group(1)), match.group(2)
            seconds += number * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]
            position = match.end()
        if position == 0 or position != len(text):
            return None
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        return None
    return seconds


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


@dataclass(frozen=True)
class PacingStats:
    """What pacing has seen and done; learned rates are this process's pace, per minute."""

    throttled_responses: int = 0
    wait_seconds: float = 0.0
    learned_requests_per_minute: float | None = None
    learned_tokens_per_minute: float | None = None


@dataclass
class Permit:
    """One request's admission: hand it back to `observe` with the answer."""

    tokens: int
    epoch: int
    open: bool = True


class _Limit:
    """One dimension (requests or tokens): its cap, what was learned, and its bucket."""

    def __init__(self, name: str, explicit: float | None, share: float, adaptive: bool) -> None:
        self.name = name
        self.cap = None if explicit is None else explicit * share / 60.0
        self.share = share
        self.adaptive = adaptive
        self.header_rate: float | None = None  # the whole tier's rate, per second
        self.bounds_for: float | None = None  # the header limit the bounds below belong to
        self.low_bound = 0.0
        self.high_bound = math.inf
        self.aimd_rate: float | None = None  # this process's rate, per second
        self.ceiling: float | None = None
        self.accepted: deque[tuple[float, float]] = deque(maxlen=WINDOW_ANSWERS)
        self.first_429: float | None = None
        # A ceiling guessed from Retry-After alone, to be replaced by a measured one.
        self.provisional = False
        # Accepted answers since the last 429 (of any kind): how hard to probe the ceiling.
        self.quiet = 0
        self.level = 0.0
        self.updated: float | None = None
        self.in_flight = 0.0

    def rate(self) -> float | None:
        shared_header = None if self.header_rate is None else self.header_rate * self.share
        known = [r for r in (self.cap, shared_header, self.aimd_rate) if r is not None]
        return min(known) if known else None

    def capacity(self, rate: float) -> float:
        return max(1.0, rate * BURST_SECONDS)

    def refill(self, now: float) -> float | None:
        rate = self.rate()
        if rate is None:
            self.updated = None
            return None
        if self.updated is None:
            # Explicit caps start with a full burst; a learned limit starts empty, because it
            # was learned from a service that is at its limit right now.
            self.level = self.capacity(rate) if rate == self.cap else 0.0
        else:
            self.level = min(self.capacity(rate), self.level + (now - self.updated) * rate)
        self.updated = now
        return rate

    def delay(self, cost: float, rate: float) -> float:
        need = min(cost, self.capacity(rate))
        return max(0.0, (need - self.level) / rate)

    def measured_rate(self, now: float) -> float | None:
        # Before any rate is known, count only answers since the first 429: those before it
        # were the service's burst allowance, not its rate.
        since = now - WINDOW_SECONDS
        if self.ceiling is None and self.first_429 is not None:
            since = max(since, self.first_429)
        recent = [(t, a) for t, a in self.accepted if t >= since]
        if len(recent) < MIN_SAMPLES:
            return None
        span = recent[-1][0] - recent[0][0]
        if span <= 0:
            return None
        return sum(a for _, a in recent[1:]) / span

    def learn_headers(
        self,
        limit: float | None,
        remaining: float | None,
        reset: float | None,
        now: float,
        others_in_flight: float,
    ) -> None:
        if limit is None or limit <= 0:
            return
        # A bucket refilled continuously is full again `reset` seconds after holding
        # `remaining`; a fixed window still allows `limit` a minute on average.
        estimate = limit / 60.0
        if remaining is not None and reset is not None and reset > 0 and limit > remaining:
            # `remaining` is rounded down and `reset` exact, so each answer bounds the rate
            # between (limit - remaining - 1) / reset and (limit - remaining) / reset. Pace in
            # the middle of what every answer since agrees on (the remaining count below keeps
            # a guess on the high side from costing 429s).
            low = max(0.0, limit - remaining - 1.0) / reset
            high = (limit - remaining) / reset
            if self.bounds_for != limit or low > self.high_bound or high < self.low_bound:
                self.bounds_for, self.low_bound, self.high_bound = limit, low, high
            else:
                self.low_bound = max(self.low_bound, low)
                self.high_bound = min(self.high_bound, high)
            estimate = max(estimate, (self.low_bound + self.high_bound) / 2)
        elif self.header_rate is not None:
            estimate = self.header_rate
        running = self.refill(now) is not None
        self.header_rate = estimate
        self.aimd_rate = None
        self.ceiling = None
        rate = self.refill(now)
        if rate is None or remaining is None:
            return
        # The service's count is the truth for every process sharing the key.
        allowed = remaining * self.share - others_in_flight
        if not running:
            self.level = min(self.capacity(rate), allowed)
        else:
            self.level = min(self.level, allowed)

    def on_accepted(self, now: float, amount: float) -> None:
        self.accepted.append((now, amount))
        if self.aimd_rate is None or self.ceiling is None:
            return
        self.refill(now)
        if self.provisional:
            # Only a guess from Retry-After, never measured: find the real pace fast.
            step = GUESS_STEP * 2.0 ** (self.quiet / GUESS_DOUBLING)
        else:
            step = FAST_CLIMB if self.aimd_rate < CRUISE * self.ceiling else SLOW_PROBE
            step *= 2.0 ** (max(0, self.quiet - PROBE_HOLD) / PROBE_DOUBLING)
        self.aimd_rate *= 1.0 + min(MAX_STEP, step)
        self.quiet += 1
        if self.provisional:
            self.ceiling = max(self.ceiling, self.aimd_rate)
        measured = self.measured_rate(now) if self.provisional else None
        if self.aimd_rate > FORGET_ABOVE * (self.ceiling if measured is None else measured):
            self.aimd_rate = self.ceiling = self.first_429 = None
            self.provisional = False

    def on_lone_429(self, now: float) -> None:
        """A 429 not (yet) confirmed as a limit: the limit is about where we are probing now.

        The ceiling may rise here (probing found more room) but never falls: a lone 429 may
        be a transient fault, and lowering on each would ratchet the pace down for good.
        """
        if self.aimd_rate is None and self.first_429 is None:
            self.first_429 = now
        if self.aimd_rate is None or self.ceiling is None:
            return
        self.refill(now)
        measured = self.measured_rate(now)
        if self.provisional and measured is not None:
            # The guessed pace climbed past the limit: now there is a measurement to go by.
            self.ceiling = min(self.ceiling, measured)
            self.aimd_rate = min(self.aimd_rate, DECREASE * self.ceiling)
        # A probe that overshot found the limit somewhere between the ceiling and the probed
        # pace (which may be far above after a long quiet spell): split the difference.
        if self.aimd_rate > self.ceiling:
            # The re-test above the ceiling met a 429: hold off probing hard for a while.
            self.quiet = min(self.quiet, max(PROBE_HOLD // 2, self.quiet - LONE_SETBACK))
            self.ceiling = math.sqrt(self.ceiling * self.aimd_rate)
            self.aimd_rate = CRUISE * self.ceiling
        # Below the ceiling the service has accepted this pace before: a lone 429 there is a
        # transient fault (a limit that dropped repeats itself and gets confirmed).
        self.provisional = False
        self.level = min(self.level, 0.0)

    def on_throttled(self, now: float, retry_after: float | None) -> bool:
        """Lower the pace under the rate just accepted; False when nothing could be learned."""
        self.quiet = 0
        if self.header_rate is not None or not self.adaptive:
            return False
        if self.aimd_rate is None and self.first_429 is None:
            self.first_429 = now
        measured = self.measured_rate(now)
        guessed = False
        if measured is None and self.aimd_rate is None and self.name == "requests":
            # Still too few answers to measure after the pause the service asked for (a slow
            # tier, hammered at first contact): a service that asks for a pause of s seconds
            # allows about one request per s. Only a guess: climb fast from it until a 429
            # allows a measurement.
            waited = now - (self.first_429 if self.first_429 is not None else now)
            if retry_after is not None and retry_after > 0 and waited >= retry_after:
                measured, guessed = 1.0 / retry_after, True
        if measured is None:
            if self.aimd_rate is None:
                return False
            # Nothing accepted to measure (a storm of 429s): the pace is still a guess.
            guessed = self.provisional
            measured = self.aimd_rate
        self.refill(now)
        current = self.aimd_rate if self.aimd_rate is not None else measured
        observed = min(measured, current)
        if self.ceiling is None:
            self.ceiling = observed
        else:
            self.ceiling = CEILING_WEIGHT * observed + (1 - CEILING_WEIGHT) * self.ceiling
        self.aimd_rate = DECREASE * min(observed, self.ceiling)
        self.provisional = guessed
        self.refill(now)
        self.level = min(self.level, 0.0)
        return True


class Pacer:
    """Shared by every thread and coroutine of one client (rebuilt after fork or unpickling).

    `share` (0 < share <= 1) is this process's part of the account's limits: explicit limits
    and limits read from headers are scaled by it. Limits learned from 429s alone are already
    this process's own (it measured what the service accepted from it) and are not scaled.
    """

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        *,
        share: float = 1.0,
        adaptive: bool = True,
        max_pause: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share!r}.")
        self._lock = threading.Lock()
        self._clock = clock
        self._max_pause = max_pause
        self._requests = _Limit("requests", requests_per_minute, share, adaptive)
        self._tokens = _Limit("tokens", tokens_per_minute, share, adaptive)
        self._adaptive = adaptive
        self._epoch = 0
        self._recent_429s: deque[bool] = deque(maxlen=CONFIRM_WINDOW)
        self._throttled = 0
        self._waited = 0.0

    @property
    def stats(self) -> PacingStats:
        with self._lock:
            requests, tokens = self._requests.rate(), self._tokens.rate()
            return PacingStats(
                throttled_responses=self._throttled,
                wait_seconds=self._waited,
                learned_requests_per_minute=None if requests is None else requests * 60.0,
                learned_tokens_per_minute=None if tokens is None else tokens * 60.0,
            )

    def acquire(self, tokens: int, sleep: Callable[[float], None]) -> Permit:
        """Reserve one request costing `tokens`, waiting (through `sleep`) for its turn.

        The cost is taken at once and the wait computed from the debt, so concurrent callers
        queue in order instead of all waking together. If `sleep` raises (the call was
        cancelled or ran out of time) the reservation is refunded.
        """
        with self._lock:
            now = self._clock()
            delay = 0.0
            for limit, cost in ((self._requests, 1.0), (self._tokens, float(tokens))):
                rate = limit.refill(now)
                if rate is not None:
                    delay = max(delay, limit.delay(cost, rate))
            for limit, cost in ((self._requests, 1.0), (self._tokens, float(tokens))):
                if limit.updated is not None:
                    limit.level -= cost
                limit.in_flight += cost
            delay = min(delay, self._max_pause)
            self._waited += delay
            permit = Permit(tokens=tokens, epoch=self._epoch)
        if delay > 0:
            try:
                sleep(delay)
            except BaseException:
                with self._lock:
                    for limit, cost in ((self._requests, 1.0), (self._tokens, float(tokens))):
                        if limit.updated is not None:
                            limit.level += cost
                    self._close(permit)
                raise
        return permit

    def settle(self, permit: Permit, actual_tokens: int) -> None:
        """Correct the token bucket once the service has said what the request really cost."""
        if actual_tokens <= 0:
            return
        with self._lock:
            if self._tokens.updated is not None:
                self._tokens.level -= actual_tokens - permit.tokens

    def observe(
        self,
        permit: Permit,
        *,
        status: int | None,
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
        tokens: int | None = None,
    ) -> None:
        """Learn from the answer to `permit` (call after every attempt; `status=None`: none came).

        `retry_after` only seeds a first guess of the rate when too few answers came to
        measure one: the retry loop already waits it out for the throttled request, and other
        requests are paced by the lowered rate instead of a global stop, which would waste
        most of a second's budget on every 429.
        """
        if tokens is not None:
            self.settle(permit, tokens)
        with self._lock:
            if not permit.open:
                return
            self._close(permit)
            if status is None:
                return
            now = self._clock()
            if headers:
                self._learn_headers(headers, now)
            if status == 429:
                self._throttled += 1
                self._recent_429s.append(True)
                if self._adaptive:
                    self._on_429(permit, now, retry_after, sum(self._recent_429s))
                return
            self._recent_429s.append(False)
            if status < 500:
                self._requests.on_accepted(now, 1.0)
                self._tokens.on_accepted(now, float(tokens if tokens else permit.tokens))

    def _on_429(self, permit: Permit, now: float, retry_after: float | None, recent: int) -> None:
        limits = (self._requests, self._tokens)
        if permit.epoch != self._epoch:
            # Sent before the pace was last lowered: says nothing new about the limit.
            for limit in limits:
                limit.level = min(limit.level, 0.0)
            return
        learned = any(limit.ceiling is not None and not limit.provisional for limit in limits)
        window = list(self._recent_429s)[-FIRST_CONFIRM_WINDOW:]
        if recent >= CONFIRM_COUNT or (not learned and sum(window) >= 2):
            if any([limit.on_throttled(now, retry_after) for limit in limits]):
                # 429s to requests sent before this decrease say nothing new.
                self._epoch += 1
            return
        for limit in limits:
            limit.on_lone_429(now)

    def _close(self, permit: Permit) -> None:
        if permit.open:
            permit.open = False
            self._requests.in_flight -= 1.0
            self._tokens.in_flight -= permit.tokens

    def _learn_headers(self, headers: Mapping[str, str], now: float) -> None:
        if not self._adaptive:
            return
        lower = {k.lower(): v for k, v in headers.items()}
        for limit in (self._requests, self._tokens):
            suffix = limit.name
            limit.learn_headers(
                _number(lower.get(f"x-ratelimit-limit-{suffix}")),
                _number(lower.get(f"x-ratelimit-remaining-{suffix}")),
                parse_reset(lower.get(f"x-ratelimit-reset-{suffix}")),
                now,
                others_in_flight=max(0.0, limit.in_flight),
            )
