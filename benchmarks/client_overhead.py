"""Client CPU time next to a bare `requests` + `orjson` loop doing the same requests.

The emulator runs in its own process so only the client's own CPU is counted. Both sides send
2,048 inputs to a 1,024-dimension model in batches of 64, one request in flight; each is run
several times, alternating. The best round of each side is compared (CPU time only grows
under contention from other processes, so the minimum is the least noisy estimate); medians
are printed too.

    .venv/bin/python benchmarks/client_overhead.py [--rounds 7] [--inputs 2048]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _emulator_process import emulator_process, sample_texts

from nebula_core import NebulaClient

MODEL = "WhereIsAI/UAE-Large-V1"
BATCH = 64


def bare_loop(
    base_url: str, api_key: str, texts: list[str], *, batch_size: int = BATCH, model: str = MODEL
) -> list[list[float]]:
    """What a careful user would write by hand: one session, orjson, vectors placed by index."""
    session = requests.Session()
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    vectors: list[list[float]] = [[] for _ in texts]
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        body = orjson.dumps({"model": model, "input": batch})
        response = session.post(f"{base_url}/embeddings", data=body, headers=headers, timeout=60)
        response.raise_for_status()
        for item in orjson.loads(response.content)["data"]:
            vectors[start + item["index"]] = item["embedding"]
    session.close()
    return vectors


def cpu_seconds(run: Callable[[], list[list[float]]]) -> tuple[float, list[list[float]]]:
    started = time.process_time()
    vectors = run()
    return time.process_time() - started, vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--inputs", type=int, default=2048)
    args = parser.parse_args()
    texts = sample_texts(args.inputs)

    with emulator_process() as (base_url, api_key):
        client = NebulaClient(api_key=api_key, base_url=base_url, max_concurrency=1)

        def ours() -> list[list[float]]:
            return client.embed(texts, model=MODEL, batch_size=BATCH).embeddings

        def bare() -> list[list[float]]:
            return bare_loop(base_url, api_key, texts)

        expected = bare()  # also warms the emulator's vector cache
        assert ours() == expected, "the client and the bare loop disagree"
        ours_times, bare_times = [], []
        for _ in range(args.rounds):
            bare_times.append(cpu_seconds(bare)[0])
            ours_times.append(cpu_seconds(ours)[0])
        client.close()

    best = min(ours_times) / min(bare_times)
    median = statistics.median(ours_times) / statistics.median(bare_times)
    print(f"inputs: {len(texts)} x 1024 dims, batch {BATCH}, one request in flight")
    print(f"rounds: {args.rounds}, alternating; client CPU time (time.process_time)")
    print(f"ratio client / bare requests+orjson loop: {best:.3f} best-of, {median:.3f} median")


if __name__ == "__main__":
    main()
