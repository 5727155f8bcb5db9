"""Error answers: the server's own message from any body shape, and the typed error per status."""

from __future__ import annotations

import re

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

__all__ = ["error_for_status", "server_message"]

_QUOTA_WORDS = re.compile(r"quota|balance|insufficient|credit|exhausted|billing|top.?up", re.I)
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.I | re.S)
_MAX_MESSAGE = 300


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
            parts = [_detail_message(v) for v in value[:3]]
            return "; ".join(parts)
    return None


def _detail_message(detail: object) -> str:
    """One FastAPI/pydantic validation detail, with the field it names (`loc`) kept."""
    message = _message_from_json(detail) or str(detail)
    loc = detail.get("loc") if isinstance(detail, dict) else None
    if isinstance(loc, list) and loc:
        return f"{'.'.join(map(str, loc))}: {message}"
    return message


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
