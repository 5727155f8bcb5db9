"""Error answers as other servers phrase them: the styles a client meets in the wild.

Our own service's JSON errors live in `_wire`; these are the others: rate-limit bodies
(OpenAI JSON, plain text, an nginx HTML page), a proxy's HTML pages (nginx 413/5xx, Cloudflare
52x), TEI's and vLLM's over-long input errors, and FastAPI's 422 for unknown body fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import orjson

from nebula_core.testing._wire import Reply, html_reply, status_phrase

__all__ = [
    "RATE_LIMIT_BODIES",
    "RateLimitBody",
    "body_too_large_reply",
    "cloudflare_reply",
    "extra_fields_reply",
    "rate_limit_reply",
    "tei_too_long_reply",
    "vllm_too_long_reply",
]

RateLimitBody = Literal["openai", "text", "html"]
RATE_LIMIT_BODIES: tuple[RateLimitBody, ...] = get_args(RateLimitBody)

#: Cloudflare's titles for the errors it raises itself when the origin misbehaves.
CLOUDFLARE_TITLES = {
    520: "Web server is returning an unknown error",
    521: "Web server is down",
    522: "Connection timed out",
    523: "Origin is unreachable",
    524: "A timeout occurred",
}


def rate_limit_reply(
    style: RateLimitBody,
    *,
    model: str,
    exceeded: str,
    limit: int | None,
    retry_after: float,
    headers: Sequence[tuple[str, str]],
) -> Reply:
    """A 429 in `style`; the message never speaks of quota or balance (waiting does help)."""
    per = "tokens per min (TPM)" if exceeded == "tokens" else "requests per min (RPM)"
    if style == "openai":
        message = (
            f"Rate limit reached for {model} on {per}: Limit {limit}. "
            f"Please try again in {retry_after:.3g}s."
        )
        error = {"message": message, "type": exceeded, "param": None, "code": "rate_limit_exceeded"}
        return Reply(429, orjson.dumps({"error": error}), headers=tuple(headers))
    if style == "text":
        body = b"429 Too Many Requests: rate limit exceeded, slow down"
        return Reply(429, body, content_type="text/plain; charset=utf-8", headers=tuple(headers))
    page = html_reply(429)
    return Reply(429, page.body, page.content_type, (*page.headers, *headers))


def cloudflare_reply(code: int) -> Reply:
    """Cloudflare's own error page for a 52x: the origin failed, the edge answers in HTML."""
    title = CLOUDFLARE_TITLES.get(code, status_phrase(code))
    page = (
        '<!DOCTYPE html>\n<html lang="en-US">\n<head>\n'
        f"<title>inference.nebulablock.com | {code}: {title}</title>\n"
        '</head>\n<body>\n<div id="cf-error-details">\n'
        f'<h1><span class="cf-error-type">{title}</span>'
        f' <span class="code-label">Error code {code}</span></h1>\n'
        "<p>Cloudflare Ray ID: <strong>8f1c2a3b4c5d6e7f</strong></p>\n"
        "</div>\n</body>\n</html>\n"
    )
    headers = (("Server", "cloudflare"), ("CF-RAY", "8f1c2a3b4c5d6e7f-FRA"))
    return Reply(code, page.encode(), content_type="text/html; charset=UTF-8", headers=headers)


def tei_too_long_reply(limit: int) -> Reply:
    """text-embeddings-inference's answer to an input over the model's limit."""
    body = {
        "error": f"Input validation error: inputs must have less than {limit} tokens",
        "error_type": "Validation",
    }
    return Reply(413, orjson.dumps(body))


def vllm_too_long_reply(limit: int, requested: int) -> Reply:
    """vLLM's OpenAI-compatible answer to an input over the model's context length."""
    message = (
        f"This model's maximum context length is {limit} tokens. However, you requested "
        f"{requested} tokens in the input for embedding generation. Please reduce the length "
        "of the input."
    )
    body = {
        "object": "error",
        "message": message,
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }
    return Reply(400, orjson.dumps(body))


def extra_fields_reply(request: dict[str, object], fields: Sequence[str]) -> Reply:
    """FastAPI/pydantic's 422 for body keys a strict model does not declare."""
    detail = [
        {
            "type": "extra_forbidden",
            "loc": ["body", name],
            "msg": "Extra inputs are not permitted",
            "input": request[name],
        }
        for name in fields
    ]
    return Reply(422, orjson.dumps({"detail": detail}))


def body_too_large_reply() -> Reply:
    """nginx's page when a body exceeds `client_max_body_size`."""
    return html_reply(413)
