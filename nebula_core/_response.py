"""Turning HTTP responses into vectors or typed errors.

Success bodies are parsed once by orjson and placed by `data[i].index`; anything that could put a
vector next to the wrong text raises `ResponseFormatError` instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from nebula_core.errors import (
    AuthenticationError,
    BadRequestError,
    NebulaError,
    QuotaExceededError,
    RateLimitError,
    ResponseFormatError,
    ServerError,
)

__all__ = ["Usage", "error_for_status", "server_message", "unpack_embeddings"]

_RETRYABLE_5XX = frozenset({500, 502, 503, 504})
_QUOTA_WORDS = re.compile(r"quota|balance|insufficient|credit|exhausted|billing|top.?up", re.I)
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.I | re.S)
_MAX_MESSAGE = 300


@dataclass(frozen=True)
class Usage:
    """Tokens the service counted, summed over every request of one call."""

    prompt_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens, self.total_tokens + other.total_tokens
        )


def _format_error(what: str) -> ResponseFormatError:
    return ResponseFormatError(
        f"The service returned a 2xx response that cannot be trusted: {what}. No vectors were "
        "used from it. If this persists, report it to NebulaBlock with the model name."
    )


def unpack_embeddings(body: bytes, expected: int) -> tuple[list[list[float]], Usage]:
    """Vectors in input order from one success body, plus its usage; raise on any inconsistency."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _format_error(f"the body is not JSON ({len(body)} bytes)") from None
    if not isinstance(payload, dict):
        raise _format_error(f"the body is a JSON {type(payload).__name__}, not an object")
    data = payload.get("data")
    if not isinstance(data, list):
        raise _format_error("'data' is missing or not a list")
    if len(data) != expected:
        raise _format_error(f"sent {expected} inputs but got {len(data)} embeddings")

    slots: list[Any] = [None] * expected
    dimensions = -1
    for item in data:
        if not isinstance(item, dict):
            raise _format_error("an item of 'data' is not an object")
        index = item.get("index")
        # bool is an int subclass; a JSON true is not a position.
        if type(index) is not int:
            raise _format_error(f"an item has index {index!r}; indices must be integers")
        if not 0 <= index < expected:
            raise _format_error(f"index {index} is outside 0..{expected - 1}")
        if slots[index] is not None:
            raise _format_error(f"index {index} appears more than once")
        vector = item.get("embedding")
        if type(vector) is not list or not vector:
            raise _format_error(f"the embedding at index {index} is missing or not a list")
        if dimensions != len(vector):
            if dimensions != -1:
                raise _format_error(
                    f"embeddings have different lengths ({dimensions} and {len(vector)})"
                )
            dimensions = len(vector)
        try:
            # sum() walks the floats in C and raises TypeError on str, None, lists or objects.
            sum(vector)
        except TypeError:
            raise _format_error(f"the embedding at index {index} has non-numeric values") from None
        slots[index] = vector
    # With `expected` items, in-range and unique indices, every slot is filled.
    return slots, _usage(payload.get("usage"))


def _usage(raw: object) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    prompt = raw.get("prompt_tokens")
    total = raw.get("total_tokens")
    prompt = prompt if type(prompt) is int else 0
    total = total if type(total) is int else prompt
    return Usage(prompt, total)


def server_message(body: bytes, content_type: str = "") -> str | None:
    """The service's own explanation from an error body, whatever shape it came in."""
    if not body:
        return None
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None
    if payload is not None:
        message = _message_from_json(payload)
        if message:
            return message[:_MAX_MESSAGE]
    if "html" in content_type.lower() or body.lstrip()[:1] == b"<":
        title = _TITLE.search(body)
        if title:
            return "HTML page: " + title.group(1).decode("utf-8", "replace").strip()[:_MAX_MESSAGE]
        return f"HTML page of {len(body)} bytes"
    return body.decode("utf-8", "replace").strip()[:_MAX_MESSAGE] or None


def _message_from_json(payload: object) -> str | None:
    if isinstance(payload, str):
        return payload
    if not isinstance(payload, dict):
        return None
    for key in ("error", "detail", "message", "msg"):
        value = payload.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, dict):
            nested = _message_from_json(value)
            if nested:
                return nested
        if isinstance(value, list) and value:
            # FastAPI-style validation details: a list of {"msg": ...} objects.
            parts = [_message_from_json(v) or str(v) for v in value[:3]]
            return "; ".join(parts)
    return None


def error_for_status(
    status: int,
    message: str | None,
    *,
    retry_after: float | None,
    where: str,
) -> NebulaError:
    """The typed error for a non-2xx status; `where` names the inputs of the failed batch."""
    said = f": {message}" if message else ""
    if status in (401, 403):
        return AuthenticationError(
            f"NebulaBlock refused the API key (HTTP {status}{said}). Check api_key or "
            "NEBULA_API_KEY; platform access tokens expire after 2 hours, API keys do not.",
            status_code=status,
            server_message=message,
        )
    if status == 429:
        if message and _QUOTA_WORDS.search(message):
            return QuotaExceededError(
                f"NebulaBlock says the account's quota or balance is used up (HTTP 429{said}). "
                "Waiting will not help: top up or upgrade the account.",
                status_code=429,
                server_message=message,
                retry_after=retry_after,
            )
        return RateLimitError(
            f"NebulaBlock rate-limited the request for {where} (HTTP 429{said}). Lower "
            "max_concurrency, set requests_per_minute/tokens_per_minute to your tier, or "
            "raise max_retries.",
            status_code=429,
            server_message=message,
            retry_after=retry_after,
        )
    if status >= 500:
        return ServerError(
            f"NebulaBlock failed on {where} (HTTP {status}{said}). This is on the service's "
            "side; try again later.",
            status_code=status,
            server_message=message,
            retry_after=retry_after,
        )
    if status == 413:
        hint = "send fewer or shorter inputs per request (lower batch_size)"
    elif status == 404:
        hint = "check the model name and base_url (it should end in /v1)"
    elif status in (400, 422):
        hint = "check the model name and that every input fits the model's context length"
    else:
        hint = "check base_url and the request"
    if 300 <= status < 400:
        return ResponseFormatError(
            f"NebulaBlock answered {where} with a redirect (HTTP {status}{said}) that was not "
            "followed; set base_url to the final address.",
            status_code=status,
            server_message=message,
        )
    return BadRequestError(
        f"NebulaBlock rejected the request for {where} (HTTP {status}{said}); {hint}.",
        status_code=status,
        server_message=message,
    )


def is_retryable_status(status: int) -> bool:
    """Statuses worth another try: throttling and the transient 5xx family."""
    return status == 429 or status in _RETRYABLE_5XX
