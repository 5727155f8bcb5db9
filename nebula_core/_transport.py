"""One HTTP request to `/embeddings`: pooled session, Bearer auth, each failure one error."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import requests
import requests.adapters
import requests.auth
import urllib3.exceptions

from nebula_core._config import ClientConfig, Secret
from nebula_core._pacing import rate_limit_headers
from nebula_core._response import MAX_ERROR_BODY, error_for_status, redact
from nebula_core._version import __version__
from nebula_core.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ConfigurationError,
    NebulaError,
)

__all__ = ["MAX_REDIRECTS", "USER_AGENT", "Answer", "Transport"]

logger = logging.getLogger("nebula_core")

USER_AGENT = f"nebulablock-embeddings/{__version__} (python-requests)"

#: Redirects followed in one request (requests' default is 30); more is a loop, and an error.
MAX_REDIRECTS = 5


@dataclass(frozen=True)
class Answer:
    """A 2xx answer: its raw body, and its headers (which carry no secret)."""

    content: bytes
    headers: Mapping[str, str]


class _BearerAuth(requests.auth.AuthBase):
    """Adds `Authorization: Bearer <key>` to each request; prints without the key."""

    def __init__(self, key: Secret) -> None:
        self._key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._key.reveal()}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(Secret('**********'))"


class _Session(requests.Session):
    """A session that treats `default_headers` as credentials on a redirect to another host.

    requests drops only `Authorization` there; gateways put keys in custom headers too.
    """

    def __init__(self, credential_headers: tuple[str, ...]) -> None:
        super().__init__()
        self._credential_headers = credential_headers

    def rebuild_auth(
        self, prepared_request: requests.PreparedRequest, response: requests.Response
    ) -> None:
        super().rebuild_auth(prepared_request, response)  # type: ignore[no-untyped-call]
        previous = response.request.url or ""
        if self.should_strip_auth(previous, prepared_request.url or ""):  # type: ignore[no-untyped-call]
            for name in self._credential_headers:
                prepared_request.headers.pop(name, None)


class Transport:
    """A lazily built, thread-safe `requests.Session` for one client's settings.

    Not picklable and not fork-safe on purpose: the client builds a new one in a new process.
    """

    def __init__(self, config: ClientConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._session: requests.Session | None = None

    def _get_session(self) -> requests.Session:
        session = self._session
        if session is None:
            with self._lock:
                if self._session is None:
                    self._session = self._new_session()
                session = self._session
        return session

    def _new_session(self) -> requests.Session:
        session = _Session(tuple(self._config.default_headers))
        session.max_redirects = MAX_REDIRECTS
        # Retries live in one place (tenacity); urllib3 must not add a second layer.
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=1, pool_maxsize=self._config.max_concurrency, max_retries=0
        )
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers.update(
            {
                "User-Agent": USER_AGENT,
                "Content-Type": "application/json",
                "Accept": "application/json",
                **self._config.default_headers,
            }
        )
        # As `session.auth`, not a default header: requests then never replaces the key with
        # ~/.netrc credentials, and drops it (without re-adding it) on a redirect elsewhere.
        session.auth = _BearerAuth(self._config.api_key)
        return session

    def close(self) -> None:
        """Close pooled connections; a later request opens a new session."""
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            session.close()

    def post(self, body: bytes, timeout: float, where: str) -> Answer:
        """One request, returning a 2xx answer or raising exactly one `NebulaError`.

        Errors are raised outside any `except` block and keep no reference to the `requests`
        exception, its request or its response: their headers hold the key, and error
        reporters walk `__context__` and attributes even when `from None` hides them.
        """
        url = self._config.embeddings_url
        logger.debug("POST %s (%s, %d bytes)", url, where, len(body))
        failure: NebulaError | None = None
        try:
            # Streamed, so that an error body can be cut short (see `_read_error_body`).
            response = self._get_session().post(url, data=body, timeout=timeout, stream=True)
            status, headers = response.status_code, response.headers
            success = 200 <= status < 300
            content = response.content if success else _read_error_body(response)
        except (requests.RequestException, ValueError) as error:
            # ValueError: requests lets some unusable redirect targets (a port out of range)
            # escape as a bare ValueError instead of InvalidURL.
            failure = self._failure(error, timeout, where)
        if failure is not None:
            raise failure
        if success:
            return Answer(content, headers)
        status_error = error_for_status(
            status, content, headers, where=where, secrets=self._secrets()
        )
        if isinstance(status_error, APIStatusError):
            # For the pacer: only x-ratelimit-* and Retry-After, never auth.
            status_error.headers = rate_limit_headers(headers)
        raise status_error

    def _secrets(self) -> tuple[str, ...]:
        return (self._config.api_key.reveal(), *self._config.default_headers.values())

    def _failure(self, error: Exception, timeout: float, where: str) -> NebulaError:
        """The one `NebulaError` for a failed request, holding nothing but text."""
        host = self._config.base_url
        reason = redact(_describe_transport_error(error), self._secrets())
        if isinstance(error, requests.exceptions.SSLError):
            return ConfigurationError(_tls_advice(host, reason))
        if isinstance(error, requests.TooManyRedirects):
            return ConfigurationError(
                f"{host} redirected the request for {where} more than {MAX_REDIRECTS} times "
                "(a redirect loop); set base_url to the final address of the API."
            )
        if isinstance(
            error,
            (
                requests.exceptions.InvalidURL,
                requests.exceptions.InvalidSchema,
                requests.exceptions.MissingSchema,
                requests.exceptions.InvalidHeader,
                ValueError,
            ),
        ):
            return ConfigurationError(
                f"The request for {where} could not be sent ({reason}): base_url (or a redirect "
                f"from {host}) is not a usable http(s) URL, or a default_headers value is "
                "invalid. Fix base_url / NEBULA_BASE_URL or default_headers."
            )
        if isinstance(error, requests.Timeout) or _is_read_timeout(error):
            return APITimeoutError(
                f"NebulaBlock did not answer within {timeout:g}s for {where}; raise timeout=... "
                "or check the network."
            )
        # Connection refused or reset, DNS failure, or a body cut short of its length.
        return APIConnectionError(
            f"Could not complete the request to {host} for {where} ({reason}); check the "
            "network and base_url."
        )


def _read_error_body(response: requests.Response) -> bytes:
    """At most `MAX_ERROR_BODY` bytes of an error answer; what arrived if it breaks off.

    The connection is closed afterwards: a body not read to its end cannot be reused.
    """
    parts: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(16 * 1024):
            parts.append(chunk)
            size += len(chunk)
            if size >= MAX_ERROR_BODY:
                break
    except requests.RequestException:
        pass  # the status says what happened; a cut-off explanation is still worth showing
    finally:
        response.close()
    return b"".join(parts)[:MAX_ERROR_BODY]


def _is_read_timeout(error: Exception) -> bool:
    # A timeout while reading the body arrives as a ConnectionError wrapping urllib3's.
    return bool(error.args) and isinstance(error.args[0], urllib3.exceptions.ReadTimeoutError)


def _tls_advice(base_url: str, reason: str) -> str:
    lowered = reason.lower()
    if (
        "wrong version number" in lowered
        or "record layer" in lowered
        or "unknown protocol" in lowered
    ):
        return (
            f"TLS handshake with {base_url} failed ({reason}): the server there speaks plain "
            "HTTP, not HTTPS. Use an http:// base_url for it, or the port that serves HTTPS."
        )
    if "certificate" in lowered:
        return (
            f"The TLS certificate of {base_url} failed verification ({reason}). Fix the "
            "server's certificate, or, behind a corporate proxy, point REQUESTS_CA_BUNDLE at "
            "its CA bundle."
        )
    return f"TLS handshake with {base_url} failed ({reason}); check base_url and the server's TLS."


_SSL_REASON = re.compile(r"\[SSL(?:: [A-Z_]+)?\] ([^()]+?)\s*\(_ssl")


def _describe_transport_error(error: Exception) -> str:
    reason = str(error.args[0]) if error.args else ""
    ssl_reason = _SSL_REASON.search(reason)
    if ssl_reason:
        return f"{type(error).__name__}: {ssl_reason.group(1)}"
    # urllib3 reasons are long; the last clause is the informative one.
    reason = reason.rsplit(": ", 1)[-1].strip(" ')\"")[:120]
    return f"{type(error).__name__}: {reason}" if reason else type(error).__name__
