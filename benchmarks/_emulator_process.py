"""Shared by the benchmarks: the emulator in a process of its own, and realistic inputs."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import requests

API_KEY = "ak_benchmark_key"

_WORDS = (
    "embedding", "retrieval", "vector", "index", "batch", "request", "latency", "token", "model",
    "passage", "query", "document", "chunk", "ingestion", "pipeline", "store", "search",
    "ranking", "similarity", "cosine", "concurrency",
)  # fmt: skip


def sample_texts(count: int, words: int = 40) -> list[str]:
    """Distinct, chunk-sized English-like texts (about a RAG chunk's length)."""
    return [
        f"Chunk {i}: " + " ".join(_WORDS[(i * 7 + j * 3) % len(_WORDS)] for j in range(words))
        for i in range(count)
    ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class RunningEmulator:
    """Where a started emulator listens, and its process (to read its own CPU time)."""

    base_url: str
    api_key: str
    pid: int


@contextlib.contextmanager
def emulator_process(latency: float = 0.0, max_inputs: int = 4096) -> Iterator[tuple[str, str]]:
    """Start `python -m nebula_core.testing` on a free port; yield (base_url, api_key)."""
    with running_emulator(latency, max_inputs) as emulator:
        yield emulator.base_url, emulator.api_key


@contextlib.contextmanager
def running_emulator(
    latency: float = 0.0, max_inputs: int = 4096, flags: Sequence[str] = ()
) -> Iterator[RunningEmulator]:
    """Like `emulator_process`, but yield the process id too; `flags` go to the emulator's CLI
    (e.g. `--honour-encoding-format`)."""
    port = _free_port()
    command = [
        sys.executable, "-m", "nebula_core.testing", "--port", str(port), "--api-key", API_KEY,
        "--latency", str(latency), "--max-inputs", str(max_inputs), *flags,
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=os.environ.copy())
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/health", timeout=1).raise_for_status()
                break
            except requests.RequestException:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the emulator did not start") from None
                time.sleep(0.05)
        yield RunningEmulator(base_url, API_KEY, process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
