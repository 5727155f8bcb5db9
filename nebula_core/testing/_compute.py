"""The compute model: a GPU server's shape, where time grows with work and slots are finite.

A request first spends `seconds_per_request` on the network round trip (no slot held), then
waits for one of `capacity` compute slots, and holds it for
`inputs x seconds_per_input + tokens x seconds_per_token`. So throughput is bounded by the
slots, and a request's latency is proportional to its tokens, as on a real embeddings server.
"""

from __future__ import annotations

import threading

__all__ = ["ComputeModel"]


def _non_negative(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and value >= 0):
        raise ValueError(f"{name} must be >= 0 seconds, got {value!r}")
    return float(value)


class ComputeModel:
    """Finite compute slots and per-token cost; all attributes may be changed while running."""

    def __init__(
        self,
        *,
        capacity: int | None = None,
        seconds_per_request: float = 0.0,
        seconds_per_input: float = 0.0,
        seconds_per_token: float = 0.0,
    ) -> None:
        if capacity is not None and not (isinstance(capacity, int) and capacity >= 1):
            raise ValueError(f"capacity must be None (unbounded) or an int >= 1, got {capacity!r}")
        self.capacity = capacity
        self.seconds_per_request = _non_negative("seconds_per_request", seconds_per_request)
        self.seconds_per_input = _non_negative("seconds_per_input", seconds_per_input)
        self.seconds_per_token = _non_negative("seconds_per_token", seconds_per_token)
        self._slots = threading.Condition()
        self._computing = 0
        self._queued = 0
        self.peak_computing = 0  # the most requests ever computed at once
        self.peak_queued = 0  # the most requests ever waiting for a slot

    @property
    def computing(self) -> int:
        """Requests holding a compute slot right now."""
        return self._computing

    def compute_seconds(self, inputs: int, tokens: int) -> float:
        """The time a request of this size holds a slot."""
        return inputs * self.seconds_per_input + tokens * self.seconds_per_token

    def run(self, inputs: int, tokens: int, stopping: threading.Event) -> None:
        """Spend the time this request takes; `stopping` cuts every wait short."""
        if self.seconds_per_request:
            stopping.wait(self.seconds_per_request)
        with self._slots:
            self._queued += 1
            self.peak_queued = max(self.peak_queued, self._queued)
            while (
                self.capacity is not None
                and self._computing >= self.capacity
                and not stopping.is_set()
            ):
                self._slots.wait(0.5)  # a timed wait notices `stopping`
            self._queued -= 1
            self._computing += 1
            self.peak_computing = max(self.peak_computing, self._computing)
        try:
            seconds = self.compute_seconds(inputs, tokens)
            if seconds:
                stopping.wait(seconds)
        finally:
            with self._slots:
                self._computing -= 1
                self._slots.notify()

    def reset_peaks(self) -> None:
        with self._slots:
            self.peak_computing = self._computing
            self.peak_queued = self._queued
