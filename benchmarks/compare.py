"""This project next to the OpenAI-compatible integrations a user would otherwise point at the
same server, on a realistic model of that server, with every figure of benchmarks/results.md.

The emulator runs in its own process (`_emulator_process.py`), so a client's CPU time and
memory are its own. It models a GPU service: a network round trip, compute time per input,
finite capacity (the rest queue), `data` in shuffled order, base64 answered when asked (as
OpenAI-compatible servers do), and, where a scenario says so, per-key rate limits and
per-input token limits. Scenarios:

- gpu: 2,048 chunks of a 1,024-dim model, 30 ms round trip + 2 ms per input, capacity 4; wall
  time of every client at its DEFAULTS and of the peers TUNED to our batch size, sync and
  async, next to the server-bound ideal; and where each client put each vector;
- tier: a corpus that needs minutes of a tier's tokens-per-minute, time-compressed, the limit
  unknown to the clients, with and without x-ratelimit headers: achieved throughput as a
  fraction of the limit, and the share of requests answered 429;
- long: 1% of the chunks exceed the model's 512 tokens, answered with a vLLM-style 400;
- cpu: client CPU time of 2,048 x 1,024-dim vectors (alternating rounds, best and spread),
  and `codec.py` (base64 -> numpy/lists vs the bare requests+orjson float loop, wire bytes);
- memory: peak RSS of each client in a fresh process (alternating rounds, best and spread);
- scale: 100,000 short inputs through our async path, vs the ideal wall time.

    make compare                                          # everything, writes results.md
    .venv/bin/python benchmarks/compare.py --quick --no-write   # scaled down, print only
    .venv/bin/python benchmarks/compare.py --only gpu,tier --output /tmp/results.md
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gc
import importlib.metadata
import logging
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _contenders import LABELS, Setup, build
from _emulator_process import RunningEmulator, running_emulator, sample_texts

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODEL = "WhereIsAI/UAE-Large-V1"  # 1,024 dimensions, 512 tokens per input
SCENARIOS = ("gpu", "tier", "long", "cpu", "memory", "scale")
Vectors = list[list[float]]

# The issue-14 server: 30 ms round trip + 2 ms per input, 4 requests computed at once.
ROUND_TRIP, PER_INPUT, CAPACITY = 0.03, 0.002, 4
GPU: dict[str, Any] = {
    "capacity": CAPACITY,
    "seconds_per_request": ROUND_TRIP,
    "seconds_per_input": PER_INPUT,
    "honour_encoding_format": True,
}
OUR_BATCH = 64  # NebulaClient / NebulaEmbeddings / NebulaEmbedding default batch size
OUR_CONCURRENCY = 8  # their default max_concurrency


# -- results -------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: ours / theirs (below 1 means ours is faster or smaller)."""

    scenario: str
    measure: str
    ours: str
    theirs: str
    ratio: float
    spread: str = ""
    target: str = ""
    met: bool | None = None
    plain: bool = False  # a multiple of an ideal or a fraction, not a comparison

    def verdict(self) -> str:
        return "" if self.met is None else ("yes" if self.met else "**no**")


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)
    tables: dict[str, list[str]] = field(default_factory=dict)
    # (client, call) -> (vectors next to their own text, inputs)
    placement: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)

    def note(self, scenario: str, line: str) -> None:
        self.notes.setdefault(scenario, []).append(line)
        print(f"  {line}", flush=True)

    def row(self, row: Row) -> None:
        self.rows.append(row)
        met = "" if row.met is None else ("  met" if row.met else "  MISSED")
        print(f"  {row.measure}: {row.ours} / {row.theirs} = {row.ratio:.3f}{met}", flush=True)


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


def span(values: Sequence[float], unit: str = "s", scale: float = 1.0, digits: int = 2) -> str:
    """`1.05-1.21 s`: the range of a measurement over its rounds."""
    return f"{min(values) * scale:.{digits}f}-{max(values) * scale:.{digits}f} {unit}".rstrip()


def rotate(keys: Sequence[str], by: int) -> list[str]:
    """Each round starts with a different arm, so warm-up and drift are shared out."""
    by %= len(keys)
    return [*keys[by:], *keys[:by]]


# -- correctness ---------------------------------------------------------------------------


def placed_right(vectors: Any, reference: Vectors) -> int:
    """How many vectors sit at the position of their own text (first 8 coordinates; float32
    answers differ from float JSON in the 8th digit)."""
    if len(vectors) != len(reference):
        return 0
    return sum(
        1
        for got, want in zip(vectors, reference, strict=True)
        if all(abs(float(x) - y) <= 1e-6 for x, y in zip(got[:8], want[:8], strict=True))
    )


# -- scenario: the GPU-like server, defaults and tuned ------------------------------------


@dataclass(frozen=True)
class Arm:
    key: str  # name in the tables
    contender: str  # _contenders key
    batch: int | None  # None: the library's default
    concurrency: int | None
    label: str


def gpu_arms() -> list[Arm]:
    return [
        Arm("nebula_lc", "nebula_lc", None, None, "NebulaEmbeddings, defaults"),
        Arm("nebula_li", "nebula_li", None, None, "NebulaEmbedding, defaults"),
        Arm("openai_lc", "openai_lc", None, None, "OpenAIEmbeddings, defaults (chunk_size=1000)"),
        Arm(
            "openai_li", "openai_li", None, None, "OpenAIEmbedding, defaults (embed_batch_size=100)"
        ),
        Arm("openai_lc_tuned", "openai_lc", OUR_BATCH, None, "OpenAIEmbeddings, chunk_size=64"),
        Arm(
            "openai_li_tuned",
            "openai_li",
            OUR_BATCH,
            OUR_CONCURRENCY,
            "OpenAIEmbedding, embed_batch_size=64, num_workers=8",
        ),
    ]


def gpu(args: argparse.Namespace, report: Report) -> None:
    count, rounds = args.gpu_inputs, args.gpu_rounds
    texts = sample_texts(count, seed=1)
    ideal = count * PER_INPUT / CAPACITY + ROUND_TRIP
    arms = gpu_arms()
    print(
        f"\n[gpu] {count} inputs x 1024 dims; {ROUND_TRIP * 1000:g} ms round trip + "
        f"{PER_INPUT * 1000:g} ms per input, capacity {CAPACITY}; server-bound ideal "
        f"{ideal:.3f} s; {rounds} rounds",
        flush=True,
    )
    with running_emulator(**GPU) as emu:
        contenders = {
            arm.key: build(
                arm.contender, Setup(emu.base_url, emu.api_key, MODEL, arm.batch, arm.concurrency)
            )
            for arm in arms
        }
        reference = build("bare", Setup(emu.base_url, emu.api_key, MODEL, 64, 1)).embed(texts)
        warm_up = texts[:8]  # imports, connections; the emulator's vectors are computed lazily
        for arm in arms:
            contenders[arm.key].embed(warm_up)
        sync: dict[str, list[float]] = {arm.key: [] for arm in arms}
        keys = [arm.key for arm in arms]
        for round_ in range(rounds):
            for key in rotate(keys, round_):
                gc.collect()
                started = time.perf_counter()
                vectors = contenders[key].embed(texts)
                sync[key].append(time.perf_counter() - started)
                if round_ == 0:  # the first round's answers are the correctness check
                    report.placement[(key, "sync")] = (placed_right(vectors, reference), count)
                del vectors

        async def async_rounds() -> dict[str, list[float]]:
            times: dict[str, list[float]] = {key: [] for key in keys}
            for key in keys:  # warm-up inside this loop: async clients bind to it
                aembed = contenders[key].aembed
                assert aembed is not None
                await aembed(warm_up)
            for round_ in range(rounds):
                for key in rotate(keys, round_):
                    aembed = contenders[key].aembed
                    assert aembed is not None
                    gc.collect()
                    started = time.perf_counter()
                    vectors = await aembed(texts)
                    times[key].append(time.perf_counter() - started)
                    if round_ == 0:
                        report.placement[(key, "async")] = (placed_right(vectors, reference), count)
                    del vectors
            return times

        asyn = asyncio.run(async_rounds())
    settings = {arm.key: contenders[arm.key].settings for arm in arms}
    lines = [
        f"Server-bound ideal: {count:,} inputs x {PER_INPUT * 1000:g} ms / {CAPACITY} slots + "
        f"one {ROUND_TRIP * 1000:g} ms round trip = **{ideal:.3f} s**. Median of {rounds} "
        "alternating rounds, (min-max):",
        "",
        "| Client | settings | sync s | async s | sync / ideal | async / ideal |",
        "|---|---|---|---|---|---|",
    ]
    med = {
        (key, call): statistics.median(times[key])
        for call, times in (("sync", sync), ("async", asyn))
        for key in keys
    }
    for arm in arms:
        s, a = med[(arm.key, "sync")], med[(arm.key, "async")]
        lines.append(
            f"| {arm.label} | {settings[arm.key]} | {s:.2f} ({span(sync[arm.key], '')}) | "
            f"{a:.2f} ({span(asyn[arm.key], '')}) | {s / ideal:.2f} | {a / ideal:.2f} |"
        )
    report.tables["gpu"] = lines
    for ours in ("nebula_lc", "nebula_li"):
        for call, times in (("sync", sync), ("async", asyn)):
            ratio = med[(ours, call)] / ideal
            report.row(
                Row(
                    "gpu (defaults)",
                    f"{call} wall time vs server-bound ideal ({ideal:.2f} s)",
                    LABELS[ours],
                    "ideal",
                    ratio,
                    span(times[ours]),
                    "<= 1.3",
                    ratio <= 1.3,
                    plain=True,
                )
            )
    pairs = (("nebula_lc", "openai_lc"), ("nebula_li", "openai_li"))
    for kind, suffix in (("defaults", ""), ("peer tuned to batch 64", "_tuned")):
        for call, times in (("sync", sync), ("async", asyn)):
            for ours, peer in pairs:
                theirs = peer + suffix
                ratio = med[(ours, call)] / med[(theirs, call)]
                report.row(
                    Row(
                        "gpu (default vs default)"
                        if not suffix
                        else "gpu (ours default, peer tuned)",
                        f"{call} wall time",
                        LABELS[ours],
                        next(arm.label for arm in arms if arm.key == theirs),
                        ratio,
                        f"{span(times[ours])} vs {span(times[theirs])}",
                        "<= 1.0" if not suffix else "",
                        ratio <= 1.0 if not suffix else None,
                    )
                )
        del kind
    for call, times in (("sync", sync), ("async", asyn)):
        peers = [key for key in keys if key.startswith("openai_") and not key.endswith("_tuned")]
        fastest = min(peers, key=lambda key: med[(key, call)])
        for ours in ("nebula_lc", "nebula_li"):
            ratio = med[(ours, call)] / med[(fastest, call)]
            report.row(
                Row(
                    "gpu (default vs default)",
                    f"{call} wall time vs the fastest peer default",
                    LABELS[ours],
                    next(arm.label for arm in arms if arm.key == fastest),
                    ratio,
                    f"{span(times[ours])} vs {span(times[fastest])}",
                    "<= 1.0",
                    ratio <= 1.0,
                )
            )


# -- scenario: throughput at a tier's limit -----------------------------------------------


def tier(args: argparse.Namespace, report: Report) -> None:
    tpm, rpm, scale_ = args.tier_tpm, args.tier_rpm, args.tier_scale
    texts = sample_texts(args.tier_inputs, seed=2)
    per_second = tpm / 60 * scale_
    arms = [
        ("nebula_lc", "sync", args.tier_rounds),
        ("nebula_lc", "async", args.tier_rounds),
        ("openai_lc", "sync", args.tier_peer_rounds),
        ("openai_li", "sync", args.tier_peer_rounds),
        ("openai_li", "async", args.tier_peer_rounds),
    ]
    print(
        f"\n[tier] {len(texts)} inputs; limit {rpm} requests and {tpm:,} tokens a minute, "
        f"time x{scale_:g} ({per_second:,.0f} tokens/s); GPU-like server",
        flush=True,
    )
    lines = [
        "| Client (defaults) | call | x-ratelimit headers | runs | completed | tokens | wall s "
        "| achieved / limit (until it stopped) | requests | 429s | 429 share |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    summary: dict[tuple[str, str, bool], list[tuple[float, float, bool]]] = {}
    for headers in (False, True):
        options = dict(GPU) | {
            "tokens_per_minute": tpm,
            "requests_per_minute": rpm,
            "rate_limit_time_scale": scale_,
            "rate_limit_headers": headers,
        }
        with running_emulator(**options) as emu:
            for key, call, runs in arms:
                results: list[tuple[float, float, bool]] = []
                for _ in range(runs):
                    contender = build(key, Setup(emu.base_url, emu.api_key, MODEL, None, None))
                    emu.reset()  # a full allowance, fresh counters
                    started = time.perf_counter()
                    error = ""
                    try:
                        if call == "sync":
                            vectors = contender.embed(texts)
                        else:
                            assert contender.aembed is not None
                            vectors = asyncio.run(contender.aembed(texts))
                        assert len(vectors) == len(texts)
                    except Exception as exc:  # a peer that gives up is a result, not a crash
                        error = f"{type(exc).__name__}: {str(exc)[:80]}"
                    wall = time.perf_counter() - started
                    stats = emu.stats()
                    contender.close()
                    # The bucket starts full: a perfect client gets tpm at once, then the rate.
                    allowed = tpm + per_second * wall
                    achieved = stats["tokens"] / allowed
                    share = stats["rejected_429"] / max(1, stats["requests"])
                    results.append((achieved, share, not error))
                    lines.append(
                        f"| {LABELS[key]} | {call} | {'yes' if headers else 'no'} | 1 | "
                        f"{'yes' if not error else 'no: ' + error.replace('|', '/')} | "
                        f"{stats['tokens']:,} | {wall:.1f} | {achieved:.2f} | "
                        f"{stats['requests']} | {stats['rejected_429']} | {share:.1%} |"
                    )
                    print(f"  {lines[-1]}", flush=True)
                summary[(key, call, headers)] = results
    report.tables["tier"] = lines
    for (key, call, headers), results in summary.items():
        achieved = [r[0] for r in results]
        shares = [r[1] for r in results]
        failed = sum(1 for r in results if not r[2])
        ours = key.startswith("nebula")
        label = f"{LABELS[key]} {call}, headers {'on' if headers else 'off'}"
        spread = (
            f"{min(achieved):.2f}-{max(achieved):.2f} over {len(results)} runs"
            if len(results) > 1
            else "one run"
        )
        if failed:
            spread += f"; {failed} of {len(results)} run(s) FAILED, figure up to the failure"
        report.row(
            Row(
                "tier",
                "achieved throughput / tier limit",
                label if ours else f"(peer) {label}",
                "limit",
                min(achieved),
                spread,
                ">= 0.90" if ours else "",
                (min(achieved) >= 0.9 and not failed) if ours else None,
                plain=True,
            )
        )
        report.row(
            Row(
                "tier",
                "share of requests answered 429",
                label if ours else f"(peer) {label}",
                "requests",
                max(shares),
                f"{min(shares):.1%}-{max(shares):.1%}" if len(shares) > 1 else "one run",
                "<= 0.05" if ours else "",
                max(shares) <= 0.05 if ours else None,
                plain=True,
            )
        )


# -- scenario: long inputs (issue 13) ------------------------------------------------------


def long_inputs(args: argparse.Namespace, report: Report) -> None:
    count = args.long_inputs
    texts = sample_texts(count, seed=3)
    long_text = " ".join(["retrieval augmented generation pipelines chunk documents"] * 120)
    positions = list(range(50, count, 100))  # 1% of the chunks
    for position in positions:
        texts[position] = f"Long chunk {position}: {long_text}"
    print(
        f"\n[long] {count} inputs, {len(positions)} of them past 512 tokens; vLLM-style 400",
        flush=True,
    )
    lines = [
        "| Client | settings | completed | inputs embedded | wall s | requests | statuses |",
        "|---|---|---|---|---|---|---|",
    ]
    with running_emulator(**GPU, long_input="vllm") as emu:
        from langchain_nebula import NebulaEmbeddings  # noqa: PLC0415

        arms: list[tuple[str, str, Callable[[list[str]], Any]]] = []
        for policy in ("truncate", "average"):
            ours = NebulaEmbeddings(
                model=MODEL,
                api_key=emu.api_key,  # type: ignore[arg-type]
                base_url=emu.base_url,
                on_long_input=policy,  # type: ignore[arg-type]
            )
            arms.append((LABELS["nebula_lc"], f"on_long_input={policy!r}", ours.embed_documents))
        for key in ("openai_lc", "openai_li"):
            peer = build(key, Setup(emu.base_url, emu.api_key, MODEL, None, None))
            arms.append((LABELS[key], peer.settings, peer.embed))
        for label, settings, embed in arms:
            emu.reset()
            started = time.perf_counter()
            try:
                vectors = embed(texts)
                done, embedded = "yes", sum(1 for v in vectors if len(v) == 1024)
            except Exception as exc:
                done, embedded = f"no: {type(exc).__name__}: {str(exc)[:90]}", 0
            wall = time.perf_counter() - started
            stats = emu.stats()
            statuses = ", ".join(f"{k}: {v}" for k, v in sorted(stats["statuses"].items()))
            lines.append(
                f"| {label} | {settings} | {done.replace('|', '/')} | {embedded:,} of "
                f"{count:,} | {wall:.2f} | {stats['requests']} | {statuses} |"
            )
            print(f"  {lines[-1]}", flush=True)
            ok = done == "yes" and embedded == count
            if label.startswith("Nebula"):
                report.row(
                    Row(
                        "long inputs (1% > 512 tokens)",
                        f"inputs embedded, {settings}",
                        label,
                        "inputs",
                        embedded / count,
                        f"{wall:.2f} s, {stats['requests']} requests",
                        "1.0",
                        ok,
                        plain=True,
                    )
                )
            else:
                report.row(
                    Row(
                        "long inputs (1% > 512 tokens)",
                        "inputs embedded",
                        f"(peer) {label}, defaults",
                        "inputs",
                        embedded / count,
                        f"{'completed' if ok else 'failed'} after {wall:.2f} s, "
                        f"{stats['requests']} requests",
                        plain=True,
                    )
                )
    report.tables["long"] = lines


# -- scenario: client CPU ------------------------------------------------------------------


def cpu(args: argparse.Namespace, report: Report) -> None:
    count, rounds = args.cpu_inputs, args.cpu_rounds
    texts = sample_texts(count, seed=4)
    keys = ("bare", "core", "nebula_lc", "nebula_li", "openai_lc", "openai_li")
    print(
        f"\n[cpu] {count} inputs x 1024 dims, {OUR_BATCH} per request for every client, no "
        f"latency, base64 honoured; {rounds} alternating rounds per arm",
        flush=True,
    )
    with running_emulator(honour_encoding_format=True) as emu:
        contenders = {
            key: build(key, Setup(emu.base_url, emu.api_key, MODEL, OUR_BATCH, None))
            for key in keys
        }
        for key in keys:  # warm-up: imports, connections, the emulator's vector cache
            contenders[key].embed(texts)
        times: dict[str, list[float]] = {key: [] for key in keys}
        for round_ in range(rounds):
            for key in rotate(keys, round_):
                gc.collect()
                started = time.process_time()
                vectors = contenders[key].embed(texts)
                times[key].append(time.process_time() - started)
                del vectors
    best = {key: min(v) for key, v in times.items()}
    lines = [
        "| Client | settings | best ms | median ms | worst ms | best / bare |",
        "|---|---|---|---|---|---|",
    ]
    for key in keys:
        lines.append(
            f"| {LABELS[key]} | {contenders[key].settings} | {best[key] * 1000:.0f} | "
            f"{statistics.median(times[key]) * 1000:.0f} | {max(times[key]) * 1000:.0f} | "
            f"{best[key] / best['bare']:.2f} |"
        )
    report.tables["cpu"] = lines
    for ours in ("core", "nebula_lc", "nebula_li"):
        ratio = best[ours] / best["bare"]
        report.row(
            Row(
                "CPU",
                f"client CPU, best of {rounds} (base64 answers; the bare loop gets float JSON)",
                LABELS[ours],
                LABELS["bare"],
                ratio,
                f"{span(times[ours], 'ms', 1000, 0)} vs {span(times['bare'], 'ms', 1000, 0)}",
            )
        )
    for ours, peer in (("nebula_lc", "openai_lc"), ("nebula_li", "openai_li")):
        ratio = best[ours] / best[peer]
        report.row(
            Row(
                "CPU",
                f"client CPU, best of {rounds} (both ask for base64)",
                LABELS[ours],
                LABELS[peer],
                ratio,
                f"{span(times[ours], 'ms', 1000, 0)} vs {span(times[peer], 'ms', 1000, 0)}",
                "< 1.0",
                ratio < 1.0,
            )
        )
    # codec.py: base64 -> numpy/lists vs the bare float loop, and wire bytes (issue 14).
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "codec.md"
        subprocess.run(
            [sys.executable, str(HERE / "codec.py"), "--rounds", str(rounds), "--output", str(out)],
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
        codec = out.read_text().splitlines()
    # Demote its headings into this file's section.
    report.tables["codec"] = [
        line.replace("# ", "### ", 1) if line.startswith("# ") else line for line in codec[1:]
    ]
    for line in codec:
        if line.startswith("| NebulaClient, base64") or line.startswith("| float JSON, repr"):
            print(f"  {line}", flush=True)


# -- scenario: memory and scale (fresh processes) -----------------------------------------


@dataclass(frozen=True)
class Probe:
    """What one contender cost in a fresh process (see `_rss_probe.py`)."""

    peak_kib: int  # the process's peak RSS, imports included
    added_kib: int  # the peak during the call, minus the RSS just before it
    wall: float
    cpu: float
    dimensions: int
    fingerprint: list[list[float]]


def probe(
    emu: RunningEmulator,
    key: str,
    inputs: int,
    *,
    concurrency: int | None,
    batch: int,
    short: bool = False,
    use_async: bool = False,
    output: str = "list",
) -> Probe:
    """Run one contender in a fresh process (`_rss_probe.py`) and return its measurements."""
    command = [
        sys.executable, str(HERE / "_rss_probe.py"), key, emu.base_url, emu.api_key,
        "--model", MODEL, "--inputs", str(inputs), "--batch-size", str(batch),
        "--output", output,
    ]  # fmt: skip
    if concurrency is not None:
        command += ["--concurrency", str(concurrency)]
    if short:
        command.append("--short")
    if use_async:
        command.append("--async")
    completed = subprocess.run(command, capture_output=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{key} probe failed:\n{completed.stderr.decode()[-3000:]}")
    raw = orjson.loads(completed.stdout.splitlines()[-1])
    return Probe(
        peak_kib=raw["peak_kib"],
        added_kib=raw["call_peak_kib"] - raw["baseline_kib"],
        wall=raw["wall"],
        cpu=raw["cpu"],
        dimensions=raw["dimensions"],
        fingerprint=raw["fingerprint"],
    )


def memory(args: argparse.Namespace, report: Report) -> None:
    count, rounds = args.memory_inputs, args.memory_rounds
    keys = ("bare", "core", "nebula_lc", "nebula_li", "openai_lc", "openai_li")
    print(
        f"\n[memory] {count} inputs x 1024 dims, each client in its own process, "
        f"{rounds} alternating rounds",
        flush=True,
    )
    peak: dict[str, list[float]] = {key: [] for key in keys}
    added: dict[str, list[float]] = {key: [] for key in keys}
    fingerprints: dict[str, list[list[list[float]]]] = {key: [] for key in keys}
    with running_emulator(honour_encoding_format=True) as emu, contextlib.ExitStack() as stack:
        processes = {}
        for key in keys:
            command = [
                sys.executable, str(HERE / "_rss_probe.py"), key, emu.base_url, emu.api_key,
                "--model", MODEL, "--inputs", str(count), "--batch-size", str(OUR_BATCH),
                "--rounds",
            ]  # fmt: skip
            process = stack.enter_context(
                subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            )
            processes[key] = process
        for round_ in range(rounds):
            for key in rotate(keys, round_):
                process = processes[key]
                assert process.stdin is not None and process.stdout is not None
                process.stdin.write("go\n")
                process.stdin.flush()
                line = process.stdout.readline()
                if not line:
                    raise RuntimeError(f"the {key} memory probe died")
                raw = orjson.loads(line)
                peak[key].append(raw["call_peak_kib"] / 1024)
                added[key].append(raw["added_kib"] / 1024)
                fingerprints[key].append(raw["fingerprint"])
        for process in processes.values():
            assert process.stdin is not None
            process.stdin.close()
    reference = fingerprints["bare"][0]
    lines = [
        "| Client | peak RSS during the call MiB, best (min-max) | added by the first call MiB "
        "(later calls reuse memory the process already holds) | vectors in place |",
        "|---|---|---|---|",
    ]
    for key in keys:
        same = all(placed_right(f, reference) == len(reference) for f in fingerprints[key])
        lines.append(
            f"| {LABELS[key]} | {min(peak[key]):.0f} ({span(peak[key], '', 1, 0)}) | "
            f"{added[key][0]:.0f} | {'yes' if same else 'NO'} |"
        )
    report.tables["memory"] = lines
    for key in keys[1:]:
        ours = not key.startswith("openai")
        ratio = min(peak[key]) / min(peak["bare"])
        report.row(
            Row(
                "memory",
                f"peak RSS during the call (imports included), best of {rounds}",
                LABELS[key] if ours else f"(peer) {LABELS[key]}",
                LABELS["bare"],
                ratio,
                f"{span(peak[key], 'MiB', 1, 0)} vs {span(peak['bare'], 'MiB', 1, 0)}",
                "<= 1.2" if ours else "",
                ratio <= 1.2 if ours else None,
            )
        )
    for ours, peer in (("nebula_lc", "openai_lc"), ("nebula_li", "openai_li")):
        ratio = min(peak[ours]) / min(peak[peer])
        report.row(
            Row(
                "memory",
                f"peak RSS during the call (imports included), best of {rounds}",
                LABELS[ours],
                LABELS[peer],
                ratio,
                f"{span(peak[ours], 'MiB', 1, 0)} vs {span(peak[peer], 'MiB', 1, 0)}",
            )
        )


def scale(args: argparse.Namespace, report: Report) -> None:
    count, batch, concurrency, latency = args.scale_inputs, 32, 32, args.scale_latency
    requests = math.ceil(count / batch)
    ideal = math.ceil(requests / concurrency) * latency
    print(
        f"\n[scale] {count} short inputs x 1024 dims, {batch} per request, {latency:g} s per "
        f"request, async, max_concurrency {concurrency}; ideal {ideal:.2f} s",
        flush=True,
    )
    arms = (("core", "numpy"),)
    lines = [
        "| Client | output | wall s | x ideal | peak RSS MiB | client CPU s | emulator CPU s "
        "(whole probe, warm-up included) |",
        "|---|---|---|---|---|---|---|",
    ]
    with running_emulator(latency=latency, honour_encoding_format=True) as emu:
        server = psutil.Process(emu.pid)
        for key, output in arms:
            server_before = sum(server.cpu_times()[:2])
            result = probe(
                emu,
                key,
                count,
                concurrency=concurrency,
                batch=batch,
                short=True,
                use_async=True,
                output=output,
            )
            server_cpu = sum(server.cpu_times()[:2]) - server_before
            ratio = result.wall / ideal
            lines.append(
                f"| {LABELS[key]} `aembed` | {output} | {result.wall:.2f} | {ratio:.2f} | "
                f"{result.peak_kib / 1024:.0f} | {result.cpu:.2f} | {server_cpu:.2f} |"
            )
            print(f"  {lines[-1]}", flush=True)
            report.row(
                Row(
                    "scale",
                    f"async wall time, {count:,} inputs x 1,024 dims, output={output!r}",
                    LABELS[key],
                    f"ideal {ideal:.2f} s ({requests} requests x {latency * 1000:g} ms / "
                    f"{concurrency} in flight)",
                    ratio,
                    f"one run; peak RSS {result.peak_kib / 1024:.0f} MiB",
                    "<= 3.0" if output == "numpy" else "",
                    ratio <= 3.0 if output == "numpy" else None,
                    plain=True,
                )
            )
    report.tables["scale"] = lines


# -- output --------------------------------------------------------------------------------


def git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


SECTIONS = {
    "gpu": "GPU-like server: every client at its defaults, and the peers tuned",
    "tier": "Throughput at a tier's rate limit (limit unknown to the clients)",
    "long": "Long inputs: 1% of the chunks past the model's 512 tokens (issue 13)",
    "cpu": "Client CPU: 2,048 x 1,024-dim vectors",
    "codec": "base64 vs float JSON: client CPU and wire bytes (`benchmarks/codec.py`)",
    "memory": "Memory: peak RSS of each client in a fresh process",
    "scale": "Scale: 100,000 inputs x 1,024 dims (issue 14)",
}


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
            "numpy",
        )
    )
    dirty = (
        " (plus uncommitted changes)"
        if git(
            "status",
            "--porcelain",
            "--",
            "nebula_core",
            "langchain_nebula",
            "llama_index_nebula",
            "benchmarks/compare.py",
        )
        else ""
    )
    lines = [
        "# Benchmarks: nebulablock-embeddings next to the OpenAI-compatible integrations",
        "",
        f"Generated by `{command}` on {today} in {took / 60:.1f} min, commit "
        f"`{git('rev-parse', '--short', 'HEAD')}`{dirty} (last commit touching nebula_core: "
        f"`{git('log', '-1', '--format=%h', '--', 'nebula_core')}`), Python "
        f"{platform.python_version()} on {os.cpu_count()} CPU cores ({platform.machine()}); "
        "the machine may be shared with other work, so compare spreads before trusting a "
        "ratio.",
        "",
        f"Versions: {versions}.",
        "",
        "The server is the emulator (`nebula_core.testing`) in its own process: a network "
        "round trip plus compute time per input, at most `capacity` requests computed at once "
        "(the rest queue), `data` in shuffled order, `encoding_format: base64` honoured as "
        "OpenAI-compatible servers do. The peers are what a user would point at an "
        "OpenAI-compatible server: langchain-openai `OpenAIEmbeddings` and llama-index "
        "`OpenAIEmbedding`, both of which ask for base64. `OpenAIEmbeddings` runs with "
        "`check_embedding_ctx_length=False` everywhere: its default (True) tokenizes with "
        "tiktoken, whose encodings are downloaded from the internet on first use, which this "
        "machine cannot do (and token ids would mean nothing to a non-OpenAI model).",
        "",
        "Ratios are ours / theirs (below 1: ours faster or smaller); rows marked as plain "
        "figures are multiples of an ideal, fractions of a limit, or shares.",
        "",
        "| Scenario | Measure | Ours | Compared with | Ratio | Spread | Target | Met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report.rows:
        smaller = (
            "smaller" if "RSS" in row.measure else "less" if "CPU" in row.measure else "faster"
        )
        ratio = f"{row.ratio:.2f}" if row.plain else describe_ratio(row.ratio, smaller)
        lines.append(
            f"| {row.scenario} | {row.measure} | {row.ours} | {row.theirs} | {ratio} | "
            f"{row.spread} | {row.target} | {row.verdict()} |"
        )
    missed = [row for row in report.rows if row.met is False]
    behind = [
        row
        for row in report.rows
        if not row.plain and row.met is None and row.ratio > 1.005 and "(peer)" not in row.ours
    ]
    lines += ["", "## Where we are not ahead", ""]
    if not missed and not behind:
        lines.append("- Every target of this run was met, and no row has ours behind a peer.")
    for row in missed:
        lines.append(
            f"- Target missed: {row.scenario}, {row.measure}, {row.ours} vs {row.theirs}: "
            f"{row.ratio:.2f} (target {row.target})."
        )
    for row in behind:
        lines.append(
            f"- Behind (no target): {row.scenario}, {row.measure}, {row.ours} vs {row.theirs}: "
            f"{row.ratio:.2f}."
        )
    if report.placement:
        lines += [
            "",
            "## Vectors next to their own text when `data` comes back out of order",
            "",
            "The service does not promise the order of `data`; the emulator returns it "
            "shuffled. Each result of the gpu scenario's checking calls is compared with the "
            "bare loop's, which places vectors by `index` (measured on the emulator):",
            "",
            "| Client | settings | sync | async |",
            "|---|---|---|---|",
        ]
        for arm in gpu_arms():
            cells = []
            for call in ("sync", "async"):
                got = report.placement.get((arm.key, call))
                cells.append(f"{got[0]:,} of {got[1]:,}" if got else "")
            if any(cells):
                lines.append(f"| {arm.label} | | {cells[0]} | {cells[1]} |")
    for name, title in SECTIONS.items():
        if name in report.tables or name in report.notes:
            lines += ["", f"## {title}", ""]
            lines += report.tables.get(name, [])
            lines += [f"- {note}" for note in report.notes.get(name, [])]
    lines += ["", "## Other results files", ""]
    for name, how in (
        (
            "results-pacing.md",
            "regenerated by this command (`benchmarks/pacing_sim.py`, a "
            "simulation of the real pacer on a fake clock, deterministic)",
        ),
        (
            "results-streaming.md",
            "NOT regenerated by this command (`benchmarks/streaming_rss.py`); its own header "
            "gives its command, date and commit",
        ),
        (
            "results-query-latency.md",
            "NOT regenerated by this command "
            "(`benchmarks/query_latency.py`, query latency during ingestion); its own header "
            "gives its command, date and commit",
        ),
    ):
        path = HERE / name
        first = path.read_text().splitlines()[0].lstrip("# ") if path.exists() else "missing"
        lines.append(f"- `benchmarks/{name}` ({first}): {how}.")
    lines += [
        "",
        "## Streaming (issue 14)",
        "",
        "`embed_iter` streaming (peak RSS of 50,000 and 200,000 inputs, flat within 10% and "
        "under 400 MB) is measured by `benchmarks/streaming_rss.py`, not by this command (its "
        "rows take minutes); see `benchmarks/results-streaming.md`.",
        "",
        "## Settings",
        "",
        f"- gpu: {args.gpu_inputs:,} inputs (~45 tokens each, words shuffled), "
        f"{ROUND_TRIP * 1000:g} ms round trip + {PER_INPUT * 1000:g} ms per input, capacity "
        f"{CAPACITY}; median of {args.gpu_rounds} alternating rounds per arm, sync then async. "
        "Ours at defaults (batch 64, max_concurrency 4). Peers at defaults, then tuned to our "
        "batch size (and llama-index's `num_workers` to our max_concurrency). "
        "`OpenAIEmbeddings` has no concurrency setting; llama-index's sync path is sequential "
        "and its async path fans out `num_workers` batches (all at once when unset).",
        f"- tier: {args.tier_inputs:,} inputs against {args.tier_rpm} requests and "
        f"{args.tier_tpm:,} tokens a minute (NebulaBlock's free tier), the emulator's clock "
        f"x{args.tier_scale:g} (`rate_limit_time_scale`), token bucket starting full; "
        "achieved / limit = tokens answered / (one minute's allowance + the rate x wall "
        "time), i.e. the most a perfect client could get in that time. "
        f"{args.tier_rounds} run(s) per arm for ours, {args.tier_peer_rounds} for each peer; "
        "every client at its defaults and not told the limit.",
        f"- long: {args.long_inputs:,} inputs on the gpu server with `long_input='vllm'` "
        "(400 `maximum context length is 512 tokens`).",
        f"- cpu: {args.cpu_inputs:,} inputs, {OUR_BATCH} per request for every client, "
        "no latency, base64 honoured; client CPU is `time.process_time()` (all threads), "
        f"best of {args.cpu_rounds} rounds with every arm in every round (order rotated), GC "
        "on. The bare loop (`client_overhead.bare_loop`) asks for float JSON.",
        f"- memory: {args.memory_inputs:,} inputs, {OUR_BATCH} per request, each client in a "
        f"fresh process (`_rss_probe.py`), {args.memory_rounds} rounds with every arm in every "
        "round; peak RSS is the kernel's high-water mark (`VmHWM`), imports included.",
        f"- scale: {args.scale_inputs:,} short inputs, `aembed` with `max_concurrency=32`, "
        f"batch 32, {args.scale_latency * 1000:g} ms per request and no capacity limit (the "
        "ideal is requests x latency / 32), base64 honoured, in a fresh process. The ideal "
        "counts no CPU: on this 2-core machine the emulator (which computes and encodes "
        "every vector) and the client share the cores, so the emulator's CPU column bounds "
        "how close any client can come.",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="scaled-down inputs and rounds")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    for name in (
        "gpu-inputs", "gpu-rounds", "tier-inputs", "tier-rounds", "tier-peer-rounds",
        "long-inputs", "cpu-inputs", "cpu-rounds", "memory-inputs", "memory-rounds",
        "scale-inputs",
    ):  # fmt: skip
        parser.add_argument(f"--{name}", type=int)
    parser.add_argument("--tier-tpm", type=int, default=60_000)
    parser.add_argument("--tier-rpm", type=int, default=60)
    parser.add_argument("--tier-scale", type=float, default=10.0)
    parser.add_argument("--scale-latency", type=float, default=0.02)
    parser.add_argument("--output", type=Path, default=HERE / "results.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    full = {
        "gpu_inputs": 2048,
        "gpu_rounds": 2,
        "tier_inputs": 4000,  # ~180,000 tokens: three minutes of the free tier's TPM
        "tier_rounds": 1,
        "tier_peer_rounds": 1,
        "long_inputs": 2000,
        "cpu_inputs": 2048,
        "cpu_rounds": 9,
        "memory_inputs": 2048,
        "memory_rounds": 9,
        "scale_inputs": 100_000,
    }
    quick = full | {
        "gpu_rounds": 1,
        "tier_inputs": 2000,
        "tier_rounds": 1,
        "cpu_rounds": 3,
        "memory_inputs": 2000,
        "memory_rounds": 1,
        "scale_inputs": 10_000,
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
    logging.disable(logging.WARNING)  # retry and truncation warnings; the tables count them
    if os.environ.get("MAKELEVEL") and not sys.argv[1:]:
        command = "make compare"
    else:
        command = shlex.join([".venv/bin/python", "benchmarks/compare.py", *sys.argv[1:]])
    started = time.perf_counter()
    report = Report()
    runners: dict[str, Callable[[argparse.Namespace, Report], None]] = {
        "gpu": gpu,
        "tier": tier,
        "long": long_inputs,
        "cpu": cpu,
        "memory": memory,
        "scale": scale,
    }
    for name in SCENARIOS:
        if name in args.only:
            runners[name](args, report)
    if not args.no_write:
        subprocess.run(
            [sys.executable, str(HERE / "pacing_sim.py")], check=True, capture_output=True, cwd=ROOT
        )
    took = time.perf_counter() - started
    print(f"\ntook {took / 60:.1f} min")
    if not args.no_write:
        args.output.write_text(markdown(report, args, command, took))
        print(f"written to {args.output}")


if __name__ == "__main__":
    main()
