"""`python -m nebula_core.testing`: serve the emulator until SIGINT or SIGTERM.

Prints one line a shell or a test harness can read, e.g.
`NEBULA_BASE_URL=http://127.0.0.1:8765/v1 NEBULA_API_KEY=ak_emulator_key`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from nebula_core.testing._emulator import NebulaEmulator


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nebula_core.testing",
        description="Serve a local emulator of NebulaBlock's embeddings service.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--api-key", default="ak_emulator_key")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    parser.add_argument("--max-inputs", type=int, default=256, help="inputs per request (413)")
    parser.add_argument("--no-shuffle", action="store_true", help="keep `data` in input order")
    parser.add_argument("--seed", type=int, default=0, help="seed of the response shuffle")
    parser.add_argument("--verbose", action="store_true", help="log each request to stderr")
    args = parser.parse_args(argv)

    emulator = NebulaEmulator(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        latency=args.latency,
        max_inputs_per_request=args.max_inputs,
        shuffle=not args.no_shuffle,
        seed=args.seed,
        quiet=not args.verbose,
    )
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        emulator.start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"NEBULA_BASE_URL={emulator.base_url} NEBULA_API_KEY={emulator.api_key}", flush=True)
        while not stop.wait(0.5):  # a timed wait lets the signal handler run promptly
            pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
