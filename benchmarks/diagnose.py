"""Where the client's CPU goes beyond the bare loop's: the measurements behind results.md.

Runs each client once more under instruments instead of a stopwatch, against the emulator in
its own process (no latency, one request in flight, 32 inputs per request):

- cyclic garbage: objects only the cyclic GC can free, left behind by one call; anything here
  keeps its referents (such as the call's vectors) alive after the call returns;
- GC collections during one call, and the share of its CPU time they took;
- the costs per request of requests' environment lookup (proxies, CA bundle, netrc), which
  every requests-based client pays, and of the numeric check on each vector;
- optionally (`--profile`) a pyinstrument profile of one call.

    .venv/bin/python benchmarks/diagnose.py [--inputs 2048] [--profile core]
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import sys
import time
import timeit
from pathlib import Path

import orjson
import requests
from requests.utils import get_netrc_auth

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _contenders import LABELS, OURS, Setup, build
from _emulator_process import running_emulator, sample_texts
from _rss_probe import GcClock

MODEL = "WhereIsAI/UAE-Large-V1"


def cyclic_garbage(embed: object, texts: list[str]) -> collections.Counter[str]:
    """The objects one call leaves for the cyclic GC, by type."""
    assert callable(embed)
    gc.collect()
    gc.disable()
    try:
        vectors = embed(texts)
        del vectors
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        found = collections.Counter(type(item).__name__ for item in gc.garbage)
        # The call's own result, kept alive by a cycle after the caller dropped it.
        found["(of which result vectors)"] = sum(
            1 for item in gc.garbage if type(item) is list and item and type(item[0]) is float
        )
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    return found


def per_call_us(function: object, number: int = 2000) -> float:
    assert callable(function)
    runs = timeit.repeat(function, number=number, repeat=5, timer=time.process_time)
    return min(runs) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--inputs", type=int, default=2048)
    parser.add_argument("--profile", choices=["bare", *OURS], help="pyinstrument one call")
    args = parser.parse_args()
    texts = sample_texts(args.inputs)
    clock = GcClock()

    with running_emulator() as emu:
        setup = Setup(emu.base_url, emu.api_key, MODEL, batch_size=32, concurrency=1)
        contenders = {key: build(key, setup) for key in ("bare", *OURS)}
        for contender in contenders.values():
            contender.embed(texts)  # warm: connections, lazy imports, the emulator's cache

        requests_per_call = -(-len(texts) // 32)
        print(f"{len(texts)} inputs x 1024 dims, 32 per request ({requests_per_call} requests)\n")
        print("cyclic garbage left by one call (freed only when the cyclic GC runs):")
        for key, contender in contenders.items():
            found = cyclic_garbage(contender.embed, texts)
            kept = found.pop("(of which result vectors)")
            top = ", ".join(f"{name} {count}" for name, count in found.most_common(6) if count)
            print(
                f"  {LABELS[key]}: {sum(found.values())} objects{': ' + top if top else ''}"
                f"{f'; {kept} of the lists are result vectors' if kept else ''}"
            )

        print("\ncyclic GC during one call (GC on):")
        for key, contender in contenders.items():
            gc.collect()
            clock.reset()
            started = time.process_time()
            vectors = contender.embed(texts)
            cpu = time.process_time() - started
            del vectors
            print(
                f"  {LABELS[key]}: {clock.collections} collections, "
                f"{clock.seconds / cpu:.1%} of the call's CPU time"
            )

        session = requests.Session()
        url = f"{emu.base_url}/embeddings"
        env = per_call_us(lambda: session.merge_environment_settings(url, {}, None, None, None))
        netrc = per_call_us(lambda: get_netrc_auth(url))
        body = contenders["bare"].embed(texts[:32])
        vectors_json = orjson.dumps({"data": [{"embedding": v} for v in body]})
        parsed = [item["embedding"] for item in orjson.loads(vectors_json)["data"]]
        check = per_call_us(lambda: [sum(vector) for vector in parsed], number=500)
        parse = per_call_us(lambda: orjson.loads(vectors_json), number=200)
        print(f"\nper request, in this process ({len(os.environ)} environment variables):")
        print(f"  requests' environment lookup (merge_environment_settings): {env:.0f} us")
        print(f"  requests' netrc lookup (get_netrc_auth): {netrc:.0f} us")
        print(f"  orjson.loads of 32 x 1024 floats: {parse:.0f} us")
        print(f"  sum() over each of the 32 vectors (the numeric check): {check:.0f} us")

        if args.profile:
            from pyinstrument import Profiler  # noqa: PLC0415 - only when asked for

            profiler = Profiler(interval=0.0005)
            profiler.start()
            contenders[args.profile].embed(texts)
            profiler.stop()
            print(profiler.output_text(color=False))
        for contender in contenders.values():
            contender.close()


if __name__ == "__main__":
    main()
