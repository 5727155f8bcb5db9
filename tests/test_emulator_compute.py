"""The emulator's compute model: finite capacity, time proportional to tokens.

Real HTTP on 127.0.0.1; concurrency is asserted by counting the requests computed at once,
never by how long they took, and latency only by generous ratios or lower bounds.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest
import requests

from nebula_core.models import DEFAULT_MODEL
from nebula_core.testing import NebulaEmulator
from nebula_core.testing._compute import ComputeModel


def post(emu: NebulaEmulator, inputs: list[str], **kwargs: Any) -> requests.Response:
    return requests.post(
        f"{emu.base_url}/embeddings",
        data=orjson.dumps({"model": DEFAULT_MODEL, "input": inputs}),
        headers={"Authorization": f"Bearer {emu.api_key}"},
        timeout=30,
        **kwargs,
    )


def fire_together(emu: NebulaEmulator, count: int, inputs: list[str]) -> list[int]:
    """`count` requests released at the same moment, each on its own connection."""
    barrier = threading.Barrier(count)

    def one(_: int) -> int:
        barrier.wait()
        return post(emu, inputs).status_code

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_compute_time_is_per_input_plus_per_token() -> None:
    model = ComputeModel(seconds_per_input=0.5, seconds_per_token=0.01)
    assert model.compute_seconds(inputs=4, tokens=300) == 4 * 0.5 + 300 * 0.01


@pytest.mark.parametrize(
    "options",
    [
        {"capacity": 0},
        {"capacity": 1.5},
        {"seconds_per_token": -1.0},
        {"seconds_per_request": float("nan")},
    ],
)
def test_compute_options_refuse_nonsense(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        NebulaEmulator(**options)


def test_capacity_bounds_the_requests_computed_at_once() -> None:
    with NebulaEmulator(capacity=2, seconds_per_input=0.3) as emu:
        assert fire_together(emu, 6, ["one input"]) == [200] * 6
        assert emu.stats.peak_computing == 2  # the other four queued
        assert emu.compute.peak_queued >= 3
        assert emu.stats.requests == 6


def test_without_capacity_every_request_computes_at_once() -> None:
    # The control for the test above: the same load, no capacity, more than two at once.
    with NebulaEmulator(seconds_per_input=0.5) as emu:
        assert fire_together(emu, 6, ["one input"]) == [200] * 6
        assert emu.stats.peak_computing > 2


def test_capacity_can_be_changed_while_running() -> None:
    with NebulaEmulator(seconds_per_input=0.3) as emu:
        emu.compute.capacity = 1
        assert fire_together(emu, 4, ["x"]) == [200] * 4
        assert emu.stats.peak_computing == 1


def test_latency_grows_with_tokens() -> None:
    short = ["word"]  # 3 tokens
    long = ["word " * 498]  # 500 tokens
    with NebulaEmulator(seconds_per_token=0.002) as emu:
        assert emu.count_tokens(long[0]) == 500
        started = time.monotonic()
        assert post(emu, short).status_code == 200
        short_seconds = time.monotonic() - started
        started = time.monotonic()
        assert post(emu, long).status_code == 200
        long_seconds = time.monotonic() - started
    assert long_seconds >= 1.0  # 500 x 2 ms, a lower bound the server enforces
    assert long_seconds > 4 * short_seconds  # 166x in theory; generous for a loaded machine


def test_round_trip_time_is_added_without_holding_a_slot() -> None:
    with NebulaEmulator(capacity=1, seconds_per_request=1.0) as emu:
        started = time.monotonic()
        assert fire_together(emu, 4, ["x"]) == [200] * 4
        elapsed = time.monotonic() - started
    assert elapsed >= 1.0  # every request spent its round trip...
    assert elapsed < 3.5  # ...all at once: holding the one slot would take 4 s or more


def test_by_default_there_is_no_compute_delay_or_capacity() -> None:
    emu = NebulaEmulator()
    assert emu.compute.capacity is None
    assert emu.compute.compute_seconds(inputs=100, tokens=10_000) == 0.0
    assert emu.compute.seconds_per_request == 0.0


@pytest.mark.nebula_emulator(capacity=1, seconds_per_input=0.2)
def test_the_marker_sets_the_compute_model(nebula_emulator: NebulaEmulator) -> None:
    assert nebula_emulator.compute.capacity == 1
    assert fire_together(nebula_emulator, 3, ["x"]) == [200] * 3
    assert nebula_emulator.stats.peak_computing == 1
