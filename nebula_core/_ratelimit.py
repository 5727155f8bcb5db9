"""Client-side pacing so a job stays inside its account's requests- and tokens-per-minute.

A token bucket per limit: a request waits until the bucket holds its cost, then takes it. A
request costing more than the bucket can ever hold waits for a full bucket and takes the bucket
into debt, which delays the next ones, instead of waiting forever.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

__all__ = ["Pacer", "estimate_tokens"]


def estimate_tokens(texts: Sequence[str]) -> int:
    """A deliberately high guess of the tokens a batch will cost, before the service counts it.

    English averages about four characters a token; we assume three and add the two special
    tokens most encoders wrap around each input, so pacing errs on the side of fewer 429s.
    """
    return sum(len(text) // 3 + 3 for text in texts)


class _Bucket:
    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60.0
        # One second of budget as burst: smooth pacing rather than a minute's worth at once.
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self.updated = time.monotonic()

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait_needed(self, cost: float) -> float:
        need = min(cost, self.capacity)
        return max(0.0, (need - self.level) / self.rate)


class Pacer:
    """Shared by every thread and coroutine of one client; `None` limits cost nothing."""

    def __init__(self, requests_per_minute: float | None, tokens_per_minute: float | None) -> None:
        self._lock = threading.Lock()
        self._requests = _Bucket(requests_per_minute) if requests_per_minute else None
        self._tokens = _Bucket(tokens_per_minute) if tokens_per_minute else None

    @property
    def active(self) -> bool:
        return self._requests is not None or self._tokens is not None

    def acquire(self, tokens: int, sleep: Callable[[float], None]) -> None:
        """Block (through `sleep`, which may raise to cancel) until one request may go."""
        if not self.active:
            return
        while True:
            with self._lock:
                now = time.monotonic()
                costs = [(self._requests, 1), (self._tokens, tokens)]
                delay = 0.0
                for bucket, cost in costs:
                    if bucket is not None:
                        bucket.refill(now)
                        delay = max(delay, bucket.wait_needed(cost))
                if delay <= 0:
                    if self._requests is not None:
                        self._requests.level -= 1
                    if self._tokens is not None:
                        self._tokens.level -= tokens
                    return
            sleep(delay)

    def settle(self, estimated_tokens: int, actual_tokens: int) -> None:
        """Correct the token bucket once the service has said what the request really cost."""
        if self._tokens is None or actual_tokens <= 0:
            return
        with self._lock:
            self._tokens.level -= actual_tokens - estimated_tokens
