"""Small plain `/embeddings` servers that treat over-long inputs the three ways real ones do.

`style="tei"` answers 413 like Text Embeddings Inference, `"vllm"` answers 400 like vLLM, and
`"silent"` cuts the input to the limit and embeds the rest without a word. Tokens are counted
with the package's own exact BERT counter, whatever the model id, so an "unknown" model here
is a BERT-family model the client has no catalogue entry for.
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from nebula_core._tokens import count_tokens, truncate_to_tokens

COUNTING_MODEL = "WhereIsAI/UAE-Large-V1"
API_KEY = "ak_long_inputs_test"


def vector_for(text: str, dimensions: int = 8) -> list[float]:
    """A deterministic, non-normalized vector for `text` (exactly what the server returns)."""
    digest = hashlib.sha256(text.encode()).digest() * ((dimensions * 2) // 32 + 1)
    values = struct.unpack(f"<{dimensions}h", digest[: dimensions * 2])
    return [value / 4096.0 for value in values]


class LongInputServer:
    """A threaded HTTP server on 127.0.0.1; `requests` holds each POST's list of inputs."""

    def __init__(self, style: str, limit: int = 512, dimensions: int = 8) -> None:
        assert style in ("tei", "vllm", "silent")
        self.style = style
        self.limit = limit
        self.dimensions = dimensions
        self.requests: list[list[str]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status, answer = server.answer(json.loads(body))
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}/v1"

    def __enter__(self) -> LongInputServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._http.shutdown()
        self._http.server_close()

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        inputs: list[str] = body["input"]
        with self._lock:
            self.requests.append(list(inputs))
        counts = [count_tokens(COUNTING_MODEL, text) for text in inputs]
        longest = max(counts)
        if longest > self.limit and self.style == "tei":
            message = (
                f"Input validation error: `inputs` must have less than {self.limit} tokens. "
                f"Given: {longest}"
            )
            return 413, {"error": message, "error_type": "Validation"}
        if longest > self.limit and self.style == "vllm":
            message = (
                f"This model's maximum context length is {self.limit} tokens. However, you "
                f"requested {longest} tokens in the input for embedding generation. Please "
                "reduce the length of the input."
            )
            return 400, {"object": "error", "message": message, "type": "BadRequestError"}
        embedded = [truncate_to_tokens(COUNTING_MODEL, text, self.limit) for text in inputs]
        data = [
            {"object": "embedding", "index": i, "embedding": vector_for(text, self.dimensions)}
            for i, text in reversed(list(enumerate(embedded)))
        ]
        tokens = sum(min(count, self.limit) for count in counts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return 200, {"object": "list", "model": body["model"], "data": data, "usage": usage}
