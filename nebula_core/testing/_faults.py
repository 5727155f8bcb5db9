"""Scriptable failures: what each fault does to one embeddings request, and which request gets it.

A fault either replaces the service's answer (status, quota_exhausted, html_error, cloudflare, drop,
malformed_json, redirect), postpones it (delay), or mangles a successful answer (truncate,
corrupt). Faults replace the answer before the key is checked, like a failing load balancer
in front of the service would.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import orjson

from nebula_core.testing._bodies import cloudflare_reply
from nebula_core.testing._wire import Reply, error_reply, html_reply

__all__ = ["CORRUPTIONS", "PROXY_FAULTS", "Corruption", "Fault", "FaultKind", "FaultSchedule"]

FaultKind = Literal[
    "status",
    "quota_exhausted",
    "html_error",
    "cloudflare",
    "delay",
    "drop",
    "truncate",
    "malformed_json",
    "redirect",
    "corrupt",
]
Corruption = Literal[
    "missing_index",
    "duplicate_index",
    "out_of_range_index",
    "non_int_index",
    "missing_item",
    "extra_item",
    "mixed_dimensions",
    "non_numeric",
    "empty_data",
    "no_data",
    "not_a_list",
]
CORRUPTIONS: tuple[Corruption, ...] = get_args(Corruption)

QUOTA_MESSAGE = "Insufficient balance: your account quota is exhausted. Please top up."

#: Valid JSON's beginning, cut off: what a client sees when a proxy garbles a body.
_MALFORMED_BODY = b'{"model": "WhereIsAI/UAE-Large-V1", "object": "list", "data": [{"embedding": ['


@dataclass(frozen=True)
class Fault:
    """One scripted failure of one POST /embeddings request; build it with the classmethods.

    The classmethods check their arguments (ValueError); the fields are for reading, e.g. in
    assertions.

    Attributes:
        kind: which failure, named after the classmethod that builds it.
        code: the HTTP status sent, when there is one.
        message: the error message in a JSON error body (None: a default one).
        retry_after: the `Retry-After` header's value, as sent.
        headers: more headers sent with a status fault.
        seconds: how late a delayed answer comes.
        location: where a redirect points.
        corruption: what a "corrupt" fault breaks in the body.
    """

    kind: FaultKind
    code: int | None = None
    message: str | None = None
    retry_after: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    location: str | None = None
    corruption: Corruption | None = None

    @classmethod
    def status(
        cls,
        code: int,
        message: str | None = None,
        retry_after: str | float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """A JSON error with this status, as the service or a gateway sends it.

        Args:
            code: the status, 400..599.
            message: the error's message (None: the status's usual one).
            retry_after: a `Retry-After` header, in seconds or as an HTTP date, sent as given.
            headers: more headers, e.g. `x-ratelimit-*` ones.

        Raises:
            ValueError: `code` outside 400..599.
        """
        _check_code(code, 400, 599)
        return cls(
            "status",
            code=code,
            message=message,
            retry_after=None if retry_after is None else str(retry_after),
            headers=tuple((headers or {}).items()),
        )

    @classmethod
    def quota_exhausted(cls) -> Fault:
        """A 429 that no retry can fix: the account has run out of balance."""
        return cls("quota_exhausted", code=429, message=QUOTA_MESSAGE)

    @classmethod
    def html_error(cls, code: int = 502) -> Fault:
        """nginx's HTML error page instead of JSON, as when the model server is down.

        Args:
            code: the status, 400..599.
        """
        _check_code(code, 400, 599)
        return cls("html_error", code=code)

    @classmethod
    def cloudflare(cls, code: int = 522) -> Fault:
        """Cloudflare's own HTML error page: the edge could not get an answer.

        Args:
            code: the status, 520..524.
        """
        _check_code(code, 520, 524)
        return cls("cloudflare", code=code)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Answer normally but late: provokes client read timeouts.

        Args:
            seconds: how long to wait before answering.
        """
        if not seconds >= 0:
            raise ValueError(f"delay must be >= 0 seconds, got {seconds!r}")
        return cls("delay", seconds=float(seconds))

    @classmethod
    def drop(cls) -> Fault:
        """Read the request, then close the connection without a byte of answer."""
        return cls("drop")

    @classmethod
    def truncate(cls) -> Fault:
        """A 200 whose body stops halfway through its announced Content-Length."""
        return cls("truncate")

    @classmethod
    def malformed_json(cls) -> Fault:
        """A 200 application/json whose body does not parse."""
        return cls("malformed_json", code=200)

    @classmethod
    def redirect(cls, location: str, code: int = 307) -> Fault:
        """A redirect, e.g. to another host, to test that the key stays home.

        Args:
            location: the `Location` header.
            code: the status, 300..399.
        """
        _check_code(code, 300, 399)
        return cls("redirect", code=code, location=location)

    @classmethod
    def corrupt(cls, kind: Corruption) -> Fault:
        """A 200 with valid JSON that is structurally wrong, which a client must refuse.

        Args:
            kind: what to break, one of `CORRUPTIONS`, e.g. "missing_index".
        """
        if kind not in CORRUPTIONS:
            raise ValueError(f"unknown corruption {kind!r}; choose from {CORRUPTIONS}")
        return cls("corrupt", corruption=kind)

    @property
    def name(self) -> str:
        """A short label, e.g. "status:429", "delay:2", "corrupt:missing_index"."""
        if self.kind == "corrupt":
            return f"corrupt:{self.corruption}"
        if self.kind == "delay":
            return f"delay:{self.seconds:g}"
        if self.kind in ("status", "html_error", "cloudflare", "redirect"):
            return f"{self.kind}:{self.code}"
        return self.kind

    def __str__(self) -> str:
        return self.name

    def replacement(self) -> Reply | None:
        """The answer sent instead of the service's; None where the service still answers."""
        if self.kind in ("status", "quota_exhausted"):
            assert self.code is not None
            headers = list(self.headers)
            if self.retry_after is not None:
                headers.append(("Retry-After", self.retry_after))
            error_type = "insufficient_quota" if self.kind == "quota_exhausted" else None
            return error_reply(self.code, self.message, error_type=error_type, headers=headers)
        if self.kind == "html_error":
            assert self.code is not None
            return html_reply(self.code)
        if self.kind == "cloudflare":
            assert self.code is not None
            return cloudflare_reply(self.code)
        if self.kind == "drop":
            return Reply(0, delivery="drop")
        if self.kind == "malformed_json":
            return Reply(200, _MALFORMED_BODY)
        if self.kind == "redirect":
            assert self.code is not None and self.location is not None
            return Reply(self.code, headers=(("Location", self.location),))
        return None

    def mangle(self, reply: Reply) -> Reply:
        """Apply truncate/corrupt to a successful answer; any other answer passes unchanged.

        Args:
            reply: the service's answer to this request.
        """
        if reply.status != 200:
            return reply
        if self.kind == "truncate":
            return Reply(200, reply.body, reply.content_type, reply.headers, delivery="truncate")
        if self.kind == "corrupt" and self.corruption is not None:
            body = orjson.loads(reply.body)
            return Reply(200, orjson.dumps(_corrupt(self.corruption, body)))
        return reply


def _check_code(code: int, low: int, high: int) -> None:
    if not (isinstance(code, int) and low <= code <= high):
        raise ValueError(f"status code must be an int in {low}..{high}, got {code!r}")


def _corrupt(corruption: Corruption, body: dict[str, object]) -> dict[str, object]:
    """Break one thing in a well-formed embeddings body; the first item on the wire suffers."""
    data = body["data"]
    assert isinstance(data, list) and data
    count = len(data)
    first: dict[str, object] = data[0]
    vector = first["embedding"]
    assert isinstance(vector, list)
    if corruption == "missing_index":
        del first["index"]
    elif corruption == "duplicate_index":
        if count > 1:
            data[1]["index"] = first["index"]
        else:
            data.append(dict(first))
    elif corruption == "out_of_range_index":
        first["index"] = count
    elif corruption == "non_int_index":
        first["index"] = str(first["index"])
    elif corruption == "missing_item":
        data.pop()
    elif corruption == "extra_item":
        data.append({"embedding": vector, "index": count, "object": "embedding"})
    elif corruption == "mixed_dimensions":
        first["embedding"] = vector[:-1]
    elif corruption == "non_numeric":
        vector[0] = None
        if len(vector) > 1:
            vector[-1] = str(vector[-1])
    elif corruption == "empty_data":
        body["data"] = []
    elif corruption == "no_data":
        del body["data"]
    elif corruption == "not_a_list":
        body["data"] = first
    return body


class FaultSchedule:
    """Which request gets which fault: a FIFO of scripted faults, then random ones at a rate."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()
        self._rate = 0.0
        self._random_faults: tuple[Fault, ...] = ()
        self._rng = random.Random(0)  # noqa: S311 - reproducible, not secret

    def enqueue(self, faults: Iterable[Fault]) -> None:
        faults = list(faults)
        for fault in faults:
            if not isinstance(fault, Fault):
                raise TypeError(f"expected Fault, got {type(fault).__name__}")
        with self._lock:
            self._queue.extend(faults)

    def set_rate(self, rate: float, faults: Sequence[Fault], seed: int) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rate must be within 0..1, got {rate!r}")
        if rate > 0 and not faults:
            raise ValueError("a fault rate above 0 needs at least one fault to choose from")
        with self._lock:
            self._rate = rate
            self._random_faults = tuple(faults)
            self._rng = random.Random(seed)  # noqa: S311

    def next(self) -> Fault | None:
        """The fault for the request that just arrived, if any."""
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            if self._rate and self._rng.random() < self._rate:
                return self._rng.choice(self._random_faults)
            return None

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self._rate = 0.0
            self._random_faults = ()


#: What a proxy or CDN in front of the service answers when the service behind it fails:
#: nginx's HTML 502 and 504 pages and Cloudflare's 520-524 pages. All are retryable.
PROXY_FAULTS: tuple[Fault, ...] = (
    Fault.html_error(502),
    Fault.html_error(504),
    *(Fault.cloudflare(code) for code in range(520, 525)),
)
