"""Shared by the benchmarks: the emulator in a process of its own, and realistic inputs.

`running_emulator(**options)` starts this file as a child process, which builds a
`NebulaEmulator(**options)` (any keyword of docs/emulator.md: capacity, seconds_per_*,
rate limits, honour_encoding_format, long_input, ...) and then answers one-line commands on
stdin (`stats`, `reset`, `quit`), so the benchmark can read `emu.stats` of a server whose CPU
is not its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import orjson

API_KEY = "ak_benchmark_key"

_WORDS = (
    "embedding", "retrieval", "vector", "index", "batch", "request", "latency", "token", "model",
    "passage", "query", "document", "chunk", "ingestion", "pipeline", "store", "search",
    "ranking", "similarity", "cosine", "concurrency",
)  # fmt: skip


def sample_texts(count: int, words: int = 40, seed: int | None = None) -> list[str]:
    """Distinct, chunk-sized English-like texts (about a RAG chunk's length).

    With a `seed`, the words of each text are shuffled too, so texts share no long runs.
    """
    texts = [
        f"Chunk {i}: " + " ".join(_WORDS[(i * 7 + j * 3) % len(_WORDS)] for j in range(words))
        for i in range(count)
    ]
    if seed is None:
        return texts
    rng = random.Random(seed)
    shuffled = []
    for text in texts:
        head, _, body = text.partition(": ")
        parts = body.split()
        rng.shuffle(parts)
        shuffled.append(f"{head}: {' '.join(parts)}")
    return shuffled


@dataclass
class RunningEmulator:
    """Where a started emulator listens, its process id (to read its CPU time), and a pipe
    to ask it for `stats` or to `reset`."""

    base_url: str
    api_key: str
    pid: int
    _stdin: TextIO | None = None
    _stdout: TextIO | None = None

    def _ask(self, command: str) -> Any:
        assert self._stdin is not None and self._stdout is not None
        self._stdin.write(command + "\n")
        self._stdin.flush()
        return orjson.loads(self._stdout.readline())

    def stats(self) -> dict[str, Any]:
        """`emu.stats` of the child, as a dict (statuses keyed by str)."""
        return dict(self._ask("stats"))

    def reset(self) -> None:
        """`emu.reset()`: counters, rate-limit allowance, shuffle sequence."""
        self._ask("reset")


@contextlib.contextmanager
def emulator_process(latency: float = 0.0, max_inputs: int = 4096) -> Iterator[tuple[str, str]]:
    """Start the emulator in a child process; yield (base_url, api_key)."""
    with running_emulator(latency=latency, max_inputs_per_request=max_inputs) as emulator:
        yield emulator.base_url, emulator.api_key


@contextlib.contextmanager
def running_emulator(
    *, flags: Sequence[str] = (), max_inputs: int | None = None, **options: Any
) -> Iterator[RunningEmulator]:
    """Start `NebulaEmulator(**options)` in a child process; yield where it listens.

    `max_inputs_per_request` defaults to 4,096 here so that the peers' default batch sizes
    (1,000 and 100 inputs) are accepted. `flags` such as `--honour-encoding-format` (the CLI's
    on/off switches) and `max_inputs` are accepted for the scripts written against the CLI.
    """
    for flag in flags:
        options[flag.lstrip("-").replace("-", "_")] = True
    if max_inputs is not None:
        options["max_inputs_per_request"] = max_inputs
    options.setdefault("max_inputs_per_request", 4096)
    options["api_key"] = API_KEY
    process = subprocess.Popen(
        [sys.executable, __file__, orjson.dumps(options).decode()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("the emulator did not start")
        base_url = orjson.loads(line)["base_url"]
        yield RunningEmulator(base_url, API_KEY, process.pid, process.stdin, process.stdout)
    finally:
        with contextlib.suppress(OSError):
            process.stdin.write("quit\n")
            process.stdin.flush()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _serve(options: dict[str, Any]) -> None:
    """The child: serve until `quit` (or the end of stdin), answering commands on stdout."""
    from nebula_core.testing import NebulaEmulator  # noqa: PLC0415 - only the child needs it

    emulator = NebulaEmulator(port=0, **options)
    emulator.start()
    try:
        print(orjson.dumps({"base_url": emulator.base_url}).decode(), flush=True)
        for raw in sys.stdin:
            command = raw.strip()
            if command == "stats":
                print(
                    orjson.dumps(
                        dataclasses.asdict(emulator.stats), option=orjson.OPT_NON_STR_KEYS
                    ).decode(),
                    flush=True,
                )
            elif command == "reset":
                emulator.reset()
                print("null", flush=True)
            else:
                break
    finally:
        emulator.stop()


if __name__ == "__main__":
    _serve(orjson.loads(sys.argv[1]))
