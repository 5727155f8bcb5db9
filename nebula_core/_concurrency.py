"""How many requests to keep in flight: learned from latency and 429s, not configured.

A GPU service computes a few requests at once and queues the rest; past that point more
requests in flight only add queueing delay (and, near a rate limit, 429s). `AdaptiveConcurrency`
watches the latency per input of each answer against the best it has seen:

- while it stays near that floor and the current limit is actually used, grow by one;
- when it rises well above the floor (requests are queueing), shrink gently;
- on a 429, shrink multiplicatively (the pacer lowers the rate at the same time).

It is pure policy over the samples it is given; the scheduler owns the slots and asks it for
the new limit after each answer (`limit = policy.on_sample(...)`, then `set_limit(limit)`).
"""

from __future__ import annotations

import math
import threading

__all__ = ["AdaptiveConcurrency"]

# Latency per input within this factor of the floor counts as "not queueing".
TOLERANCE = 1.3
# Above this factor of the floor, requests are clearly queueing: shrink.
QUEUEING = 1.5
SHRINK_ON_QUEUEING = 0.9
SHRINK_ON_THROTTLING = 0.7
# The floor drifts up this much per sample, so a server that became slower is re-learned.
FLOOR_DRIFT = 1.002
# Weight of the newest sample in the smoothed latency.
SMOOTHING = 0.3


class AdaptiveConcurrency:
    """The in-flight limit for one client, between 1 and `maximum` (thread-safe)."""

    def __init__(self, maximum: int, initial: int | None = None) -> None:
        if maximum < 1:
            raise ValueError(f"maximum must be >= 1, got {maximum!r}.")
        start = maximum if initial is None else initial
        if not 1 <= start <= maximum:
            raise ValueError(f"initial must be in [1, {maximum}], got {initial!r}.")
        self.maximum = maximum
        self._limit = float(start)
        self._floor: float | None = None
        self._smoothed: float | None = None
        self._lock = threading.Lock()

    @property
    def limit(self) -> int:
        return max(1, min(self.maximum, math.floor(self._limit)))

    def on_sample(self, latency: float, inputs: int, throttled: bool, in_flight: int) -> int:
        """Record one answer (`in_flight`: requests out when it was sent); the new limit."""
        with self._lock:
            if throttled:
                self._limit = max(1.0, self._limit * SHRINK_ON_THROTTLING)
                return self.limit
            per_input = max(latency, 0.0) / max(inputs, 1)
            floor = self._floor
            self._floor = per_input if floor is None else min(per_input, floor * FLOOR_DRIFT)
            smoothed = self._smoothed
            self._smoothed = (
                per_input
                if smoothed is None
                else SMOOTHING * per_input + (1 - SMOOTHING) * smoothed
            )
            ratio = self._smoothed / self._floor if self._floor > 0 else 1.0
            if ratio <= TOLERANCE and in_flight >= self.limit - 1:
                # The limit is in use and answers are not slowing down: try one more.
                self._limit = min(float(self.maximum), self._limit + 1.0)
            elif ratio > QUEUEING:
                self._limit = max(1.0, self._limit * SHRINK_ON_QUEUEING)
            return self.limit
