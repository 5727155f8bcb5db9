"""Small plain `/embeddings` servers on 127.0.0.1 that differ only in how they treat
`encoding_format`: honour base64, ignore it, or refuse it (FastAPI 422 or a plain 400).

Each records the raw request bodies it received, so tests can assert exactly what went on the
wire and how many requests a fallback cost. Vectors are a deterministic function of the text
whose values are not float32-exact, so a test can tell base64 (float32) answers from float ones.
"""

from __future__ import annotations

import base64
import struct
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

API_KEY = "ak_codec_test_key"
DIMS = 8

FASTAPI_422 = orjson.dumps(
    {
        "detail": [
            {
                "type": "extra_forbidden",
                "loc": ["body", "encoding_format"],
                "msg": "Extra inputs are not permitted",
                "input": "base64",
            }
        ]
    }
)
UNKNOWN_FIELD_400 = orjson.dumps(
    {"error": {"message": "unknown field encoding_format", "type": "invalid_request_error"}}
)


def vector(text: str, dims: int = DIMS) -> list[float]:
    """The exact (double) vector every server here computes for `text`."""
    seed = sum(map(ord, text)) % 997
    return [seed / 7 + j / 3 - 1.1 for j in range(dims)]


def float32(values: list[float]) -> list[float]:
    """`values` rounded to float32, as a base64 answer carries them."""
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


def b64(values: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def success_body(items: list[Any], prompt_tokens: int = 0) -> bytes:
    """A success body whose `data` holds `items` as given (embedding values), in reverse order."""
    data = [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(items)]
    return orjson.dumps(
        {
            "object": "list",
            "model": "m",
            "data": data[::-1],
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }
    )


class CodecServer:
    """A threaded HTTP server; `mode` is "base64" (honours the field), "ignore" (always floats),
    "strict422" (FastAPI: any extra body key is a 422) or "strict400" (plain 400 naming it).

    `script` holds (status, body) answers used, in order, before the mode's own behaviour.
    `hold_refusals=n` makes refusals wait until n requests are in flight, to stage a race.
    """

    def __init__(
        self,
        mode: str,
        *,
        dims: int = DIMS,
        script: list[tuple[int, bytes]] | None = None,
        hold_refusals: int = 0,
    ) -> None:
        self.mode = mode
        self.dims = dims
        self.script = list(script or [])
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()
        self._barrier = threading.Barrier(hold_refusals) if hold_refusals > 1 else None
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def __enter__(self) -> CodecServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def requests(self) -> list[dict[str, Any]]:
        with self.lock:
            return [orjson.loads(b) for b in self.bodies]

    def base64_requests(self) -> int:
        return sum(1 for r in self.requests() if r.get("encoding_format") == "base64")

    def answer(self, raw: bytes) -> tuple[int, bytes]:
        with self.lock:
            self.bodies.append(raw)
            scripted = self.script.pop(0) if self.script else None
        if scripted is not None:
            return scripted
        request = orjson.loads(raw)
        extra = set(request) - {"model", "input"}
        if extra and self.mode in ("strict422", "strict400"):
            if self._barrier is not None:
                self._barrier.wait(timeout=30)
            return (422, FASTAPI_422) if self.mode == "strict422" else (400, UNKNOWN_FIELD_400)
        vectors = [vector(text, self.dims) for text in request["input"]]
        tokens = sum(len(text.split()) for text in request["input"])
        if self.mode == "base64" and request.get("encoding_format") == "base64":
            return 200, success_body([b64(v) for v in vectors], tokens)
        return 200, success_body(vectors, tokens)

    def _handler(self) -> Callable[..., BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                    status, body = 401, b'{"error": {"message": "bad key"}}'
                else:
                    status, body = server.answer(raw)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler
