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

from nebula_core.testing._bodies import RATE_LIMIT_BODIES
from nebula_core.testing._emulator import DEFAULT_MAX_BODY_BYTES, NebulaEmulator
from nebula_core.testing._encoding import EXTRA_FIELDS, VECTOR_STYLES
from nebula_core.testing._long_inputs import LONG_INPUT_MODES


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
    _add_realism_options(parser)
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
        capacity=args.capacity,
        seconds_per_request=args.seconds_per_request,
        seconds_per_input=args.seconds_per_input,
        seconds_per_token=args.seconds_per_token,
        requests_per_minute=args.requests_per_minute,
        tokens_per_minute=args.tokens_per_minute,
        rate_limit_algorithm=args.rate_limit_algorithm,
        rate_limit_time_scale=args.rate_limit_time_scale,
        rate_limit_headers=args.rate_limit_headers,
        rate_limit_body=args.rate_limit_body,
        max_input_tokens=args.max_input_tokens,
        long_input=args.long_input,
        max_body_bytes=args.max_body_bytes,
        honour_encoding_format=args.honour_encoding_format,
        extra_fields=args.extra_fields,
        idle_timeout=args.idle_timeout,
        vectors=args.vectors,
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


def _add_realism_options(parser: argparse.ArgumentParser) -> None:
    """The flags of the behaviours that are off by default (see docs/emulator.md)."""
    group = parser.add_argument_group("realism (all off by default)")
    add = group.add_argument
    add("--capacity", type=int, help="requests computed at once; the rest queue")
    add("--seconds-per-request", type=float, default=0.0, help="network round trip")
    add("--seconds-per-input", type=float, default=0.0, help="compute time per input")
    add("--seconds-per-token", type=float, default=0.0, help="compute time per token")
    add("--requests-per-minute", type=int, help="per-key request limit (429 above it)")
    add("--tokens-per-minute", type=int, help="per-key token limit (429 above it)")
    add("--rate-limit-algorithm", choices=["bucket", "window"], default="bucket")
    add("--rate-limit-time-scale", type=float, default=1.0, help="60: a minute lasts 1 s")
    add("--rate-limit-headers", action="store_true", help="send x-ratelimit-* headers")
    add("--rate-limit-body", choices=list(RATE_LIMIT_BODIES), default="openai")
    add("--max-input-tokens", type=int, help="token limit per input (default: the model's)")
    add("--long-input", choices=list(LONG_INPUT_MODES), help="how over-long inputs are answered")
    add(
        "--max-body-bytes",
        type=int,
        nargs="?",
        const=DEFAULT_MAX_BODY_BYTES,
        help=f"proxy body limit, HTML 413 above it (no value: {DEFAULT_MAX_BODY_BYTES})",
    )
    add("--honour-encoding-format", action="store_true", help="answer base64 when asked")
    add("--extra-fields", choices=list(EXTRA_FIELDS), default="allow", help="forbid: FastAPI 422")
    add("--idle-timeout", type=float, help="close keep-alive connections idle this long")
    add("--vectors", choices=list(VECTOR_STYLES), default="unit", help="raw: float16 values")


if __name__ == "__main__":
    sys.exit(main())
