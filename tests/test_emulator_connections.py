"""Keep-alive idle timeout: the server closes connections that sit idle, as real servers do."""

from __future__ import annotations

import socket
import time

import orjson
import pytest
import requests

from nebula_core.models import DEFAULT_MODEL
from nebula_core.testing import NebulaEmulator


def request_bytes(emu: NebulaEmulator) -> bytes:
    body = orjson.dumps({"model": DEFAULT_MODEL, "input": ["x"]})
    head = (
        f"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {emu.api_key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def read_answer(sock: socket.socket) -> bytes:
    """One keep-alive answer: the head, then Content-Length bytes."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        ).split(b":")[1]
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


def test_an_idle_connection_is_closed_after_the_timeout() -> None:
    with NebulaEmulator(idle_timeout=0.2) as emu:
        with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
            sock.sendall(request_bytes(emu))
            head = read_answer(sock)
            assert head.startswith(b"HTTP/1.1 200")
            assert b"Connection: close" not in head  # kept alive after the answer...
            assert sock.recv(1) == b""  # ...until the server closed it for idling
        assert emu.stats.idle_closed == 1
        assert emu.stats.connections == 1


def test_a_busy_connection_is_kept_alive() -> None:
    with NebulaEmulator(idle_timeout=5.0) as emu, requests.Session() as http:
        for _ in range(3):
            response = http.post(
                f"{emu.base_url}/embeddings",
                json={"model": DEFAULT_MODEL, "input": ["x"]},
                headers={"Authorization": f"Bearer {emu.api_key}"},
                timeout=10,
            )
            assert response.status_code == 200
        assert emu.stats.connections == 1
        assert emu.stats.idle_closed == 0


def test_by_default_idle_connections_stay_open() -> None:
    with NebulaEmulator() as emu:
        assert emu.idle_timeout is None
        with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
            sock.sendall(request_bytes(emu))
            read_answer(sock)
            time.sleep(0.5)
            sock.sendall(request_bytes(emu))  # the same connection still answers
            assert read_answer(sock).startswith(b"HTTP/1.1 200")
        assert emu.stats.connections == 1


def test_the_idle_timeout_can_be_set_while_running() -> None:
    with NebulaEmulator() as emu:
        emu.idle_timeout = 0.2
        with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
            sock.sendall(request_bytes(emu))
            read_answer(sock)
            assert sock.recv(1) == b""
        assert emu.stats.idle_closed == 1
        with pytest.raises(ValueError):
            emu.idle_timeout = 0


@pytest.mark.nebula_emulator(idle_timeout=0.2)
def test_the_marker_sets_the_idle_timeout(nebula_emulator: NebulaEmulator) -> None:
    with socket.create_connection(("127.0.0.1", nebula_emulator.port), timeout=10) as sock:
        sock.sendall(request_bytes(nebula_emulator))
        read_answer(sock)
        assert sock.recv(1) == b""
