"""What the emulator received: every request, with its raw body and the key masked."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from nebula_core.testing._faults import Fault
from nebula_core.testing._server import Headers, Request

__all__ = ["RecordedRequest", "Recorder"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the emulator saw it.

    Attributes:
        model: the body's model; None when it did not say (or for non-embeddings requests).
        inputs: the body's inputs, likewise.
        status: the status answered; 0 when the connection was dropped without an answer.
        fault: the name of the fault applied, e.g. "status:429".
        headers: the request headers, case-insensitive, with Authorization masked.
        path: the request path, e.g. "/v1/embeddings".
        method: the HTTP method.
        body: the request body exactly as it came over the wire.
    """

    model: str | None
    inputs: list[str] | None
    status: int
    fault: str | None
    headers: dict[str, str]
    path: str
    method: str = "POST"
    body: bytes = field(default=b"", compare=False, repr=False)  # can be megabytes


class Recorder:
    """A thread-safe list of RecordedRequest, oldest first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RecordedRequest] = []

    def record(
        self,
        request: Request,
        status: int,
        model: str | None,
        inputs: list[str] | None,
        fault: Fault | None,
    ) -> None:
        # Recorded before the reply is sent, so a test sees it as soon as its call returns.
        headers = Headers(request.headers.items())
        if "authorization" in headers:
            scheme = headers["authorization"].split(" ", 1)[0]
            headers["authorization"] = "Bearer ***" if scheme.lower() == "bearer" else "***"
        record = RecordedRequest(
            model=model,
            inputs=inputs,
            status=status,
            fault=fault.name if fault else None,
            headers=headers,
            path=request.path,
            method=request.method,
            body=request.body,
        )
        with self._lock:
            self._records.append(record)

    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
