"""Client settings, validated once where they enter so the rest of the code can trust them."""

from __future__ import annotations

import ipaddress
import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from nebula_core._codec import ENCODING_FORMATS, EncodingFormat
from nebula_core.errors import ConfigurationError

__all__ = ["DEFAULT_BASE_URL", "ClientConfig", "Secret"]

DEFAULT_BASE_URL = "https://inference.nebulablock.com/v1"
API_KEY_ENV = "NEBULA_API_KEY"
BASE_URL_ENV = "NEBULA_BASE_URL"

logger = logging.getLogger("nebula_core")


class Secret:
    """An API key that never shows itself in repr, str, f-strings or logs.

    Pickles carry the key (a Ray actor needs it), so treat a pickled `Secret` as the key itself.

    Args:
        value: the key; `reveal()` gives it back.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The key itself: call only where it goes into the Authorization header."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __getstate__(self) -> str:
        return self._value

    def __setstate__(self, state: str) -> None:
        self._value = state


def _resolve_api_key(api_key: str | None) -> Secret:
    value = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    if value is None or not value.strip():
        raise ConfigurationError(
            "No NebulaBlock API key: pass api_key=... or set the NEBULA_API_KEY environment "
            "variable (create a key in the NebulaBlock dashboard; keys usually start with 'ak_')."
        )
    value = value.strip()
    if any(ch in value for ch in "\r\n\0") or not value.isprintable():
        # A control character would let the key smuggle extra HTTP headers; refuse it outright
        # and do not echo it back.
        raise ConfigurationError(
            "The API key contains a line break or another control character; copy the key "
            "again without surrounding whitespace."
        )
    return Secret(value)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _resolve_base_url(base_url: str | None) -> str:
    value = base_url if base_url is not None else os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    value = value.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"base_url {value!r} is not an http(s) URL; use something like "
            f"{DEFAULT_BASE_URL!r} (set via base_url=... or NEBULA_BASE_URL)."
        )
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when it is read
    except ValueError:
        raise ConfigurationError(
            f"base_url {value!r} has an invalid port; ports are 1-65535."
        ) from None
    if parts.username or parts.password:
        raise ConfigurationError(
            "base_url must not carry credentials; pass the key as api_key or NEBULA_API_KEY."
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(
            f"base_url {value!r} has a query or fragment; give only the API root, "
            f"like {DEFAULT_BASE_URL!r}."
        )
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        warnings.warn(
            f"base_url uses plain http:// to {parts.hostname}: the API key will cross the "
            "network unencrypted. Use https:// unless this is a trusted proxy.",
            UserWarning,
            stacklevel=4,
        )
    return value


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigurationError(message)


@dataclass(frozen=True)
class ClientConfig:
    """Everything a NebulaClient needs, already checked."""

    api_key: Secret = field(repr=False)
    base_url: str
    timeout: float
    max_retries: int
    max_concurrency: int
    # Gateways put credentials in custom headers: keep them out of repr like the key.
    default_headers: Mapping[str, str] = field(repr=False)
    max_retry_wait: float
    retry_base_wait: float
    deadline: float | None
    requests_per_minute: float | None
    tokens_per_minute: float | None
    encoding_format: EncodingFormat = "auto"
    rate_limit_share: float = 1.0

    @property
    def embeddings_url(self) -> str:
        return f"{self.base_url}/embeddings"

    @classmethod
    def build(
        cls,
        *,
        api_key: str | None,
        base_url: str | None,
        timeout: float,
        max_retries: int,
        max_concurrency: int,
        default_headers: Mapping[str, str] | None,
        max_retry_wait: float,
        retry_base_wait: float,
        deadline: float | None,
        requests_per_minute: float | None,
        tokens_per_minute: float | None,
        encoding_format: EncodingFormat = "auto",
        rate_limit_share: float = 1.0,
    ) -> ClientConfig:
        """Resolve arguments against the environment and reject anything unusable."""
        _require(
            isinstance(timeout, (int, float)) and timeout > 0,
            f"timeout must be a positive number of seconds, got {timeout!r}.",
        )
        _require(
            isinstance(max_retries, int) and not isinstance(max_retries, bool) and max_retries >= 0,
            f"max_retries must be an integer >= 0, got {max_retries!r}.",
        )
        _require(
            isinstance(max_concurrency, int)
            and not isinstance(max_concurrency, bool)
            and max_concurrency >= 1,
            f"max_concurrency must be an integer >= 1, got {max_concurrency!r}.",
        )
        _require(
            max_retry_wait >= 0 and retry_base_wait >= 0,
            "max_retry_wait and retry_base_wait must be >= 0 seconds.",
        )
        _require(
            deadline is None or deadline > 0,
            f"deadline must be a positive number of seconds or None, got {deadline!r}.",
        )
        for name, limit in (
            ("requests_per_minute", requests_per_minute),
            ("tokens_per_minute", tokens_per_minute),
        ):
            _require(
                limit is None or limit > 0,
                f"{name} must be a positive number or None, got {limit!r}.",
            )
        _require(
            encoding_format in ENCODING_FORMATS,
            f"encoding_format must be one of {', '.join(ENCODING_FORMATS)}, "
            f"got {encoding_format!r}.",
        )
        _require(
            isinstance(rate_limit_share, (int, float))
            and not isinstance(rate_limit_share, bool)
            and 0 < rate_limit_share <= 1,
            "rate_limit_share must be a number in (0, 1], this process's part of the account's "
            f"rate limits (1 / number of processes), got {rate_limit_share!r}.",
        )
        headers = dict(default_headers or {})
        for name, value in headers.items():
            _require(
                isinstance(name, str) and isinstance(value, str),
                "default_headers must map header names to string values.",
            )
            _require(
                not any(ch in name + value for ch in "\r\n\0"),
                f"default_headers[{name!r}] contains a line break; headers must be one line.",
            )
            _require(
                name.lower() != "authorization",
                "default_headers must not set Authorization; pass the key as api_key.",
            )
        return cls(
            api_key=_resolve_api_key(api_key),
            base_url=_resolve_base_url(base_url),
            timeout=float(timeout),
            max_retries=max_retries,
            max_concurrency=max_concurrency,
            default_headers=headers,
            max_retry_wait=float(max_retry_wait),
            retry_base_wait=float(retry_base_wait),
            deadline=None if deadline is None else float(deadline),
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
            encoding_format=encoding_format,
            rate_limit_share=float(rate_limit_share),
        )
