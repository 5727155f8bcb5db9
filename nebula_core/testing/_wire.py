"""What the emulator puts on the wire: replies, error bodies and the embeddings body."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Literal

import orjson

__all__ = [
    "Reply",
    "embeddings_body",
    "error_reply",
    "html_reply",
    "inputs_at",
    "status_phrase",
    "usage",
]

#: What the service plausibly says for each status; the error `type` follows OpenAI's names.
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Bad request."),
    401: ("authentication_error", "Invalid API key. Check the key in your NebulaBlock account."),
    403: ("permission_error", "Forbidden: this API key is not allowed to use this resource."),
    404: ("not_found_error", "Not found."),
    408: ("timeout_error", "Request timed out."),
    413: ("invalid_request_error", "Request entity too large."),
    422: ("invalid_request_error", "Unprocessable request body."),
    429: (
        "rate_limit_error",
        "Rate limit exceeded: too many requests for your account tier. Please retry later.",
    ),
    500: ("server_error", "Internal server error."),
    502: ("server_error", "Bad gateway: the model server did not answer."),
    503: ("server_error", "Service temporarily unavailable: the model is overloaded. Retry later."),
    504: ("server_error", "Gateway timeout: the model server took too long to answer."),
}


def status_phrase(status: int) -> str:
    """The reason phrase for a status line, also for codes http.HTTPStatus does not know."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error" if status >= 400 else "Unknown"


@dataclass(frozen=True)
class Reply:
    """One answer to one request, and how to deliver it.

    `delivery="drop"` closes the connection without answering; `"truncate"` announces the
    full Content-Length, sends half the body and closes.
    """

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    delivery: Literal["send", "drop", "truncate"] = "send"


def error_reply(
    status: int,
    message: str | None = None,
    *,
    error_type: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> Reply:
    """A JSON error in the shape `{"error": {"message", "type", "code"}}`."""
    default_type, default_message = _ERRORS.get(
        status,
        ("invalid_request_error" if status < 500 else "server_error", status_phrase(status) + "."),
    )
    error = {
        "message": message if message is not None else default_message,
        "type": error_type or default_type,
        "code": status,
    }
    return Reply(status, orjson.dumps({"error": error}), headers=tuple(headers))


def html_reply(status: int) -> Reply:
    """The HTML page nginx shows when the service behind it fails."""
    title = f"{status} {status_phrase(status)}"
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
    return Reply(status, page.encode(), content_type="text/html", headers=(("Server", "nginx"),))


def embeddings_body(model: str, items: Sequence[tuple[int, bytes]], prompt_tokens: int) -> bytes:
    """The success body, assembled from pre-serialized vectors without touching a float.

    `items` are (index, vector JSON) pairs in the order they go on the wire.
    """
    pieces = [b'{"model":%b,"data":[' % orjson.dumps(model)]
    for index, vector in items:  # each vector is copied once, into the joined body
        pieces += (b'{"embedding":', vector, b',"index":%d,"object":"embedding"},' % index)
    if items:
        pieces[-1] = pieces[-1][:-1]  # no comma after the last item
    pieces.append(b'],"object":"list","usage":%b}' % orjson.dumps(usage(prompt_tokens)))
    return b"".join(pieces)


def usage(prompt_tokens: int) -> dict[str, int | None]:
    """The usage object exactly as the service reports it for an embeddings call."""
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens,
        "completion_tokens": 0,
        "completion_tokens_details": None,
        "prompt_tokens_details": None,
    }


def inputs_at(positions: Sequence[int]) -> str:
    """ "Input at index 3 is" or "Inputs at indices 1, 4, 7 are", capped for huge batches."""
    if len(positions) == 1:
        return f"Input at index {positions[0]} is"
    shown = ", ".join(map(str, positions[:10]))
    more = f" and {len(positions) - 10} more" if len(positions) > 10 else ""
    return f"Inputs at indices {shown}{more} are"
