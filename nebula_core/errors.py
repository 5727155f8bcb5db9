"""Every way a NebulaBlock embeddings call can fail, as one exception tree.

    NebulaError                      base class: catch this to catch everything below
    ├── ConfigurationError           no API key, a bad base URL or option; also TLS failures,
    │                                unusable redirect targets, redirect loops (never retried)
    ├── APIConnectionError           could not reach the service, or the connection broke
    │   └── APITimeoutError          no answer within `timeout`, or a 408 after every retry
    │       └── DeadlineExceededError   the overall budget of one embed call is spent
    ├── APIStatusError               the service answered with an error status
    │   ├── AuthenticationError      401/403: the key is missing, wrong or expired
    │   ├── BadRequestError          400/404/413/422 and other 4xx: the request itself is wrong
    │   │   └── InputTooLongError    inputs over the model's token limit with on_long_input="error"
    │   ├── RateLimitError           429 still returned after every retry
    │   │   └── QuotaExceededError   402, or a 429 saying the quota or balance is used up
    │   └── ServerError              5xx (or 425) still returned after every retry
    └── ResponseFormatError          a 2xx body that is malformed, incomplete or inconsistent

Input mistakes (a non-str item, an empty string) are not `NebulaError`s: they raise the
built-in `TypeError` / `ValueError`, naming the positions, before any request is sent.

Every message says what happened and what to do next. None ever contains the API key.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "DeadlineExceededError",
    "InputTooLongError",
    "NebulaError",
    "QuotaExceededError",
    "RateLimitError",
    "ResponseFormatError",
    "ServerError",
]


class NebulaError(Exception):
    """Base class of every error this package raises about the service or its configuration.

    Every argument is kept as an attribute of the same name, and survives pickling (errors
    cross process boundaries under multiprocessing and Ray).

    Args:
        message: what happened and what to do next; never contains the API key.
        status_code: the HTTP status, when there was an answer.
        server_message: the service's own explanation, parsed from the error body.
        attempts: requests sent for the failing batch (1 when it was not retried); above 1,
            `str(error)` says how many.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        server_message: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.server_message = server_message
        self.attempts = attempts

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process boundaries (multiprocessing, Ray): keep every attribute, not
        # just the message that Exception's default pickling would keep.
        return (_restore, (type(self), self.message), self.__dict__)

    def __str__(self) -> str:
        if self.attempts > 1:
            return f"{self.message} (gave up after {self.attempts} attempts)"
        return self.message


class ConfigurationError(NebulaError):
    """The client cannot be used as configured: fix the argument or environment variable named."""


class APIConnectionError(NebulaError):
    """The request never got a complete answer: DNS, refused or dropped connection, cut body."""


class APITimeoutError(APIConnectionError):
    """The service did not answer within the per-request `timeout`."""


class DeadlineExceededError(APITimeoutError):
    """The overall `deadline` of one embed call ran out; `completed` inputs were embedded.

    Args:
        message: what ran out, and the last error seen before it.
        completed: inputs embedded before the deadline (their vectors are not returned).
        total: inputs the call was given.
    """

    def __init__(self, message: str, *, completed: int, total: int) -> None:
        super().__init__(message)
        self.completed = completed
        self.total = total


class APIStatusError(NebulaError):
    """The service answered with a non-success HTTP status.

    `headers` holds only the answer's `x-ratelimit-*` and `Retry-After` headers (never auth),
    for pacing.

    Args:
        message: what happened and what to do next.
        status_code: the HTTP status of the answer.
        server_message: the service's own explanation, parsed from the error body.
        attempts: requests sent for the failing batch (1 when it was not retried).
        retry_after: the server's `Retry-After` in seconds, when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        server_message: str | None = None,
        attempts: int = 1,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            message, status_code=status_code, server_message=server_message, attempts=attempts
        )
        self.retry_after = retry_after
        self.headers: dict[str, str] = {}


class AuthenticationError(APIStatusError):
    """401/403: the key is missing, mistyped, revoked, or an expired platform token."""


class BadRequestError(APIStatusError):
    """400/404/413/422: the service refused this request as it stands; retrying will not help."""


class InputTooLongError(BadRequestError):
    """Inputs exceed the model's token limit and `on_long_input="error"` forbids cutting them.

    Raised before any request when the limit is known, else on the service's refusal.

    Args:
        message: which inputs, how long they are, and the options that would accept them.
        positions: every offending input's position in the caller's list.
        limit: the model's limit in tokens.
        status_code: the HTTP status when the service refused (None before any request).
        server_message: the service's own explanation, when it refused.
    """

    def __init__(
        self,
        message: str,
        *,
        positions: list[int],
        limit: int,
        status_code: int | None = None,
        server_message: str | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, server_message=server_message)
        self.positions = positions
        self.limit = limit


class RateLimitError(APIStatusError):
    """429 after all retries: slow down (`max_concurrency`, `requests_per_minute`) or upgrade."""


class QuotaExceededError(RateLimitError):
    """402, or a 429 that says the quota or balance is used up: waiting will not help, topping
    up will. The rule that tells it from throttling is in docs/errors.md."""


class ServerError(APIStatusError):
    """5xx (or 425 Too Early) after all retries: the service is failing; try again later."""


class ResponseFormatError(NebulaError):
    """A 2xx body that cannot be trusted: not JSON, missing/duplicate indices, wrong count,
    mixed dimensions or non-numeric values. Raised instead of returning a misaligned vector."""


def _restore(cls: type[NebulaError], message: str) -> NebulaError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    return error
