"""Per-key rate limits, as a tiered API enforces them: requests and tokens per minute.

Two algorithms: `"bucket"` (a token bucket per limit that refills continuously, holding at most
one minute's allowance) and `"window"` (a sliding window: at most the limit within any 60
seconds). `time_scale` compresses the clock, e.g. 60 makes an emulated minute last one second,
so a benchmark can spend several "minutes" of a tier in a few seconds.

Pure bookkeeping on an injectable clock: the emulator decides what to answer.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["Admission", "RateLimitAlgorithm", "RateLimiter", "format_duration"]

RateLimitAlgorithm = Literal["bucket", "window"]
_MINUTE = 60.0


@dataclass(frozen=True)
class Admission:
    """The verdict on one request, and the `x-ratelimit-*` state after it (wall seconds)."""

    allowed: bool
    retry_after: float  # 0 when allowed
    limit_requests: int | None
    limit_tokens: int | None
    remaining_requests: int | None
    remaining_tokens: int | None
    reset_requests: float
    reset_tokens: float
    exceeded: Literal["requests", "tokens", ""]


class _Limit:
    """One limit (requests or tokens per minute) of one key, in emulated seconds."""

    def __init__(self, per_minute: int, algorithm: RateLimitAlgorithm, now: float) -> None:
        self.per_minute = per_minute
        self.algorithm = algorithm
        self.level = float(per_minute)  # bucket: allowance left
        self.updated = now
        self.log: deque[tuple[float, int]] = deque()  # window: (when, cost) of admitted requests
        self.used = 0

    def _advance(self, now: float) -> None:
        if self.algorithm == "bucket":
            rate = self.per_minute / _MINUTE
            self.level = min(float(self.per_minute), self.level + (now - self.updated) * rate)
            self.updated = now
        else:
            while self.log and self.log[0][0] <= now - _MINUTE:
                self.used -= self.log.popleft()[1]

    def wait_for(self, cost: int, now: float) -> float:
        """Emulated seconds until `cost` fits; a cost above the limit fits a fresh limit."""
        self._advance(now)
        need = min(cost, self.per_minute)
        if self.algorithm == "bucket":
            missing = need - self.level
            return max(0.0, missing * _MINUTE / self.per_minute)
        excess = self.used + need - self.per_minute
        for when, spent in self.log:
            if excess <= 0:
                break
            excess -= spent
            if excess <= 0:
                return when + _MINUTE - now
        return 0.0

    def take(self, cost: int, now: float) -> None:
        if self.algorithm == "bucket":
            self.level -= cost  # may go below zero: one huge request is a debt to repay
        else:
            self.log.append((now, cost))
            self.used += cost

    def remaining(self) -> int:
        if self.algorithm == "bucket":
            return max(0, math.floor(self.level))
        return max(0, self.per_minute - self.used)

    def reset_in(self, now: float) -> float:
        """Emulated seconds until the limit is back to its full allowance."""
        if self.algorithm == "bucket":
            return max(0.0, (self.per_minute - self.level) * _MINUTE / self.per_minute)
        return max(0.0, self.log[-1][0] + _MINUTE - now) if self.log else 0.0


class RateLimiter:
    """Requests-per-minute and tokens-per-minute limits, kept separately for each API key."""

    def __init__(
        self,
        *,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        algorithm: RateLimitAlgorithm = "bucket",
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (
            ("requests_per_minute", requests_per_minute),
            ("tokens_per_minute", tokens_per_minute),
        ):
            if value is not None and not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be None or an int >= 1, got {value!r}")
        if algorithm not in ("bucket", "window"):
            raise ValueError(
                f'rate_limit_algorithm must be "bucket" or "window", got {algorithm!r}'
            )
        if not (isinstance(time_scale, (int, float)) and time_scale > 0):
            raise ValueError(f"rate_limit_time_scale must be > 0, got {time_scale!r}")
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.algorithm: RateLimitAlgorithm = algorithm
        self.time_scale = float(time_scale)
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[_Limit | None, _Limit | None]] = {}

    @property
    def active(self) -> bool:
        return self.requests_per_minute is not None or self.tokens_per_minute is not None

    def reset(self) -> None:
        """Give every key its full allowance again."""
        with self._lock:
            self._keys.clear()

    def admit(self, key: str, tokens: int, *, count: bool = True) -> Admission:
        """Count one request of `tokens` for `key` if it fits, else say how long to wait.

        `count=False` only reports the state (for the headers of an answer that was not
        computed, such as a 400).
        """
        with self._lock:
            now = self._clock() * self.time_scale  # emulated seconds
            limits = self._keys.get(key)
            if limits is None:
                limits = (
                    _Limit(self.requests_per_minute, self.algorithm, now)
                    if self.requests_per_minute
                    else None,
                    _Limit(self.tokens_per_minute, self.algorithm, now)
                    if self.tokens_per_minute
                    else None,
                )
                self._keys[key] = limits
            requests, token_limit = limits
            wait_requests = requests.wait_for(1, now) if requests else 0.0
            wait_tokens = token_limit.wait_for(tokens, now) if token_limit else 0.0
            allowed = wait_requests == 0.0 and wait_tokens == 0.0
            if allowed and count:
                if requests:
                    requests.take(1, now)
                if token_limit:
                    token_limit.take(tokens, now)
            exceeded: Literal["requests", "tokens", ""] = ""
            if not allowed:
                exceeded = "requests" if wait_requests >= wait_tokens else "tokens"
            scale = self.time_scale
            return Admission(
                allowed=allowed,
                retry_after=max(wait_requests, wait_tokens) / scale,
                limit_requests=self.requests_per_minute,
                limit_tokens=self.tokens_per_minute,
                remaining_requests=requests.remaining() if requests else None,
                remaining_tokens=token_limit.remaining() if token_limit else None,
                reset_requests=requests.reset_in(now) / scale if requests else 0.0,
                reset_tokens=token_limit.reset_in(now) / scale if token_limit else 0.0,
                exceeded=exceeded,
            )


def format_duration(seconds: float) -> str:
    """OpenAI's `x-ratelimit-reset-*` style: "17ms", "1s", "2.5s", "6m0s", "1h2m3s"."""
    if seconds < 1.0:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    whole_minutes, rest = divmod(seconds, 60.0)
    hours, minutes = divmod(int(whole_minutes), 60)
    rest_text = f"{round(rest, 3):g}s"
    if hours:
        return f"{hours}h{minutes}m{rest_text}"
    if minutes:
        return f"{minutes}m{rest_text}"
    return rest_text
