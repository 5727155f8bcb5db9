"""pytest fixtures for code that calls NebulaBlock: `nebula_emulator` and `nebula_env`.

Installed as a pytest plugin with this package. The emulator is imported inside the fixtures,
so test sessions that never use them pay nothing. Options go through a marker::

    @pytest.mark.nebula_emulator(max_inputs_per_request=8, latency=0.05)
    def test_splits_batches(nebula_env): ...

    @pytest.mark.nebula_emulator(requests_per_minute=60, rate_limit_headers=True)
    def test_paces_to_the_tier(nebula_emulator): ...
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from nebula_core.testing import NebulaEmulator


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "nebula_emulator(**options): keyword arguments for the nebula_emulator fixture's "
        "NebulaEmulator (max_inputs_per_request, latency, shuffle, seed, capacity, "
        "seconds_per_token, requests_per_minute, tokens_per_minute, long_input, "
        "max_body_bytes, honour_encoding_format, idle_timeout, vectors, ...)",
    )


@pytest.fixture
def nebula_emulator(request: pytest.FixtureRequest) -> Iterator[NebulaEmulator]:
    """A running NebulaEmulator on a free port, stopped after the test.

    Args:
        request: carries the test's `@pytest.mark.nebula_emulator(...)` marker, whose keyword
            arguments configure the emulator.
    """
    from nebula_core.testing import NebulaEmulator  # noqa: PLC0415 - only when used

    marker = request.node.get_closest_marker("nebula_emulator")
    options = marker.kwargs if marker else {}
    with NebulaEmulator(**options) as emulator:
        yield emulator


@pytest.fixture
def nebula_env(
    nebula_emulator: NebulaEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[NebulaEmulator]:
    """The emulator, with NEBULA_API_KEY and NEBULA_BASE_URL pointing at it for this test.

    Args:
        nebula_emulator: the running emulator (configured by the same marker).
        monkeypatch: restores the environment after the test.
    """
    for name, value in nebula_emulator.env().items():
        monkeypatch.setenv(name, value)
    yield nebula_emulator
