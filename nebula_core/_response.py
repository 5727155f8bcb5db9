"""Error answers: the server's own message from any body shape, and the typed error per status.

`error_for_status` is the one place that decides what an error answer means; the retry policy
(`_retry.should_retry`) then only looks at the class and status of the error it returns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import orjson

from nebula_core._retry import parse_retry_after
from nebula_core.errors import (
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    NebulaError,
    QuotaExceededError,
    RateLimitError,
    ResponseFormatError,
    ServerError,
)

__all__ = [
    "MAX_ERROR_BODY",
    "QUOTA_ERROR_CODES",
    "error_for_status",
    "is_quota_exhausted",
    "redact",
    "server_message",
]

#: Most bytes of an error body that are read: enough for any message, and a proxy's 10 MB
#: error page (or a body that never ends) cannot stall or bloat the client.
MAX_ERROR_BODY = 64 * 1024

#: `error.type` / `error.code` values that mean the account has run out, not that it is busy.
QUOTA_ERROR_CODES = frozenset(
    {"insufficient_quota", "quota_exceeded", "billing_hard_limit_reached"}
)

# Only these phrases, and only on a 429 without Retry-After: "billing", "exhausted",
# "insufficient capacity" and the like also appear in ordinary throttling messages.
_QUOTA_PHRASES = re.compile(
    r"exceeded\s+your\s+current\s+quota|insufficient\s+(?:balance|credits?|funds)", re.I
)
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.I | re.S)
_MAX_MESSAGE = 300
_MASK = "**********"


def redact(text: str, secrets: Sequence[str]) -> str:
    """`text` with every occurrence of a secret masked (servers sometimes echo the key)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, _MASK)
    return text


def server_message(body: bytes, content_type: str = "") -> str | None:
    """The service's own explanation from an error body, whatever shape it came in."""
    if not body:
        return None
    payload = _json(body)
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


def _json(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


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


def _error_codes(payload: object) -> set[str]:
    """The machine-readable `type` / `code` strings of a JSON error body, lower-cased."""
    if not isinstance(payload, dict):
        return set()
    places = [payload]
    if isinstance(payload.get("error"), dict):
        places.append(payload["error"])
    return {
        value.strip().lower()
        for place in places
        for value in (place.get("type"), place.get("code"))
        if isinstance(value, str)
    }


def is_quota_exhausted(
    status: int, codes: set[str], message: str | None, *, has_retry_after: bool
) -> bool:
    """Whether an error answer means the account is out of quota or money (so waiting is futile).

    Only 402; a 429 whose `error.type`/`error.code` names an exhausted quota; or a 429 without
    `Retry-After` whose message says so in so many words. Every other 429 is throttling.
    """
    if status == 402:
        return True
    if status != 429:
        return False
    if codes & QUOTA_ERROR_CODES:
        return True
    return not has_retry_after and message is not None and bool(_QUOTA_PHRASES.search(message))


def _detail_message(detail: object) -> str:
    """One FastAPI/pydantic validation detail, with the field it names (`loc`) kept."""
    message = _message_from_json(detail) or str(detail)
    loc = detail.get("loc") if isinstance(detail, dict) else None
    if isinstance(loc, list) and loc:
        return f"{'.'.join(map(str, loc))}: {message}"
    return message


def error_for_status(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    where: str,
    secrets: Sequence[str] = (),
) -> NebulaError:
    """The typed error for a non-2xx answer; `where` names the inputs of the failed batch.

    `secrets` (the key, the values of `default_headers`) are masked out of the server's message.
    """
    content_type = headers.get("Content-Type", "")
    message = server_message(body, content_type)
    if message is not None:
        message = redact(message, secrets)
    raw_retry_after = headers.get("Retry-After")
    retry_after = parse_retry_after(raw_retry_after)
    said = f": {message}" if message else ""
    if status in (401, 403):
        return AuthenticationError(
            f"NebulaBlock refused the API key (HTTP {status}{said}). Check api_key or "
            "NEBULA_API_KEY; platform access tokens expire after 2 hours, API keys do not.",
            status_code=status,
            server_message=message,
        )
    codes = _error_codes(_json(body)) if status in (402, 429) else set()
    if is_quota_exhausted(status, codes, message, has_retry_after=raw_retry_after is not None):
        return QuotaExceededError(
            f"NebulaBlock says the account's quota or balance is used up (HTTP {status}{said}). "
            "Waiting will not help: top up or upgrade the account.",
            status_code=status,
            server_message=message,
            retry_after=retry_after,
        )
    if status == 429:
        return RateLimitError(
            f"NebulaBlock rate-limited the request for {where} (HTTP 429{said}). Lower "
            "max_concurrency, set requests_per_minute/tokens_per_minute to your tier, or "
            "raise max_retries.",
            status_code=429,
            server_message=message,
            retry_after=retry_after,
        )
    if status == 408:
        return APITimeoutError(
            f"NebulaBlock (or a proxy in front of it) timed out waiting for the request for "
            f"{where} (HTTP 408{said}); raise timeout=... or check the network.",
            status_code=408,
            server_message=message,
        )
    if status >= 500 or status == 425:
        return ServerError(
            f"NebulaBlock (or a proxy in front of it) failed on {where} (HTTP {status}{said}). "
            "This is on the service's side; try again later.",
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
