"""One HTTP request to `/embeddings`: pooled session, Bearer auth, each failure one error."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import requests
import requests.adapters
import requests.auth

from nebula_core._config import ClientConfig, Secret
from nebula_core._response import error_for_status, server_message
from nebula_core._retry import parse_retry_after
from nebula_core._version import __version__
from nebula_core.errors import APIConnectionError, APITimeoutError

__all__ = ["USER_AGENT", "Answer", "Transport"]

logger = logging.getLogger("nebula_core")

USER_AGENT = f"nebulablock-embeddings/{__version__} (python-requests)"


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
        session = requests.Session()
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
        """One request, returning a 2xx answer or raising exactly one `NebulaError`."""
        url = self._config.embeddings_url
        logger.debug("POST %s (%s, %d bytes)", url, where, len(body))
        try:
            response = self._get_session().post(url, data=body, timeout=timeout)
            content = response.content
        except requests.Timeout:
            raise APITimeoutError(
                f"NebulaBlock did not answer within {timeout:g}s for {where}; raise timeout=... "
                "or check the network."
            ) from None
        except requests.RequestException as error:
            # Connection refused or reset, DNS failure, or a body cut short of its length.
            # `from None`: the chained requests exception's frames hold the request headers.
            raise APIConnectionError(
                f"Could not complete the request to {self._config.base_url} for {where} "
                f"({_describe_transport_error(error)}); check the network and base_url."
            ) from None
        status = response.status_code
        if 200 <= status < 300:
            return Answer(content, response.headers)
        message = server_message(content, response.headers.get("Content-Type", ""))
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise error_for_status(status, message, retry_after=retry_after, where=where)


def _describe_transport_error(error: requests.RequestException) -> str:
    reason = str(error.args[0]) if error.args else ""
    # urllib3 reasons are long; the last clause is the informative one.
    reason = reason.rsplit(": ", 1)[-1].strip(" ')\"")[:120]
    return f"{type(error).__name__}: {reason}" if reason else type(error).__name__
