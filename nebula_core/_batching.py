"""How a call's inputs are cut into requests, and what a refused (413) request teaches.

A 413 splits the refused batch in halves, which are retried. What later batches learn depends
on why the service refused: a proxy's body-size limit is about bytes, so only requests at least
as large are split in advance; an input-count limit is about counts; one too-long input teaches
nothing about batches at all (the client's long-input handling deals with it).
"""

from __future__ import annotations

import enum
import re
import threading
from collections.abc import Sequence

from nebula_core.errors import BadRequestError

__all__ = [
    "BatchLimits",
    "Refusal",
    "batch_ranges",
    "body_size",
    "classify_413",
    "halves",
    "says_input_too_long",
]

_TOO_LONG = re.compile(
    r"context length|too long|token limit|"
    r"(less than|at most|more than|maximum|max|exceeds?|limit)\D{0,30}\d+\s*tokens",
    re.I,
)
_BODY_SIZE = re.compile(r"html|entity|payload|body|bytes", re.I)


class Refusal(enum.Enum):
    """Why a request was refused as too large."""

    BODY_SIZE = "body_size"  # a proxy's limit on request bytes
    INPUT_COUNT = "input_count"  # the service's limit on inputs per request
    INPUT_TOO_LONG = "input_too_long"  # one input exceeds the model's context


def batch_ranges(total: int, batch_size: int) -> list[tuple[int, int]]:
    """`[start, end)` ranges of at most `batch_size` inputs covering `range(total)`."""
    return [(start, min(start + batch_size, total)) for start in range(0, total, batch_size)]


def halves(start: int, end: int) -> list[tuple[int, int]]:
    """The two halves of a range of at least two inputs (the first is never the larger)."""
    middle = start + (end - start) // 2
    return [(start, middle), (middle, end)]


def body_size(texts: Sequence[str]) -> int:
    """A close estimate of a request body's bytes; learning and planning use the same one."""
    return sum(len(text.encode("utf-8", "surrogatepass")) + 3 for text in texts) + 64


def says_input_too_long(message: str | None) -> bool:
    """Does the server say an input exceeds the model's token limit (TEI, vLLM and the like)?"""
    return bool(message) and _TOO_LONG.search(message or "") is not None


def classify_413(error: BadRequestError) -> Refusal:
    """Tell a proxy's body-size 413 from an input-count 413 and from a too-long input.

    TEI answers `Input validation error: inputs must have less than 512 tokens`; nginx and
    other proxies answer with an HTML page or "Request Entity Too Large"; a service's own cap
    on inputs per request comes as JSON or plain text ("Too many inputs ...").
    """
    message = error.server_message or ""
    if says_input_too_long(message):
        return Refusal.INPUT_TOO_LONG
    if not message or _BODY_SIZE.search(message):
        return Refusal.BODY_SIZE
    return Refusal.INPUT_COUNT


class BatchLimits:
    """What one call has learned about request sizes the service refuses.

    Only sizes known to fail are avoided: a count cap of one less than the smallest refused
    count, a byte cap of one less than the smallest refused body. A batch above a cap is cut in
    halves (repeatedly) before it is sent; batches below it go out whole.
    """

    def __init__(self, batch_size: int) -> None:
        self._lock = threading.Lock()
        self.max_inputs = batch_size
        self.max_bytes: int | None = None

    def learn(self, refusal: Refusal, texts: Sequence[str]) -> bool:
        """Record a refusal of `texts`; True if it narrowed a limit."""
        if len(texts) < 2 or refusal is Refusal.INPUT_TOO_LONG:
            return False
        with self._lock:
            if refusal is Refusal.INPUT_COUNT:
                if len(texts) - 1 >= self.max_inputs:
                    return False
                self.max_inputs = len(texts) - 1
                return True
            size = body_size(texts) - 1
            if self.max_bytes is not None and size >= self.max_bytes:
                return False
            self.max_bytes = size
            return True

    def split(self, texts: Sequence[str], start: int, end: int) -> list[tuple[int, int]]:
        """`[start, end)` cut in halves until every piece fits what has been learned."""
        pieces: list[tuple[int, int]] = []
        stack = [(start, end)]
        while stack:
            low, high = stack.pop()
            if high - low > 1 and not self._fits(texts, low, high):
                first, second = halves(low, high)
                stack.extend((second, first))
            else:
                pieces.append((low, high))
        return pieces

    def _fits(self, texts: Sequence[str], start: int, end: int) -> bool:
        if end - start > self.max_inputs:
            return False
        cap = self.max_bytes
        return cap is None or body_size(texts[start:end]) <= cap
