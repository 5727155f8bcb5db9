"""No object reachable from a raised error holds the API key or a `default_headers` value.

Error reporters (Sentry, rich tracebacks, logging's `exc_info`) walk `__cause__`,
`__context__`, `args` and attributes, even when `raise ... from None` hides them from the
printed traceback. So the test walks them too, for every kind of failure the client raises.
(Frame locals of `__traceback__` are out of scope: they hold the client itself, by design.)
"""

from __future__ import annotations

import asyncio
import pickle
import socket
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
import requests

from nebula_core import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    ConfigurationError,
    NebulaClient,
    NebulaError,
    RateLimitError,
    ResponseFormatError,
    ServerError,
)
from nebula_core.testing import Fault, NebulaEmulator
from tests._servers import RawServer, answer_plain_http

KEY = "ak_live_reachability_7f3a9c"
GATEWAY = "gw_private_value_41d8"
SECRETS = (KEY, GATEWAY)


def reachable(root: object, max_depth: int = 12) -> Iterator[object]:
    """Every object reachable from `root` through exception links, args, containers,
    `__dict__` and `__slots__`, breadth first, each once, `max_depth` links deep."""
    seen: set[int] = set()
    level: list[object] = [root]
    for _ in range(max_depth):
        following: list[object] = []
        for obj in level:
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            yield obj
            following.extend(_links(obj))
        level = following
        if not level:
            return


def _links(obj: object) -> list[object]:
    if isinstance(obj, (str, bytes, bytearray, int, float, type, types.ModuleType)):
        return []
    if isinstance(obj, (types.FunctionType, types.MethodType, types.TracebackType)):
        return []
    links: list[object] = []
    if isinstance(obj, BaseException):
        links += [obj.__cause__, obj.__context__, *obj.args]
    if isinstance(obj, Mapping):
        links += [*obj.keys(), *obj.values()]
    elif isinstance(obj, (list, tuple, set, frozenset)):
        links += list(obj)
    attributes = getattr(obj, "__dict__", None)
    if isinstance(attributes, dict):
        links += list(attributes.values())
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if slot not in ("__dict__", "__weakref__") and hasattr(obj, slot):
                links.append(getattr(obj, slot))
    return [link for link in links if link is not None]


def leaks(error: BaseException) -> list[str]:
    """Descriptions of every reachable place that shows a secret; empty when clean."""
    found = []
    for obj in reachable(error):
        text = obj.decode("latin-1") if isinstance(obj, (bytes, bytearray)) else obj
        if isinstance(text, str) and any(secret in text for secret in SECRETS):
            found.append(f"{type(obj).__name__}: {text[:80]!r}")
    shown = repr(error) + str(error) + pickle.dumps(error).decode("latin-1")
    found += [f"repr/str/pickle shows {s[:6]}..." for s in SECRETS if s in shown]
    return found


def test_the_walker_finds_a_key_held_by_a_chained_requests_exception():
    # What `raise ... from None` inside `except requests.RequestException` used to leave.
    request = requests.Request(
        "POST", "http://127.0.0.1:9/v1/embeddings", headers={"Authorization": f"Bearer {KEY}"}
    ).prepare()
    try:
        try:
            raise requests.ConnectionError("refused", request=request)
        except requests.ConnectionError:
            raise APIConnectionError("Could not connect") from None
    except APIConnectionError as error:
        assert error.__suppress_context__  # hidden from tracebacks, yet...
        assert leaks(error)  # ...reachable


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _client(base_url: str, **overrides: Any) -> NebulaClient:
    options: dict[str, Any] = {
        "api_key": KEY,
        "base_url": base_url,
        "default_headers": {"X-Gateway-Token": GATEWAY},
        "max_retries": 2,
        "retry_base_wait": 0.01,
        "max_retry_wait": 0.05,
        "timeout": 10,
    }
    options.update(overrides)
    return NebulaClient(**options)


Scenario = Callable[[NebulaEmulator], tuple[NebulaClient, type[NebulaError]]]


def _wrong_key(emu: NebulaEmulator) -> tuple[NebulaClient, type[NebulaError]]:
    return _client(emu.base_url), AuthenticationError  # the emulator expects its own key


def _throttled(emu: NebulaEmulator) -> tuple[NebulaClient, type[NebulaError]]:
    emu.enqueue(*[Fault.status(429)] * 3)
    return _client(emu.base_url, api_key=emu.api_key), RateLimitError


def _failing(emu: NebulaEmulator) -> tuple[NebulaClient, type[NebulaError]]:
    emu.enqueue(*[Fault.html_error(502)] * 3)
    return _client(emu.base_url, api_key=emu.api_key), ServerError


def _refused(emu: NebulaEmulator) -> tuple[NebulaClient, type[NebulaError]]:
    return _client(f"http://127.0.0.1:{_closed_port()}/v1"), APIConnectionError


def _dropped(emu: NebulaEmulator) -> tuple[NebulaClient, type[NebulaError]]:
    emu.enqueue(Fault.drop())
    return _client(emu.base_url, api_key=emu.api_key, max_retries=0), APIConnectionError


def _timed_out(emu: NebulaEmulator) -> tuple[NebulaClient, type[NebulaError]]:
    emu.enqueue(Fault.delay(5))
    client = _client(emu.base_url, api_key=emu.api_key, max_retries=0, timeout=0.5)
    return client, APITimeoutError


def _malformed(emu: NebulaEmulator) -> tuple[NebulaClient, type[NebulaError]]:
    emu.enqueue(Fault.malformed_json())
    return _client(emu.base_url, api_key=emu.api_key), ResponseFormatError


SCENARIOS: dict[str, Scenario] = {
    "401": _wrong_key,
    "429-after-retries": _throttled,
    "5xx-after-retries": _failing,
    "connection-refused": _refused,
    "connection-dropped": _dropped,
    "timeout": _timed_out,
    "malformed-2xx": _malformed,
}


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_no_secret_is_reachable_from_a_raised_error(name, mode):
    with NebulaEmulator() as emu:
        client, expected = SCENARIOS[name](emu)
        with client, pytest.raises(NebulaError) as caught:
            if mode == "sync":
                client.embed(["first", "second"])
            else:
                asyncio.run(client.aembed(["first", "second"]))

    assert type(caught.value) is expected
    assert leaks(caught.value) == []


def test_no_secret_is_reachable_from_a_tls_error():
    with RawServer(answer_plain_http) as server:
        client = _client(f"https://127.0.0.1:{server.port}/v1")
        with pytest.raises(ConfigurationError) as caught:
            client.embed(["first"])

    assert leaks(caught.value) == []


def test_the_client_and_its_config_print_neither_key_nor_headers():
    client = _client("http://127.0.0.1:9/v1")

    for text in (repr(client), str(client), repr(client.config), str(client.config)):
        assert KEY not in text
        assert GATEWAY not in text
