"""The retry policy as small pure functions, and the one tenacity loop built from them.

There is exactly one retry layer in this package: `requests` is mounted with `max_retries=0`
and the adapters never wrap calls in their own retries.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import time
from collections.abc import Callable
from typing import TypeVar

import tenacity

from nebula_core.errors import (
    APIConnectionError,
    APIStatusError,
    DeadlineExceededError,
    NebulaError,
    QuotaExceededError,
    RateLimitError,
)

__all__ = [
    "TRANSIENT_SERVER_STATUSES",
    "Cancelled",
    "parse_retry_after",
    "retry_wait",
    "run_with_retries",
    "should_retry",
]

#: Statuses worth another try: timeouts (408), "too early" (425), throttling (429), the usual
#: transient 5xx, and what CDNs and proxies in front of GPU services send when the origin is
#: unreachable or overloaded (Cloudflare's 520-524, 529 "overloaded").
TRANSIENT_SERVER_STATUSES = frozenset(
    {408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524, 529}
)

logger = logging.getLogger("nebula_core")

T = TypeVar("T")


class Cancelled(Exception):
    """Raised inside a worker when the call that owns it was cancelled or interrupted."""


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP-date.

    Returns None when the header is absent or unreadable, so the caller falls back to backoff.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        seconds = email.utils.mktime_tz(parsed) - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def should_retry(error: BaseException) -> bool:
    """Retry throttling, transient statuses, timeouts and broken connections; nothing else.

    What cannot heal by waiting is never retried: an exhausted quota, other 4xx, and the
    `ConfigurationError`s the transport raises for TLS failures, unusable URLs and redirect
    loops.
    """
    if isinstance(error, (QuotaExceededError, DeadlineExceededError)):
        return False
    if isinstance(error, (RateLimitError, APIConnectionError)):
        return True
    return isinstance(error, APIStatusError) and error.status_code in TRANSIENT_SERVER_STATUSES


def retry_wait(attempt: int, retry_after: float | None, *, base: float, cap: float) -> float:
    """How long to sleep before retry number `attempt` (1-based).

    A server's `Retry-After` wins (capped at `cap`); otherwise exponential backoff with jitter
    so that many workers throttled together do not come back together.
    """
    if retry_after is not None:
        return min(retry_after, cap)
    # "Equal jitter": never less than half the exponential step, so throttled workers do back
    # off, yet spread over the other half so they do not return in lockstep.
    step: float = min(cap, base * 2.0 ** (attempt - 1))
    return step / 2 + random.uniform(0, step / 2)  # noqa: S311 - jitter, not cryptography


def run_with_retries(
    send: Callable[[], T],
    *,
    max_retries: int,
    base_wait: float,
    max_wait: float,
    deadline_at: float | None,
    sleep: Callable[[float], None],
    describe: str,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """Call `send` until it succeeds, a non-retryable error occurs, or the budget is spent.

    `deadline_at` is a `time.monotonic()` instant after which no retry is started; `sleep` lets
    a cancelled call wake up at once instead of finishing its backoff.
    """

    def wait(state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        return retry_wait(state.attempt_number, retry_after, base=base_wait, cap=max_wait)

    def stop(state: tenacity.RetryCallState) -> bool:
        if state.attempt_number > max_retries:
            return True
        # Do not start a backoff that would end after the call's deadline. tenacity has drawn
        # the (jittered) wait already: judge that very wait, not a fresh draw.
        upcoming = state.upcoming_sleep
        return deadline_at is not None and time.monotonic() + upcoming >= deadline_at

    def log_retry(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        logger.warning(
            "NebulaBlock request for %s failed (%s); retry %d of %d in %.2fs",
            describe,
            _short(error),
            state.attempt_number,
            max_retries,
            delay,
        )
        if on_retry is not None:
            on_retry()

    retrying = tenacity.Retrying(
        stop=stop,
        wait=wait,
        retry=tenacity.retry_if_exception(should_retry),
        before_sleep=log_retry,
        sleep=sleep,
        reraise=True,
    )
    try:
        return retrying(send)
    except NebulaError as error:
        error.attempts = retrying.statistics.get("attempt_number", 1)
        raise
    finally:
        # tenacity's per-call state holds bound methods of `retrying` (a reference cycle)
        # and, through our callbacks, the whole call's results: left alone, every dropped
        # result would stay in memory until a full GC pass.
        retrying.iter_state.reset()


def _short(error: BaseException | None) -> str:
    if isinstance(error, NebulaError) and error.status_code is not None:
        detail = f": {error.server_message}" if error.server_message else ""
        return f"HTTP {error.status_code}{detail}"[:160]
    return type(error).__name__ if error is not None else "unknown error"
