"""Small plain HTTP servers on 127.0.0.1 for tests that need what the emulator does not record:
the order requests arrive in, how many are in flight at once, and scripted refusals."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: Decides the answer to one request from its inputs: (status, content type, body), or None
#: for a normal 200 with `vector_of` vectors.
Responder = Callable[[list[str]], "tuple[int, str, bytes] | None"]


def vector_of(text: str) -> list[float]:
    """The vector the server returns for `text`: exact, so tests can compare values."""
    return [float(len(text)), float(sum(map(ord, text)) % 1000)]


class CountingServer:
    """An `/embeddings` server that logs arrivals and counts requests in flight.

    `arrivals` holds each request's inputs in arrival order; `max_in_flight` is the most
    requests it was ever working on at once; `latency` is how long each answer takes.
    """

    def __init__(self, latency: float = 0.0, responder: Responder | None = None) -> None:
        self.latency = latency
        self.responder = responder
        self.arrivals: list[list[str]] = []
        self.bodies: list[int] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.counting = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def arrival_of(self, text: str) -> int:
        """The 0-based arrival number of the first request that carried `text`."""
        with self._lock:
            return next(i for i, inputs in enumerate(self.arrivals) if text in inputs)

    def __enter__(self) -> CountingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._server.counting = None  # no cycle left for the GC tests of later tests to find


class _HTTPServer(ThreadingHTTPServer):
    counting: CountingServer | None = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        server = self.server.counting
        assert server is not None
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        inputs = json.loads(body)["input"]
        with server._lock:
            server.arrivals.append(inputs)
            server.bodies.append(len(body))
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
        try:
            if server.latency:
                time.sleep(server.latency)
            answer = server.responder(inputs) if server.responder else None
            if answer is None:
                data = [
                    {"object": "embedding", "index": i, "embedding": vector_of(t)}
                    for i, t in enumerate(inputs)
                ]
                usage = {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}
                payload = {"object": "list", "model": "m", "data": data, "usage": usage}
                answer = (200, "application/json", json.dumps(payload).encode())
        finally:
            with server._lock:
                server.in_flight -= 1
        status, content_type, content = answer
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)


def json_error(status: int, message: str) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps({"error": {"message": message}}).encode()


def html_error(status: int, title: str) -> tuple[int, str, bytes]:
    page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
    return status, "text/html", page.encode()
