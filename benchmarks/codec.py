"""Client CPU and wire bytes of base64 vs float JSON answers, next to the bare requests+orjson loop.

A plain HTTP server in its own process answers every request with a prebuilt body for 64
inputs of a 1,024-dimension model (random unit vectors, `data` in reverse order), so only the
client's own CPU is measured (`time.process_time()`, every client thread included). Each
contender embeds 2,048 inputs (32 requests) per round; rounds alternate the contenders and the
best round counts (CPU time only grows under contention), with median and worst shown.

Float bodies come in the three ways servers print float32 vectors: Python's `repr` of the
widened double (`json.dumps(tensor.tolist())`: ~17 digits), the shortest float32 repr (serde,
~9 digits) and 7 decimals.

    .venv/bin/python benchmarks/codec.py [--rounds 9] [--output FILE]

`make compare` runs it and embeds the table in benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import base64
import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from client_overhead import bare_loop

from nebula_core import NebulaClient
from nebula_core._codec import decode_embeddings

BATCH = 64
DIMS = 1024
INPUTS = 2048
KEY = "ak_codec_benchmark"
FORMATS = ("b64", "repr", "f32", "dec7")


def _vectors() -> np.ndarray:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((BATCH, DIMS)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _float_text(vectors: np.ndarray, fmt: str) -> list[bytes]:
    if fmt == "repr":
        return [orjson.dumps(v.astype(np.float64).tolist()) for v in vectors]
    if fmt == "f32":
        return [
            b"[" + b",".join(np.format_float_positional(x, unique=True).encode() for x in v) + b"]"
            for v in vectors
        ]
    return [b"[" + b",".join(f"{x:.7f}".encode() for x in v.tolist()) + b"]" for v in vectors]


def build_bodies() -> dict[str, bytes]:
    """One 64-input answer per format; every item index-placed, sent in reverse order."""
    vectors = _vectors()
    usage = b'"usage":{"prompt_tokens":640,"total_tokens":640}'
    bodies = {}
    for fmt in FORMATS:
        if fmt == "b64":
            items = [b'"' + base64.b64encode(v.astype("<f4").tobytes()) + b'"' for v in vectors]
        else:
            items = _float_text(vectors, fmt)
        data = b",".join(
            b'{"object":"embedding","index":%d,"embedding":%s}' % (i, item)
            for i, item in reversed(list(enumerate(items)))
        )
        bodies[fmt] = b'{"object":"list","model":"m","data":[' + data + b"]," + usage + b"}"
    return bodies


def serve(port_file: str) -> None:
    """The server process: /<format>/v1/embeddings; `b64` answers floats (repr) unless asked
    for base64, like a service that honours `encoding_format`."""
    bodies = build_bodies()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            fmt = self.path.split("/")[1]
            if fmt == "b64" and b'"encoding_format":"base64"' not in raw:
                fmt = "repr"
            body = bodies[fmt]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Path(port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


def bare_raw_read(base_url: str, texts: list[str]) -> list[Any]:
    """The bare loop, reading each body in one call (`stream=True` + `raw.read`)."""
    session = requests.Session()
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    vectors: list[Any] = [[] for _ in texts]
    for start in range(0, len(texts), BATCH):
        body = orjson.dumps({"model": "m", "input": texts[start : start + BATCH]})
        response = session.post(
            f"{base_url}/embeddings", data=body, headers=headers, timeout=60, stream=True
        )
        content = response.raw.read(decode_content=True)
        for item in orjson.loads(content)["data"]:
            vectors[start + item["index"]] = item["embedding"]
    session.close()
    return vectors


def bare_base64(base_url: str, texts: list[str], *, one_read: bool) -> list[Any]:
    """The bare loop asking for base64 and decoding to lists with our codec: the floor for
    `NebulaClient, base64 -> lists`, with the body read as requests does or in one call."""
    session = requests.Session()
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    vectors: list[Any] = []
    for start in range(0, len(texts), BATCH):
        batch = texts[start : start + BATCH]
        body = orjson.dumps({"model": "m", "input": batch, "encoding_format": "base64"})
        response = session.post(
            f"{base_url}/embeddings", data=body, headers=headers, timeout=60, stream=one_read
        )
        content = response.raw.read(decode_content=True) if one_read else response.content
        vectors += decode_embeddings(content, len(batch)).to_lists()
    session.close()
    return vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--output", help="also write the table here (make compare embeds it)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    port_file = Path(f"/tmp/nebula-codec-bench-{os.getpid()}.port")
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file)])
    try:
        while not port_file.exists() or not port_file.read_text():
            time.sleep(0.05)
        root = f"http://127.0.0.1:{port_file.read_text()}"
        report = run(root, args.rounds)
    finally:
        server.terminate()
        server.wait()
        port_file.unlink(missing_ok=True)
    if args.output:
        Path(args.output).write_text(report)
    print(report)


def run(root: str, rounds: int) -> str:
    texts = [f"input {i}" for i in range(INPUTS)]
    url = {fmt: f"{root}/{fmt}/v1" for fmt in FORMATS}
    auto = NebulaClient(api_key=KEY, base_url=url["b64"])
    floats = NebulaClient(api_key=KEY, base_url=url["repr"], encoding_format="float")
    expected = _vectors()
    contenders: dict[str, Callable[[], Any]] = {
        "bare requests+orjson, float (repr) -> lists": lambda: bare_loop(
            url["repr"], KEY, texts, batch_size=BATCH, model="m"
        ),
        "bare, float (repr), body read in one call": lambda: bare_raw_read(url["repr"], texts),
        "bare, base64 -> lists (our decoder)": lambda: bare_base64(
            url["b64"], texts, one_read=False
        ),
        "bare, base64 -> lists (our decoder), body read in one call": lambda: bare_base64(
            url["b64"], texts, one_read=True
        ),
        "NebulaClient, base64 -> numpy": lambda: auto.embed(texts, "m", BATCH, output="numpy"),
        "NebulaClient, base64 -> lists": lambda: auto.embed(texts, "m", BATCH).embeddings,
        "NebulaClient, float (repr) -> lists": lambda: floats.embed(texts, "m", BATCH).embeddings,
    }
    # Warm up (connections, imports), and check every contender returns the right vectors.
    for name, contender in contenders.items():
        out = contender()
        got = out.embeddings if hasattr(out, "embeddings") else out
        assert np.allclose(np.asarray(got[:BATCH], dtype=np.float32), expected, atol=1e-6), name
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            gc.collect()  # the last round's garbage is not this round's cost
            started = time.process_time()
            contenders[name]()
            cpu[name].append(time.process_time() - started)

    bodies = build_bodies()
    decode = decode_only(bodies, rounds)
    return render(cpu, bodies, decode, rounds)


def decode_only(bodies: dict[str, bytes], rounds: int) -> dict[str, float]:
    """Parse-and-place CPU for one 64-input body, no HTTP: where the client time goes."""
    cases: dict[str, Callable[[], object]] = {
        "orjson.loads, float (repr)": lambda: orjson.loads(bodies["repr"]),
        "decode_embeddings + to_lists, float (repr)": lambda: decode_embeddings(
            bodies["repr"], BATCH
        ).to_lists(),
        "decode_embeddings + to_lists, base64": lambda: decode_embeddings(
            bodies["b64"], BATCH
        ).to_lists(),
        "decode_embeddings + to_numpy, base64": lambda: decode_embeddings(
            bodies["b64"], BATCH
        ).to_numpy(),
    }
    best = {}
    for name, case in cases.items():
        times = []
        for _ in range(rounds * 3):
            started = time.process_time()
            case()
            times.append(time.process_time() - started)
        best[name] = min(times) * 1000
    return best


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def render(
    cpu: dict[str, list[float]], bodies: dict[str, bytes], decode: dict[str, float], rounds: int
) -> str:
    base_name = next(iter(cpu))
    base = min(cpu[base_name])
    base_median = statistics.median(cpu[base_name])
    requests_per_run = INPUTS // BATCH
    dirty = (
        " (with uncommitted changes)"
        if _git("status", "--porcelain", "--untracked-files=no")
        else ""
    )
    lines = [
        "# base64 vs float JSON: client CPU and wire bytes",
        "",
        f"Generated by `.venv/bin/python benchmarks/codec.py --rounds {rounds}` on "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, commit `{_git('rev-parse', 'HEAD')}`"
        f"{dirty}, Python {platform.python_version()} on {os.cpu_count()} CPU cores "
        f"({platform.machine()}), numpy {np.__version__}, orjson {orjson.__version__}.",
        "",
        f"{INPUTS:,} inputs x {DIMS:,} dims, {BATCH} per request ({requests_per_run} requests), "
        "server in its own process with prebuilt bodies. NebulaClient at its defaults "
        "(max_concurrency=4). Client CPU (`time.process_time()`, all threads) per run of "
        f"{INPUTS:,} inputs: best / median / worst of {rounds} alternating rounds (GC on, "
        "collected before each run). The machine may be shared: compare the spread before "
        "trusting a ratio.",
        "",
        "| Client, answer -> result | best ms | median ms | worst ms | best vs bare |"
        " median vs bare | Target (best) | Met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, times in cpu.items():
        ratio = min(times) / base
        target, met = "", ""
        if name.startswith("NebulaClient, base64"):
            target, met = "<= 0.35", "yes" if ratio <= 0.35 else "**no**"
        lines.append(
            f"| {name} | {min(times) * 1000:.0f} | {statistics.median(times) * 1000:.0f} | "
            f"{max(times) * 1000:.0f} | {ratio:.3f} | "
            f"{statistics.median(times) / base_median:.3f} | {target} | {met} |"
        )
    b64 = len(bodies["b64"])
    lines += [
        "",
        f"Wire bytes of one {BATCH}-input answer (x{requests_per_run} per run):",
        "",
        "| Answer format | bytes | base64 / this | Target | Met |",
        "|---|---|---|---|---|",
    ]
    labels = {
        "b64": "base64 float32",
        "repr": "float JSON, repr of the widened double (Python `json.dumps(t.tolist())`)",
        "f32": "float JSON, shortest float32 repr (e.g. Rust serde)",
        "dec7": "float JSON, 7 decimals",
    }
    for fmt in FORMATS:
        size = len(bodies[fmt])
        if fmt == "b64":
            lines.append(f"| {labels[fmt]} | {size:,} | 1.000 | | |")
            continue
        ratio = b64 / size
        met = "yes" if ratio <= 0.4 else "**no**"
        lines.append(f"| {labels[fmt]} | {size:,} | {ratio:.3f} | <= 0.4 | {met} |")
    lines += [
        "",
        f"Where the time goes: parse-and-place CPU for one {BATCH}-input body, no HTTP "
        f"(best of {rounds * 3}):",
        "",
        "| Step | ms |",
        "|---|---|",
        *(f"| {name} | {ms:.2f} |" for name, ms in decode.items()),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
