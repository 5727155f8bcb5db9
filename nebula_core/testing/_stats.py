"""Counters of what the emulator did, for tests and benchmarks to assert on."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

__all__ = ["EmulatorStats", "StatsCounter"]


@dataclass(frozen=True)
class EmulatorStats:
    """A snapshot of `emu.stats`.

    Attributes:
        requests: POST /embeddings received.
        rejected_429: refused by the rate limits (not by scripted faults).
        tokens: tokens billed in successful answers.
        inputs: inputs embedded.
        statuses: how many answers had each status (0: dropped without an answer).
        peak_computing: the most requests computed at once.
        connections: TCP connections accepted.
        idle_closed: keep-alive connections the server closed for idleness.
    """

    requests: int = 0
    rejected_429: int = 0
    tokens: int = 0
    inputs: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    peak_computing: int = 0
    connections: int = 0
    idle_closed: int = 0


class StatsCounter:
    """Thread-safe tallies behind `EmulatorStats`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._requests = 0
            self._rejected = 0
            self._tokens = 0
            self._inputs = 0
            self._statuses: dict[int, int] = {}

    def count(
        self, status: int, *, tokens: int = 0, inputs: int = 0, rate_limited: bool = False
    ) -> None:
        """One answered embeddings request."""
        with self._lock:
            self._requests += 1
            self._statuses[status] = self._statuses.get(status, 0) + 1
            self._rejected += rate_limited
            if status == 200:
                self._tokens += tokens
                self._inputs += inputs

    def snapshot(self, *, peak_computing: int, connections: int, idle_closed: int) -> EmulatorStats:
        with self._lock:
            return EmulatorStats(
                requests=self._requests,
                rejected_429=self._rejected,
                tokens=self._tokens,
                inputs=self._inputs,
                statuses=dict(self._statuses),
                peak_computing=peak_computing,
                connections=connections,
                idle_closed=idle_closed,
            )
