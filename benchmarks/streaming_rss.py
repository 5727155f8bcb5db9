"""Peak memory of streaming N inputs through `embed_iter` into a sink that drops them.

The emulator runs in its own process with base64 honoured (`--honour-encoding-format`), and each
N runs in a fresh client process, so one run's peak never includes another's. A flat peak in N
shows the stream holds a window of batches, not the corpus.

    python benchmarks/streaming_rss.py                     # 50,000 and 200,000 inputs
    python benchmarks/streaming_rss.py --sizes 5000 20000  # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _emulator_process import _WORDS, running_emulator
from _rss_probe import peak_kib

from nebula_core import NebulaClient

HERE = Path(__file__).resolve().parent

MODEL = "WhereIsAI/UAE-Large-V1"  # 1,024 dimensions
TARGET_MB = 400
FLATNESS = 0.10


def chunks(count: int, words: int = 40) -> Iterator[str]:
    """The same chunk-sized texts as `sample_texts`, produced one at a time (no list)."""
    for i in range(count):
        yield f"Chunk {i}: " + " ".join(_WORDS[(i * 7 + j * 3) % len(_WORDS)] for j in range(words))


def child(count: int, base_url: str, api_key: str, output: str, batch_size: int) -> None:
    """Stream `count` inputs and print one JSON line: peak RSS, wall time, what was seen."""
    client = NebulaClient(api_key=api_key, base_url=base_url, encoding_format="base64")
    seen = 0
    width = 0
    started = time.perf_counter()
    for batch in client.embed_iter(chunks(count), MODEL, batch_size, output=output):  # type: ignore[call-overload]
        if batch.start != seen:
            raise SystemExit(f"batch at {batch.start}, expected {seen}")
        seen += len(batch.embeddings)
        width = len(batch.embeddings[0])
        del batch  # the sink: a vector store write would go here
    wall = time.perf_counter() - started
    peak = peak_kib()
    print(json.dumps({"n": count, "peak_kib": peak, "wall_s": wall, "seen": seen, "dims": width}))


def run(count: int, base_url: str, api_key: str, output: str, batch_size: int) -> dict[str, float]:
    command = [
        sys.executable, __file__, "--child", str(count), "--base-url", base_url,
        "--api-key", api_key, "--output", output, "--batch-size", str(batch_size),
    ]  # fmt: skip
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["seen"] != count:
        raise SystemExit(f"only {result['seen']} of {count} vectors came out")
    return result


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000])
    parser.add_argument("--outputs", nargs="+", default=["numpy", "list"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--output-file", default=str(HERE / "results-streaming.md"))
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--api-key", help=argparse.SUPPRESS)
    parser.add_argument("--output", default="numpy", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.base_url, args.api_key, args.output, args.batch_size)
        return

    rows: list[str] = []
    verdicts: list[str] = []
    with running_emulator(flags=["--honour-encoding-format"]) as emulator:
        for output in args.outputs:
            results = [
                run(n, emulator.base_url, emulator.api_key, output, args.batch_size)
                for n in args.sizes
            ]
            for r in results:
                rows.append(
                    f"| {output} | {r['n']:,} | {r['dims']} | {r['peak_kib'] / 1024:.1f} | "
                    f"{r['wall_s']:.1f} |"
                )
                print(rows[-1], flush=True)
            peaks = [r["peak_kib"] / 1024 for r in results]
            growth = max(peaks) / min(peaks) - 1
            flat = growth <= FLATNESS
            small = max(peaks) < TARGET_MB
            verdicts.append(
                f'- `output="{output}"`: peaks differ {growth:.1%} between {args.sizes[0]:,} and '
                f"{args.sizes[-1]:,} inputs (target <= {FLATNESS:.0%}: "
                f"{'met' if flat else '**not met**'}); largest peak {max(peaks):.0f} MB "
                f"(target < {TARGET_MB} MB: {'met' if small else '**not met**'})."
            )
    command = "python benchmarks/streaming_rss.py " + " ".join(sys.argv[1:])
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = "\n".join(
        [
            "# Streaming: peak RSS of `embed_iter` into a sink that drops every batch",
            "",
            f"Generated by `{command.strip()}` on {when} at commit {_commit()}, "
            f"Python {sys.version.split()[0]} on {os.cpu_count()} CPU "
            "cores (shared with other work).",
            "",
            "The emulator (`python -m nebula_core.testing --honour-encoding-format`) runs in its "
            "own process and answers base64; the client asks for base64, streams "
            f"`batch_size={args.batch_size}` batches with the default window "
            "(2 x max_concurrency = 8 batches) from a generator of chunk-sized texts, and drops "
            "each batch. Peak RSS is the client process's `VmHWM`, one fresh process per row.",
            "",
            "| output | inputs | dims | peak RSS (MB) | wall (s) |",
            "|---|---|---|---|---|",
            *rows,
            "",
            *verdicts,
            "",
        ]
    )
    Path(args.output_file).write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
