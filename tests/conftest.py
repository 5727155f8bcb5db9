"""Fixtures shared by the suite. The emulator fixtures come from our own pytest plugin
(`nebula_core.testing.pytest_plugin`), exactly as users' test suites get them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from nebula_core import NebulaClient
from nebula_core.testing import NebulaEmulator
from tests.wheelhouse import Wheelhouse

TEXTS = [f"passage {i} about topic {i % 7} and its details" for i in range(200)]


class LoopTicks:
    """Counts how often the event loop ran a 10 ms sleeper while the block was awaiting:
    proof that network waits did not block the loop."""

    ticks = 0

    async def __aenter__(self) -> LoopTicks:
        self._task = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._task.cancel()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            self.ticks += 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `wheel` (build the wheel, install it into fresh venvs) run last, so a
    quick failure elsewhere shows first; their venvs are shared through the session."""
    items.sort(key=lambda item: item.get_closest_marker("wheel") is not None)


@pytest.fixture(scope="session")
def wheelhouse() -> Iterator[Wheelhouse]:
    """The wheel built from this tree once per session, and a venv per install line."""
    house = Wheelhouse.create()
    yield house
    house.remove()


@pytest.fixture(autouse=True)
def _no_ambient_nebula_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's real key or URL in the environment must never leak into a test."""
    monkeypatch.delenv("NEBULA_API_KEY", raising=False)
    monkeypatch.delenv("NEBULA_BASE_URL", raising=False)


@pytest.fixture
def emu(nebula_emulator: NebulaEmulator) -> NebulaEmulator:
    return nebula_emulator


@pytest.fixture
def make_client(emu: NebulaEmulator) -> Iterator[Callable[..., NebulaClient]]:
    """Clients pointed at the emulator, with backoff shortened so retry tests stay fast."""
    clients: list[NebulaClient] = []

    def make(**overrides: Any) -> NebulaClient:
        options: dict[str, Any] = {
            "api_key": emu.api_key,
            "base_url": emu.base_url,
            "retry_base_wait": 0.01,
            "max_retry_wait": 2.0,
            "timeout": 10.0,
        }
        options.update(overrides)
        client = NebulaClient(**options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
