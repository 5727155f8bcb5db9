"""How long a one-text query waits while a 10,000-input ingestion runs on the same client.

A RAG server ingests and answers queries with one client. The emulator runs in its own
process with a fixed latency per request; one client (max_concurrency 4) ingests 10,000 inputs
in batches of 64 (157 requests) while a one-text query is sent every few hundred
milliseconds. Each query's time is reported in request times: the median time of the same
one-text query on the idle client. With fair sharing of the slots a query waits at most for
the next free slot (target: within 3 request times); a FIFO pool makes it wait for the
ingestion's whole queue.

    .venv/bin/python benchmarks/query_latency.py [--latency 0.05] [--queries 8]
    .venv/bin/python benchmarks/query_latency.py --before /path/to/old/checkout  # adds "before"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _emulator_process import emulator_process, sample_texts

from nebula_core import NebulaClient

INPUTS = 10_000
BATCH = 64
CONCURRENCY = 4
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results-query-latency.md"


def request_time(client: NebulaClient, rounds: int = 7) -> float:
    """The median wall time of a one-text call on an idle client: the unit of the results."""
    times = []
    for i in range(rounds):
        started = time.perf_counter()
        client.embed([f"idle query {i}"])
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure_sync(
    client: NebulaClient, texts: list[str], queries: int, gap: float
) -> tuple[list[float], float]:
    done = threading.Event()
    took: list[float] = []

    def ingest() -> None:
        started = time.perf_counter()
        client.embed(texts, batch_size=BATCH)
        took.append(time.perf_counter() - started)
        done.set()

    thread = threading.Thread(target=ingest)
    thread.start()
    times = []
    for i in range(queries):
        time.sleep(gap)
        if done.is_set():
            break
        started = time.perf_counter()
        client.embed([f"sync query {i} during ingestion"])
        times.append(time.perf_counter() - started)
    thread.join()
    return times, took[0]


async def measure_async(
    client: NebulaClient, texts: list[str], queries: int, gap: float
) -> tuple[list[float], float]:
    started_ingestion = time.perf_counter()
    ingestion = asyncio.create_task(client.aembed(texts, batch_size=BATCH))
    times = []
    for i in range(queries):
        await asyncio.sleep(gap)
        if ingestion.done():
            break
        started = time.perf_counter()
        await client.aembed([f"async query {i} during ingestion"])
        times.append(time.perf_counter() - started)
    await ingestion
    return times, time.perf_counter() - started_ingestion


def measure(latency: float, queries: int) -> dict[str, object]:
    texts = sample_texts(INPUTS)
    with emulator_process(latency=latency) as (base_url, api_key):
        client = NebulaClient(api_key=api_key, base_url=base_url, max_concurrency=CONCURRENCY)
        unit = request_time(client)
        gap = 2 * unit
        sync_times, sync_took = measure_sync(client, texts, queries, gap)
        async_times, async_took = asyncio.run(measure_async(client, texts, queries, gap))
        client.close()
    # How long one ingestion request held its slot, on average (the queries took a few).
    requests = -(-INPUTS // BATCH)
    held = {
        "sync": sync_took * CONCURRENCY / requests,
        "async": async_took * CONCURRENCY / requests,
    }
    return {"unit": unit, "sync": sync_times, "async": async_times, "held": held}


def rows(label: str, result: dict[str, object]) -> list[str]:
    unit = float(result["unit"])  # type: ignore[arg-type]
    lines = []
    for mode in ("sync", "async"):
        times = [t / unit for t in result[mode]]  # type: ignore[attr-defined]
        if not times:
            lines.append(f"| {label} | {mode} | 0 | - | - | ingestion ended first | | |")
            continue
        median, worst = statistics.median(times), max(times)
        met = "yes" if worst <= 3 else "**no**"
        held = float(result["held"][mode])  # type: ignore[index]
        lines.append(
            f"| {label} | {mode} | {len(times)} | {median:.2f} | {worst:.2f} | {met} "
            f"| {held * 1000:.0f} ms | {worst * unit / held:.2f} |"
        )
    return lines


def git(*args: str, cwd: Path = HERE) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--queries", type=int, default=8, help="queries per mode")
    parser.add_argument("--json", action="store_true", help="print raw results, write nothing")
    parser.add_argument("--before", type=Path, help="a checkout of the code to compare with")
    args = parser.parse_args()

    if args.json:
        print(json.dumps(measure(args.latency, args.queries)))
        return

    started = time.monotonic()
    table = [
        "| Code | Mode | Queries | Median (request times) | Worst | Within 3 "
        "| Ingestion request | Worst (ingestion requests) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    result = measure(args.latency, args.queries)
    table += rows(f"this commit ({git('rev-parse', '--short', 'HEAD')})", result)
    if args.before is not None:
        env = {**os.environ, "PYTHONPATH": str(args.before.resolve())}
        command = [sys.executable, str(Path(__file__).resolve()), "--json"]
        command += ["--latency", str(args.latency), "--queries", str(args.queries)]
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        before = json.loads(out.stdout.strip().splitlines()[-1])
        table += rows(f"before ({git('rev-parse', '--short', 'HEAD', cwd=args.before)})", before)

    command = "python benchmarks/query_latency.py " + " ".join(sys.argv[1:])
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    report = [
        "# Query latency during ingestion on one client",
        "",
        f"Generated by `{command.strip()}` on {when} ({time.monotonic() - started:.0f} s), "
        f"Python {sys.version.split()[0]} on {os.cpu_count()} CPU cores.",
        "",
        f"One client (max_concurrency={CONCURRENCY}) ingests {INPUTS:,} inputs in batches of "
        f"{BATCH} ({-(-INPUTS // BATCH)} requests) against the emulator in its own process "
        f"({args.latency * 1000:.0f} ms per request), while a one-text query is sent every two "
        f"request times. A query's time is given in request times: the median time of the "
        f"same one-text call on the idle client ({result['unit'] * 1000:.1f} ms here). Target: "  # type: ignore[operator]
        "the worst query within 3 request times. The last two columns give how long one "
        "ingestion request (64 inputs) held its slot on average, and the worst query in those "
        "units: a query waits for the next free slot, which can take up to one of them.",
        "",
        *table,
        "",
    ]
    RESULTS.write_text("\n".join(report))
    print("\n".join(report))


if __name__ == "__main__":
    main()
