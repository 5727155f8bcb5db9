"""This project next to the OpenAI-compatible integrations a user would otherwise point at the
same server, on identical inputs, with the same batch size.

The emulator runs in its own process (`python -m nebula_core.testing`), so a client's CPU time
and memory are its own. Four scenarios:

- latency-bound ingestion: 1,024 chunks, 32 per request, 100 ms per request; wall time of the
  sync and async batch calls (ours with max_concurrency=8, peers with their own knob at 8);
- CPU-bound parsing: 2,048 chunks, 1,024-dim model, no latency, one request in flight; client
  CPU time (`time.process_time`), next to a bare requests+orjson loop;
- scale: 100,000 short inputs through our async path, max_concurrency=32, 20 ms per request;
- memory: peak RSS of embedding 20,000 chunks, each client in a fresh process, and of the
  same inputs sent as 4 calls whose results are dropped one by one (an ingestion loop).

Every result is also checked against the bare loop's: are the vectors next to their own text?

It prints one table of ratios and writes it, with the exact command and the date, to
benchmarks/results.md. The machine may be shared: compare ratios from one run, not times.

    .venv/bin/python benchmarks/compare.py            # the full run (a few minutes)
    .venv/bin/python benchmarks/compare.py --quick    # scaled down, a few minutes
    .venv/bin/python benchmarks/compare.py --only cpu,memory --output /tmp/results.md
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import importlib.metadata
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psutil  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _contenders import LABELS, OURS, PEERS, Contender, Setup, build
from _emulator_process import RunningEmulator, running_emulator, sample_texts

HERE = Path(__file__).resolve().parent
MODEL = "WhereIsAI/UAE-Large-V1"  # 1,024 dimensions
SCENARIOS = ("latency", "cpu", "scale", "memory")
Vectors = list[list[float]]


# -- results -------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the ratio table: ours / theirs (below 1 means ours is faster or smaller)."""

    scenario: str
    measure: str
    ours: str
    theirs: str
    ratio: float
    target: str = ""
    met: bool | None = None
    plain: bool = False  # a multiple of an ideal, not a comparison with another client

    def verdict(self) -> str:
        return "" if self.met is None else ("yes" if self.met else "**no**")


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)
    # (client, call) -> (vectors next to their own text, inputs), from the checking calls
    placement: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)

    def check_order(self, key: str, call: str, vectors: Vectors, reference: Vectors) -> None:
        self.placement[(key, call)] = (placed_right(vectors, reference), len(reference))

    def note(self, scenario: str, line: str) -> None:
        self.notes.setdefault(scenario, []).append(line)
        print(f"  {line}", flush=True)


def describe_ratio(ratio: float, smaller: str = "faster") -> str:
    """`0.125 (8.0x faster)`: the ratio, and how a person would say it."""
    if ratio <= 0 or not math.isfinite(ratio):
        return f"{ratio:.3f}"
    if ratio < 0.995:
        return f"{ratio:.3f} ({1 / ratio:.1f}x {smaller})"
    worse = {"faster": "slower", "smaller": "larger", "less": "more"}[smaller]
    if ratio > 1.005:
        return f"{ratio:.3f} ({ratio:.2f}x {worse})"
    return f"{ratio:.3f} (equal)"


# -- correctness ---------------------------------------------------------------------------


def _close(a: Sequence[float], b: Sequence[float]) -> bool:
    # Exact for float JSON; a client that asked for float32/base64 would differ in the 8th digit.
    return len(a) == len(b) and all(abs(x - y) <= 1e-6 for x, y in zip(a, b, strict=True))


def placed_right(vectors: Vectors, reference: Vectors) -> int:
    """How many vectors sit at the position of their own text (first 16 coordinates compared)."""
    if len(vectors) != len(reference):
        return 0
    return sum(
        1
        for got, want in zip(vectors, reference, strict=True)
        if got[:16] == want[:16] or _close(got[:16], want[:16])
    )


# -- scenario 1: latency-bound ingestion --------------------------------------------------


def latency_bound(args: argparse.Namespace, report: Report) -> None:
    count, batch, concurrency = args.latency_inputs, 32, 8
    texts = sample_texts(count)
    keys = ("nebula_lc", "nebula_li", "openai_lc", "openai_li")
    print(
        f"\n[latency] {count} inputs, {batch} per request, {args.latency:g}s per request, "
        f"concurrency {concurrency}, {args.latency_rounds} round(s)",
        flush=True,
    )
    with running_emulator(latency=args.latency) as emu:
        setup = Setup(emu.base_url, emu.api_key, MODEL, batch, concurrency)
        contenders = {key: build(key, setup) for key in keys}
        reference = build("bare", setup).embed(texts)
        for key in keys:
            report.check_order(key, "sync", contenders[key].embed(texts), reference)

        sync_times: dict[str, list[float]] = {key: [] for key in keys}
        for round_ in range(args.latency_rounds):
            for key in rotate(keys, round_):
                gc.collect()
                started = time.perf_counter()
                contenders[key].embed(texts)
                sync_times[key].append(time.perf_counter() - started)

        async def async_rounds() -> dict[str, list[float]]:
            times: dict[str, list[float]] = {key: [] for key in keys}
            for key in keys:  # warm-up inside this loop: async clients bind to it
                aembed = contenders[key].aembed
                assert aembed is not None
                vectors = await aembed(texts)
                report.check_order(key, "async", vectors, reference)
            for round_ in range(args.latency_rounds):
                for key in rotate(keys, round_):
                    aembed = contenders[key].aembed
                    assert aembed is not None
                    gc.collect()
                    started = time.perf_counter()
                    await aembed(texts)
                    times[key].append(time.perf_counter() - started)
            return times

        async_times = asyncio.run(async_rounds())

    sync = {key: statistics.median(v) for key, v in sync_times.items()}
    asyn = {key: statistics.median(v) for key, v in async_times.items()}
    ideal_sequential = math.ceil(count / batch) * args.latency
    ideal_concurrent = math.ceil(math.ceil(count / batch) / concurrency) * args.latency
    for key in keys:
        report.note(
            "latency",
            f"{LABELS[key]}: sync {sync[key] / ideal_concurrent:.2f}, async "
            f"{asyn[key] / ideal_concurrent:.2f} x the ideal wall time of "
            f"{concurrency} requests in flight",
        )
    report.note(
        "latency",
        f"a sequential client cannot beat {ideal_sequential / ideal_concurrent:.0f}x the ideal "
        f"concurrent wall time (requests x latency)",
    )
    for ours, theirs in (("nebula_lc", "openai_lc"), ("nebula_li", "openai_li")):
        ratio = sync[ours] / sync[theirs]
        report.rows.append(
            Row(
                "latency-bound",
                "sync wall time",
                f"{LABELS[ours]} `embed_documents`"
                if ours == "nebula_lc"
                else f"{LABELS[ours]} `get_text_embedding_batch`",
                LABELS[theirs],
                ratio,
                "<= 1/7.5 (0.133)" if theirs == "openai_lc" else "",
                ratio <= 1 / 7.5 if theirs == "openai_lc" else None,
            )
        )
    fastest_peer = min(PEERS, key=lambda key: asyn[key])
    for ours, theirs in (("nebula_lc", "openai_lc"), ("nebula_li", "openai_li")):
        ratio = asyn[ours] / asyn[theirs]
        report.rows.append(
            Row("latency-bound", "async wall time", LABELS[ours], LABELS[theirs], ratio)
        )
    for ours in ("nebula_lc", "nebula_li"):
        ratio = asyn[ours] / asyn[fastest_peer]
        report.rows.append(
            Row(
                "latency-bound",
                "async wall time vs fastest peer",
                LABELS[ours],
                f"{LABELS[fastest_peer]} (fastest peer async)",
                ratio,
                "<= 1.0",
                ratio <= 1.0,
            )
        )


# -- scenario 2: CPU-bound parsing --------------------------------------------------------


def cpu_bound(args: argparse.Namespace, report: Report) -> None:
    count, batch = args.cpu_inputs, 32
    texts = sample_texts(count)
    keys = ("bare", "core", "nebula_lc", "nebula_li", "openai_lc", "openai_li")
    peer_rounds = min(args.cpu_rounds, args.cpu_peer_rounds)
    print(
        f"\n[cpu] {count} inputs x 1024 dims, {batch} per request, no latency, one request in "
        f"flight, {args.cpu_rounds} rounds ({peer_rounds} for the peers)",
        flush=True,
    )
    with running_emulator(latency=0.0) as emu:
        setup = Setup(emu.base_url, emu.api_key, MODEL, batch, concurrency=1)
        contenders = {key: build(key, setup) for key in keys}
        reference = contenders["bare"].embed(texts)  # also fills the emulator's vector cache
        for key in keys[1:]:
            report.check_order(key, "sync", contenders[key].embed(texts), reference)
        del reference
        # The peers take ~30x longer per run; fewer of their rounds keep the run short, and
        # interleaving ours with the bare loop round by round shares out the machine's noise.
        fast = {key: contenders[key] for key in ("bare", *OURS)}
        off = measure_cpu(fast, texts, args.cpu_rounds, collect=False)
        on = measure_cpu(fast, texts, args.cpu_rounds, collect=True)
        off |= measure_cpu({key: contenders[key] for key in PEERS}, texts, peer_rounds, False)
        emulator_share = emulator_cpu_share(emu, contenders["bare"], texts)
    # The least CPU time of each: interference from other processes only ever adds time.
    cpu = {key: min(v) for key, v in off.items()}
    with_gc = {key: min(v) for key, v in on.items()}
    for key in keys:
        median = statistics.median(off[key]) / statistics.median(off["bare"])
        line = (
            f"{LABELS[key]}: {cpu[key] / cpu['bare']:.3f} x bare by the least of "
            f"{len(off[key])} rounds ({median:.3f} by the medians)"
        )
        if key in with_gc:
            line += f"; with the cyclic GC on: {with_gc[key] / with_gc['bare']:.3f} x bare"
        report.note("cpu", line)
    report.note(
        "cpu",
        "with the GC on, a client that keeps the parsed vectors as they arrive pays for gen-0 "
        "collections that walk the young vector lists; the bare loop pre-fills its result "
        "with empty lists and frees one per vector it stores, which keeps the GC's allocation "
        "count flat, so its collections happen before the first response and walk nothing",
    )
    report.note("cpu", f"emulator CPU per bare-loop run: {emulator_share:.2f} x the bare loop's")
    for measure, times in (("client CPU time (GC off)", cpu), ("client CPU time (GC on)", with_gc)):
        for ours in OURS:
            ratio = times[ours] / times["bare"]
            report.rows.append(
                Row(
                    "CPU-bound",
                    measure,
                    LABELS[ours],
                    LABELS["bare"],
                    ratio,
                    "<= 1.15",
                    ratio <= 1.15,
                )
            )
    for ours in OURS:
        for theirs in PEERS:
            ratio = cpu[ours] / cpu[theirs]
            report.rows.append(
                Row(
                    "CPU-bound",
                    "client CPU time (GC off)",
                    LABELS[ours],
                    LABELS[theirs],
                    ratio,
                    "< 1.0",
                    ratio < 1.0,
                )
            )


def measure_cpu(
    contenders: dict[str, Contender], texts: list[str], rounds: int, collect: bool
) -> dict[str, list[float]]:
    """Client CPU seconds of each contender, interleaved round by round so drift hits all.

    `collect=False` turns the cyclic GC off during each call: how often it runs, and what
    it walks, depends on everything else alive in this process (every peer's imports), and
    on how a client happens to allocate its result (see the details of results.md).
    """
    times: dict[str, list[float]] = {key: [] for key in contenders}
    keys = tuple(contenders)
    for round_ in range(rounds):
        for key in rotate(keys, round_):
            gc.collect()
            if not collect:
                gc.disable()
            try:
                started = time.process_time()
                vectors = contenders[key].embed(texts)
                times[key].append(time.process_time() - started)
            finally:
                gc.enable()
            del vectors
    return times


def emulator_cpu_share(emu: RunningEmulator, bare: Contender, texts: list[str]) -> float:
    """The emulator's CPU time for one bare-loop run, as a multiple of the client's."""
    server = psutil.Process(emu.pid)
    server_before = sum(server.cpu_times()[:2])
    client_before = time.process_time()
    bare.embed(texts)
    client = time.process_time() - client_before
    return float(sum(server.cpu_times()[:2]) - server_before) / client


# -- scenario 3: scale ---------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """What one contender cost in a fresh process (see `_rss_probe.py`)."""

    peak_kib: int  # the process's peak RSS, imports included
    added_kib: int  # the peak during the call, minus the RSS just before it
    wall: float
    cpu: float
    server_cpu: float  # the emulator's CPU seconds over the probe's lifetime
    gc_seconds: float  # in cyclic-GC collections during the call
    gc_collections: int
    dimensions: int
    fingerprint: list[list[float]]


def probe(
    emu: RunningEmulator,
    key: str,
    inputs: int,
    *,
    concurrency: int,
    batch: int = 32,
    short: bool = False,
    use_async: bool = False,
    calls: int = 1,
) -> Probe:
    """Run one contender in a fresh process (`_rss_probe.py`) and return its measurements."""
    command = [
        sys.executable, str(HERE / "_rss_probe.py"), key, emu.base_url, emu.api_key,
        "--model", MODEL, "--inputs", str(inputs), "--batch-size", str(batch),
        "--concurrency", str(concurrency),
    ]  # fmt: skip
    if short:
        command.append("--short")
    if use_async:
        command.append("--async")
    if calls > 1:
        command += ["--calls", str(calls)]
    server = psutil.Process(emu.pid)
    server_before = sum(server.cpu_times()[:2])
    completed = subprocess.run(command, capture_output=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{key} probe failed:\n{completed.stderr.decode()[-3000:]}")
    raw = orjson.loads(completed.stdout.splitlines()[-1])
    return Probe(
        peak_kib=raw["peak_kib"],
        added_kib=raw["call_peak_kib"] - raw["baseline_kib"],
        wall=raw["wall"],
        cpu=raw["cpu"],
        server_cpu=float(sum(server.cpu_times()[:2]) - server_before),
        gc_seconds=raw["gc_seconds"],
        gc_collections=raw["gc_collections"],
        dimensions=raw["dimensions"],
        fingerprint=raw["fingerprint"],
    )


def scale(args: argparse.Namespace, report: Report) -> None:
    count, batch, concurrency, latency = args.scale_inputs, 32, 32, args.scale_latency
    keys = ["nebula_lc", *(["openai_li"] if args.scale_peers else [])]
    print(
        f"\n[scale] {count} short inputs, {batch} per request, {latency:g}s per request, "
        f"async, concurrency {concurrency}",
        flush=True,
    )
    requests = math.ceil(count / batch)
    ideal = math.ceil(requests / concurrency) * latency
    results = {}
    with running_emulator(latency=latency) as emu:
        for key in keys:
            results[key] = probe(
                emu, key, count, concurrency=concurrency, short=True, use_async=True
            )
    for key, result in results.items():
        wall, dims = result.wall, result.dimensions
        peak_mib, added_mib = result.peak_kib / 1024, result.added_kib / 1024
        floor_mib = count * dims * 32 / 2**20  # a float object + a list slot per coordinate
        cpu, server_cpu = result.cpu, result.server_cpu
        report.note(
            "scale",
            f"{LABELS[key]}: {count} inputs in {requests} requests: wall {wall:.2f}s = "
            f"{wall / ideal:.2f} x the ideal {ideal:.2f}s; {requests / wall:.0f} requests/s "
            f"({requests / wall / (concurrency / latency):.2f} of the {concurrency / latency:.0f}"
            f"/s the latency allows)",
        )
        report.note(
            "scale",
            f"{LABELS[key]}: peak RSS {peak_mib:.0f} MiB ({added_mib:.0f} MiB added by the call; "
            f"{count} x {dims} Python floats alone take {floor_mib:.0f} MiB)",
        )
        report.note(
            "scale",
            f"{LABELS[key]}: CPU busy during the call: client {cpu / wall:.2f} cores, emulator "
            f"{server_cpu / wall:.2f} cores (the machine has {os.cpu_count()})",
        )
        per_request = cpu / requests
        report.note(
            "scale",
            f"{LABELS[key]}: the client spent {per_request * 1000:.2f} ms of CPU per request "
            f"({result.gc_seconds / cpu:.0%} of it in {result.gc_collections} cyclic-GC "
            f"collections); parsing JSON into Python floats runs under one GIL, so at that "
            f"cost one process tops out at {1 / per_request:.0f} requests/s, and the client "
            f"was busy for {requests / wall * per_request:.2f} of the wall time",
        )
        report.rows.append(
            Row(
                "scale",
                f"async wall time, {count:,} inputs, concurrency {concurrency}, "
                f"{latency * 1000:g} ms",
                LABELS[key],
                f"ideal: {requests} requests x {latency * 1000:g} ms / {concurrency} in flight",
                wall / ideal,
                plain=True,
            )
        )
        report.rows.append(
            Row(
                "scale",
                "peak RSS added by the call",
                LABELS[key],
                f"{count:,} x {dims} Python floats ({floor_mib:.0f} MiB)",
                added_mib / floor_mib,
                plain=True,
            )
        )

    if "openai_li" in results:
        ours, theirs = results["nebula_lc"], results["openai_li"]
        report.rows.append(
            Row(
                "scale",
                "async wall time",
                LABELS["nebula_lc"],
                f"{LABELS['openai_li']}, num_workers={concurrency}",
                ours.wall / theirs.wall,
            )
        )


# -- scenario 4: memory --------------------------------------------------------------------


def memory(args: argparse.Namespace, report: Report) -> None:
    count = args.memory_inputs
    keys = ("bare", "core", "nebula_lc", "nebula_li", "openai_lc", "openai_li")
    print(f"\n[memory] {count} inputs x 1024 dims, one fresh process per client", flush=True)
    results: dict[str, Probe] = {}
    looped: dict[str, Probe] = {}
    calls = args.memory_calls
    with running_emulator(latency=0.0) as emu:
        for key in keys:
            results[key] = probe(emu, key, count, concurrency=8)
        if calls > 1:
            for key in ("bare", *OURS):
                looped[key] = probe(emu, key, count, concurrency=8, calls=calls)
    reference = results["bare"].fingerprint
    peak = {key: r.peak_kib for key, r in results.items()}
    added = {key: r.added_kib for key, r in results.items()}
    for key in keys:
        same = results[key].fingerprint == reference
        report.note(
            "memory",
            f"{LABELS[key]}: peak {peak[key] / 1024:.0f} MiB, of which {added[key] / 1024:.0f} "
            f"MiB added by the call; sampled vectors {'match' if same else 'DO NOT match'} "
            "the bare loop's positions",
        )
    for key in keys[1:]:
        is_ours = key in OURS
        ratio = peak[key] / peak["bare"]
        report.rows.append(
            Row(
                "memory",
                "peak RSS (fresh process)",
                LABELS[key] if is_ours else f"(peer) {LABELS[key]}",
                LABELS["bare"],
                ratio,
                "<= 1.2" if is_ours else "",
                ratio <= 1.2 if is_ours else None,
            )
        )
        report.rows.append(
            Row(
                "memory",
                "peak RSS added by the call",
                LABELS[key] if is_ours else f"(peer) {LABELS[key]}",
                LABELS["bare"],
                added[key] / added["bare"],
            )
        )
    for key in OURS if looped else ():
        # Above the RSS before the first call: the single-call rows already count imports.
        ratio = looped[key].added_kib / looped["bare"].added_kib
        report.rows.append(
            Row(
                "memory",
                f"peak RSS added by {calls} calls of {count // calls:,} inputs, each result "
                "dropped before the next",
                LABELS[key],
                LABELS["bare"],
                ratio,
                "<= 1.2",
                ratio <= 1.2,
            )
        )
    for key, result in looped.items():
        report.note(
            "memory",
            f"{LABELS[key]}, {calls} calls of {count // calls} inputs, each result dropped "
            f"before the next call: peak {result.peak_kib / 1024:.0f} MiB "
            f"({result.added_kib / 1024:.0f} MiB above the RSS before the first call)",
        )


# -- output --------------------------------------------------------------------------------


def rotate(keys: Sequence[str], by: int) -> list[str]:
    """Each round starts with a different contender, so warm-up and drift are shared out."""
    by %= len(keys)
    return [*keys[by:], *keys[:by]]


def markdown(report: Report, args: argparse.Namespace, command: str, took: float) -> str:
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    versions = ", ".join(
        f"{name} {version(name)}"
        for name in (
            "nebulablock-embeddings",
            "langchain-openai",
            "llama-index-embeddings-openai",
            "openai",
            "langchain-core",
            "llama-index-core",
            "requests",
            "orjson",
        )
    )
    lines = [
        "# Benchmarks: nebulablock-embeddings next to the OpenAI-compatible integrations",
        "",
        f"Generated by `{command}` on {today} ({took / 60:.1f} min), Python "
        f"{platform.python_version()} on {os.cpu_count()} CPU cores ({platform.machine()}).",
        "",
        f"Versions: {versions}.",
        "",
        "Every client talks to the same local emulator (`python -m nebula_core.testing`, a "
        "separate process, `data` in shuffled order like the service), with the same inputs "
        "and 32 inputs per request. Ratios are ours / theirs: below 1 means ours is faster or "
        "smaller. All numbers of one table come from one run; absolute times depend on the "
        "machine (this one may be shared) and are not quoted.",
        "",
        "| Scenario | Measure | Ours | Compared with | Ratio | Target | Met |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report.rows:
        smaller = "smaller" if "RSS" in row.measure else "faster"
        if row.scenario == "CPU-bound":
            smaller = "less"
        ratio = f"{row.ratio:.2f}" if row.plain else describe_ratio(row.ratio, smaller)
        lines.append(
            f"| {row.scenario} | {row.measure} | {row.ours} | {row.theirs} | {ratio} | "
            f"{row.target} | {row.verdict()} |"
        )
    if report.placement:
        lines += [
            "",
            "## Vectors next to their own text (the same run's checking calls)",
            "",
            "The emulator, like the service, returns `data` in shuffled order; each result is "
            "compared with the bare loop's, which places vectors by `index`.",
            "",
            "| Client | sync | async |",
            "|---|---|---|",
        ]
        for key in LABELS:
            cells = []
            for call in ("sync", "async"):
                got = report.placement.get((key, call))
                cells.append(f"{got[0]:,} of {got[1]:,}" if got else "")
            if any(cells):
                lines.append(f"| {LABELS[key]} | {cells[0]} | {cells[1]} |")
    lines += ["", "## Settings", ""]
    lines += [
        f"- Latency-bound: {args.latency_inputs} inputs, {args.latency:g} s per request, median "
        f"of {args.latency_rounds} round(s). Ours: `max_concurrency=8`, sync and async. "
        "`OpenAIEmbeddings(model=..., base_url=..., api_key=..., "
        "check_embedding_ctx_length=False, chunk_size=32)` has no concurrency setting: its "
        "`embed_documents` and `aembed_documents` send one chunk after another. "
        "`OpenAIEmbedding(model_name=..., api_base=..., embed_batch_size=32, num_workers=8)`: "
        "`num_workers` bounds the async fan-out of `aget_text_embedding_batch` (at 8, equal "
        "to ours); its sync `get_text_embedding_batch` is sequential. `model=` only accepts "
        "OpenAI model names, so a NebulaBlock id goes in `model_name=`; "
        "`OpenAILikeEmbedding` is a separate package (`llama-index-embeddings-openai-like`), "
        "not installed here.",
        f"- CPU-bound: {args.cpu_inputs} inputs of a 1,024-dimension model, no latency, one "
        f"request in flight (ours `max_concurrency=1`): the least client CPU time "
        f"(`time.process_time`, all threads of the benchmark process) of {args.cpu_rounds} "
        "interleaved rounds with Python's cyclic GC off during each call "
        f"({min(args.cpu_rounds, args.cpu_peer_rounds)} for the peers, whose runs are ~30x "
        "longer), and as many again with the GC on for ours and the bare loop; other "
        "processes on the machine only ever add time. "
        "The bare loop is `client_overhead.bare_loop`.",
        f"- Scale: {args.scale_inputs} short inputs, `aembed_documents` with "
        f"`max_concurrency=32`, {args.scale_latency * 1000:g} ms per request, in a fresh process"
        + (
            "; the peer is `OpenAIEmbedding.aget_text_embedding_batch` with `num_workers=32`."
            if args.scale_peers
            else " (`--scale-peers` adds llama-index's `OpenAIEmbedding`, `num_workers=32`)."
        ),
        f"- Memory: {args.memory_inputs} inputs of a 1,024-dimension model, each client in a "
        "fresh process (`_rss_probe.py`), peak RSS from the kernel's high-water mark "
        "(`VmHWM`); ours with `max_concurrency=8`. 'Added by the call' is the high-water mark "
        "during the call minus the RSS just before it (after imports and a one-text warm-up). "
        f"The ingestion-loop probe sends the same inputs as {args.memory_calls} sync calls and "
        "drops each call's vectors before the next call.",
        "- The openai SDK asks for `encoding_format=base64`; NebulaBlock does not document "
        "it and the emulator, like the service, answers with float JSON, so every client here "
        "parses float JSON.",
    ]
    for scenario, notes in report.notes.items():
        lines += ["", f"## Details: {scenario}", ""]
        lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def print_table(report: Report) -> None:
    print("\nratio = ours / theirs (below 1: ours faster or smaller)")
    width = max(len(f"{r.scenario}: {r.measure}") for r in report.rows)
    for row in report.rows:
        label = f"{row.scenario}: {row.measure}".ljust(width)
        met = "" if row.met is None else ("  target met" if row.met else "  TARGET MISSED")
        print(f"{label}  {row.ratio:7.3f}  {row.ours}  /  {row.theirs}{met}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="scaled-down inputs and rounds")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument("--latency", type=float, default=0.1, help="s per request (latency)")
    parser.add_argument("--latency-inputs", type=int)
    parser.add_argument("--latency-rounds", type=int)
    parser.add_argument("--cpu-inputs", type=int)
    parser.add_argument("--cpu-rounds", type=int)
    parser.add_argument("--cpu-peer-rounds", type=int)
    parser.add_argument("--scale-inputs", type=int)
    parser.add_argument("--scale-latency", type=float, default=0.02)
    parser.add_argument("--scale-peers", action="store_true", help="also run llama-index at scale")
    parser.add_argument("--memory-inputs", type=int)
    parser.add_argument(
        "--memory-calls", type=int, default=4, help="calls of the ingestion-loop memory probe"
    )
    parser.add_argument("--output", type=Path, default=HERE / "results.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    full = {
        "latency_inputs": 1024,
        "latency_rounds": 3,
        "cpu_inputs": 2048,
        "cpu_rounds": 15,
        "cpu_peer_rounds": 3,
        "scale_inputs": 100_000,
        "memory_inputs": 20_000,
    }
    quick = {
        "latency_inputs": 1024,
        "latency_rounds": 1,
        "cpu_inputs": 1024,
        "cpu_rounds": 5,
        "cpu_peer_rounds": 1,
        "scale_inputs": 10_000,
        "memory_inputs": 4_000,
    }
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(args.only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}; pick from {SCENARIOS}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    command = shlex.join([".venv/bin/python", "benchmarks/compare.py", *sys.argv[1:]])
    started = time.perf_counter()
    report = Report()
    runners: dict[str, Callable[[argparse.Namespace, Report], None]] = {
        "latency": latency_bound,
        "cpu": cpu_bound,
        "scale": scale,
        "memory": memory,
    }
    for name in SCENARIOS:
        if name in args.only:
            runners[name](args, report)
    print_table(report)
    if not args.no_write:
        args.output.write_text(markdown(report, args, command, time.perf_counter() - started))
        print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
