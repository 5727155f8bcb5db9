"""A small, plain rate-limited `/embeddings` server on 127.0.0.1 for the pacing tests.

Server-side token bucket of `per_second` requests holding at most `burst`: an empty bucket
answers 429 with `Retry-After` (fractional seconds). With `headers=True` every answer carries
OpenAI-style `x-ratelimit-*` headers, scaled in time: the limit is `burst` requests a "minute"
of `burst / per_second` seconds (so a test's minute is a second or two), `remaining` what the
bucket holds and `reset` the time until it is full again. It counts what it
saw: accepted requests, 429s, and the arrival time of each request.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_KEY = "ak_pacing_test_key"


def vector(text: str) -> list[float]:
    """The deterministic vector this server returns for `text`."""
    return [float(len(text)), float(sum(map(ord, text)) % 997), 1.0]


class RateLimitedServer:
    """Token bucket per request; `throttle_at` forces 429s on those request numbers (1-based)."""

    def __init__(
        self,
        per_second: float | None,
        burst: float = 1.0,
        *,
        headers: bool = False,
        throttle_at: frozenset[int] = frozenset(),
        retry_after: float | None = None,
    ) -> None:
        self.per_second = per_second
        self.capacity = max(1.0, burst)
        self.headers = headers
        self.throttle_at = throttle_at
        self.retry_after = retry_after
        self.level = self.capacity
        self.updated = time.monotonic()
        self.lock = threading.Lock()
        self.accepted = 0
        self.throttled = 0
        self.arrivals: list[float] = []
        self.seen_authorization: set[str] = set()
        self._server: ThreadingHTTPServer | None = None

    @property
    def requests(self) -> int:
        return self.accepted + self.throttled

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def decide(self) -> tuple[int, dict[str, str]]:
        """Admit or throttle one request now; the status and the headers to send."""
        with self.lock:
            now = time.monotonic()
            self.arrivals.append(now)
            number = len(self.arrivals)
            rate = self.per_second
            if rate is not None:
                self.level = min(self.capacity, self.level + (now - self.updated) * rate)
            self.updated = now
            forced = number in self.throttle_at
            if forced or (rate is not None and self.level < 1.0):
                self.throttled += 1
                wait = self.retry_after
                if wait is None:
                    wait = (1.0 - self.level) / rate if rate else 0.05
                sent = {"Retry-After": f"{wait:.3f}"}
                sent.update(self._rate_headers(rate))
                return 429, sent
            if rate is not None:
                self.level -= 1.0
            self.accepted += 1
            return 200, self._rate_headers(rate)

    def _rate_headers(self, rate: float | None) -> dict[str, str]:
        if not self.headers or rate is None:
            return {}
        reset = (self.capacity - self.level) / rate
        return {
            "x-ratelimit-limit-requests": str(int(self.capacity)),
            "x-ratelimit-remaining-requests": str(max(0, int(self.level))),
            "x-ratelimit-reset-requests": f"{reset * 1000:.0f}ms",
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                owner.seen_authorization.add(self.headers.get("Authorization", ""))
                status, extra = owner.decide()
                if status == 200:
                    texts = body["input"]
                    tokens = sum(len(t.split()) + 2 for t in texts)
                    payload: dict[str, Any] = {
                        "object": "list",
                        "model": body["model"],
                        "data": [
                            {"object": "embedding", "index": i, "embedding": vector(t)}
                            for i, t in enumerate(texts)
                        ],
                        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                    }
                else:
                    payload = {"error": {"message": "Rate limit reached, slow down."}}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        return Handler

    @contextmanager
    def running(self) -> Iterator[RateLimitedServer]:
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        server.daemon_threads = True
        self._server = server
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
