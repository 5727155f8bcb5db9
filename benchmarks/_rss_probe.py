"""Run one contender once in a fresh process and print what it cost, as one JSON line.

`compare.py` starts this script once per contender, so one client's peak memory never
includes another's. Peak RSS is the kernel's high-water mark of this process (`VmHWM`; the
emulator is a different process). After imports, client construction and a one-text warm-up
call, the mark is reset to the current RSS (`baseline`), so `call_peak - baseline` is what
embedding the inputs added.

    python benchmarks/_rss_probe.py KEY BASE_URL API_KEY --inputs N [--async] ...
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _contenders import Contender, Setup, build
from _emulator_process import sample_texts


def short_texts(count: int) -> list[str]:
    """Distinct short inputs (a few words, like titles or queries)."""
    return [f"short input {i} about vector search" for i in range(count)]


def fingerprint(vectors: list[list[float]], samples: int = 64) -> list[list[float]]:
    """The first coordinates of evenly spaced vectors: enough to tell if any were misplaced."""
    step = max(1, len(vectors) // samples)
    return [[float(x) for x in vectors[i][:4]] for i in range(0, len(vectors), step)]


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_kib() -> int:
    """Peak RSS of this process image.

    Linux's `VmHWM` first: `ru_maxrss` survives `exec`, so a child started by a big parent
    would report the parent's size.
    """
    hwm = _status_kib("VmHWM")
    if hwm is not None:
        return hwm
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def start_window() -> tuple[int, int]:
    """(peak so far, RSS now), and restart the peak at the current RSS where Linux allows."""
    peak = peak_kib()
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")  # 5: reset the peak RSS to the current RSS
        return peak, _status_kib("VmRSS") or peak
    except OSError:
        return peak, peak


async def measure_async(
    contender: Contender, warm_up: list[str], texts: list[str]
) -> tuple[tuple[int, int], float, float, list[list[float]]]:
    assert contender.aembed is not None
    await contender.aembed(warm_up)
    gc.collect()
    before = start_window()
    GC_CLOCK.reset()
    wall_started, cpu_started = time.perf_counter(), time.process_time()
    vectors = await contender.aembed(texts)
    return before, time.perf_counter() - wall_started, time.process_time() - cpu_started, vectors


class GcClock:
    """Seconds spent in cyclic-GC collections (they hold the GIL, so wall time is CPU time)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = 0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections += 1

    def reset(self) -> None:
        self.seconds, self.collections = 0.0, 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("key")
    parser.add_argument("base_url")
    parser.add_argument("api_key")
    parser.add_argument("--model", default="WhereIsAI/UAE-Large-V1")
    parser.add_argument("--inputs", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--short", action="store_true", help="short inputs instead of chunks")
    parser.add_argument("--async", dest="use_async", action="store_true")
    parser.add_argument("--output", default="list", help="ours only: list or numpy")
    parser.add_argument(
        "--calls",
        type=int,
        default=1,
        help="split the inputs over this many sync calls, dropping each result before the "
        "next (an ingestion loop); the last call's vectors are reported",
    )
    parser.add_argument(
        "--rounds",
        action="store_true",
        help="after the warm-up, run one sync call per `go` line on stdin and print its "
        "measurements (the first includes the imports' peak), until stdin ends",
    )
    args = parser.parse_args()

    texts = short_texts(args.inputs) if args.short else sample_texts(args.inputs)
    setup = Setup(
        args.base_url, args.api_key, args.model, args.batch_size, args.concurrency, args.output
    )
    contender = build(args.key, setup)
    if args.use_async and contender.aembed is None:
        raise SystemExit(f"{args.key} has no async path")

    warm_up = ["warm-up: load lazy imports and open the connection"]
    if args.rounds:
        serve_rounds(contender, warm_up, texts)
        return
    if args.use_async:
        # One event loop for the warm-up and the measured call: async HTTP clients bind to it.
        before, wall, cpu, vectors = asyncio.run(measure_async(contender, warm_up, texts))
    else:
        contender.embed(warm_up)
        gc.collect()
        before = start_window()
        GC_CLOCK.reset()
        wall_started, cpu_started = time.perf_counter(), time.process_time()
        step = -(-len(texts) // args.calls)
        vectors = []
        for start in range(0, len(texts), step):
            del vectors  # drop the previous call's result, as an ingestion loop would
            vectors = contender.embed(texts[start : start + step])
        wall, cpu = time.perf_counter() - wall_started, time.process_time() - cpu_started
    peak_before, baseline = before
    result = {
        "key": args.key,
        "baseline_kib": baseline,
        "call_peak_kib": peak_kib(),
        "peak_kib": max(peak_before, peak_kib()),
        "wall": wall,
        "cpu": cpu,
        "gc_seconds": GC_CLOCK.seconds,
        "gc_collections": GC_CLOCK.collections,
        "count": len(vectors),
        "dimensions": len(vectors[0]) if len(vectors) else 0,
        "fingerprint": fingerprint(vectors),
    }
    print(orjson.dumps(result).decode())


def serve_rounds(contender: Contender, warm_up: list[str], texts: list[str]) -> None:
    """Let `compare.py` alternate arms round by round, each in its own warm process."""
    contender.embed(warm_up)
    first_peak = peak_kib()  # imports + warm-up
    for line in sys.stdin:
        if line.strip() != "go":
            break
        gc.collect()
        peak_before, baseline = start_window()
        first_peak = max(first_peak, peak_before)
        started = time.perf_counter()
        vectors = contender.embed(texts)
        wall = time.perf_counter() - started
        call_peak = peak_kib()
        result = {
            "call_peak_kib": call_peak,  # the process's peak during this call, imports included
            "process_peak_kib": max(first_peak, call_peak),
            "added_kib": call_peak - baseline,
            "wall": wall,
            "fingerprint": fingerprint(vectors),
        }
        del vectors
        print(orjson.dumps(result).decode(), flush=True)


GC_CLOCK = GcClock()

if __name__ == "__main__":
    main()
