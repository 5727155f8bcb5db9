"""What an error answer means and whether it is worth another request.

Throttling is told apart from an exhausted quota by the rule in docs/errors.md, never by loose
word matches; transient statuses from proxies and CDNs are retried; what cannot heal (TLS
mistakes, unusable URLs, redirect loops) fails after one request with advice on what to fix.
"""

from __future__ import annotations

import logging
import socket

import orjson
import pytest

from nebula_core import (
    APITimeoutError,
    BadRequestError,
    ConfigurationError,
    NebulaClient,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)
from nebula_core._response import MAX_ERROR_BODY, error_for_status
from nebula_core._transport import MAX_REDIRECTS
from nebula_core.testing import Fault
from tests._servers import (
    CountingHTTPServer,
    RawServer,
    answer_plain_http,
    self_signed_tls_server,
)

OPENAI_RATE_LIMIT = (
    "Rate limit reached for text-embedding-3-small in organization org-abc on tokens per min "
    "(TPM): Limit 1000000, Used 999000, Requested 2000. Please try again in 120ms. You can "
    "increase your rate limit by adding a payment method to https://platform.openai.com/"
    "account/billing"
)

#: The four throttling messages issue 11 found being taken for an exhausted quota.
THROTTLING_MESSAGES = [
    OPENAI_RATE_LIMIT,
    "Too many requests: upstream load balancer is throttling",
    "Resource has been exhausted, retry later",
    "Insufficient capacity, please retry",
]


def _json_error(message: str, type_: str | None = None, code: object = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "code": code}})


# -- the quota rule, as a table (the same rows as docs/errors.md) ------------------------------


@pytest.mark.parametrize("message", THROTTLING_MESSAGES)
@pytest.mark.parametrize("headers", [{}, {"Retry-After": "2"}])
def test_throttling_messages_are_rate_limits_not_quota(message, headers):
    error = error_for_status(429, _json_error(message, "rate_limit_error", 429), headers, where="x")

    assert type(error) is RateLimitError
    assert error.server_message == message[:300]
    assert error.retry_after == (2.0 if headers else None)


@pytest.mark.parametrize(
    ("status", "body", "headers"),
    [
        (402, b'{"error": "Payment required"}', {}),
        (402, b"", {"Retry-After": "60"}),
        (429, _json_error("Slow down", "insufficient_quota"), {"Retry-After": "5"}),
        (429, _json_error("Slow down", None, "quota_exceeded"), {}),
        (429, _json_error("Slow down", "requests", "billing_hard_limit_reached"), {}),
        (429, b'{"code": "insufficient_quota", "message": "no"}', {}),
        (
            429,
            _json_error(
                "You exceeded your current quota, please check your plan and billing details."
            ),
            {},
        ),
        (429, b'{"detail": "Insufficient balance: please top up"}', {}),
        (429, b"insufficient credits left on this account", {}),
        (429, b"Insufficient funds", {}),
    ],
)
def test_an_exhausted_quota_is_recognised_only_by_the_rule(status, body, headers):
    error = error_for_status(status, body, headers, where="x")

    assert type(error) is QuotaExceededError
    assert error.status_code == status
    assert "top up or upgrade" in str(error)


@pytest.mark.parametrize(
    "message", ["You exceeded your current quota, please wait.", "Insufficient balance"]
)
def test_quota_words_with_retry_after_are_throttling(message):
    # A server that says when to come back is not out of money: the header wins over words.
    error = error_for_status(429, _json_error(message), {"Retry-After": "1"}, where="x")

    assert type(error) is RateLimitError


def test_the_server_never_gets_to_echo_a_secret_into_a_message():
    body = _json_error("Invalid key ak_live_123 sent with X-Gateway-Token gw_456")

    error = error_for_status(401, body, {}, where="x", secrets=("ak_live_123", "gw_456"))

    assert error.server_message == "Invalid key ********** sent with X-Gateway-Token **********"
    assert "ak_live_123" not in str(error) and "gw_456" not in str(error)


# -- end to end against the emulator ---------------------------------------------------------


@pytest.mark.parametrize("message", THROTTLING_MESSAGES)
def test_throttling_is_retried_after_the_servers_retry_after(emu, make_client, caplog, message):
    caplog.set_level(logging.WARNING, logger="nebula_core")
    emu.enqueue(Fault.status(429, message, retry_after="0.2"))
    # Backoff alone would wait 2.5-5 s: the logged 0.20 s can only come from Retry-After.
    client = make_client(retry_base_wait=5.0, max_retry_wait=10.0)

    vectors = client.embed(["a", "b"]).embeddings

    assert vectors == [emu.embedding("a"), emu.embedding("b")]
    assert len(emu.embeddings_requests) == 2
    retries = [r.getMessage() for r in caplog.records if " of 6 in " in r.getMessage()]
    assert len(retries) == 1
    assert retries[0].endswith("retry 1 of 6 in 0.20s")


@pytest.mark.parametrize(
    "fault",
    [Fault.status(402, "Payment required"), Fault.quota_exhausted()],
    ids=["402", "insufficient_quota"],
)
def test_an_exhausted_quota_is_not_retried(emu, make_client, fault):
    emu.enqueue(fault)

    with pytest.raises(QuotaExceededError) as caught:
        make_client().embed(["a"])

    assert caught.value.attempts == 1
    assert len(emu.embeddings_requests) == 1


# -- what is retried ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 425, 520, 521, 522, 523, 524, 529])
def test_transient_proxy_statuses_are_retried(emu, make_client, status):
    emu.enqueue(Fault.status(status))

    assert make_client().embed(["a"]).embeddings == [emu.embedding("a")]
    assert [r.fault for r in emu.embeddings_requests] == [f"status:{status}", None]


@pytest.mark.parametrize(
    ("status", "error_class"),
    [(408, APITimeoutError), (425, ServerError), (522, ServerError), (529, ServerError)],
)
def test_transient_statuses_give_up_after_max_retries(emu, make_client, status, error_class):
    emu.enqueue(*[Fault.status(status)] * 3)

    with pytest.raises(error_class) as caught:
        make_client(max_retries=2).embed(["a"])

    assert (caught.value.status_code, caught.value.attempts) == (status, 3)
    assert len(emu.embeddings_requests) == 3


# -- what is never retried: fails after one request, saying what to fix -----------------------


def _client(base_url: str) -> NebulaClient:
    return NebulaClient(
        api_key="ak_test", base_url=base_url, max_retries=3, retry_base_wait=0.01, timeout=10
    )


def test_https_to_a_plain_http_port_fails_once_with_advice():
    with RawServer(answer_plain_http) as server:
        with pytest.raises(ConfigurationError, match="speaks plain HTTP, not HTTPS") as caught:
            _client(f"https://127.0.0.1:{server.port}/v1").embed(["a"])

        assert server.connections == 1
    assert caught.value.attempts == 1


def test_a_certificate_that_fails_verification_fails_once(tmp_path):
    pytest.importorskip("cryptography")
    with self_signed_tls_server(tmp_path) as server:
        with pytest.raises(ConfigurationError, match=r"certificate of .* failed verification"):
            _client(f"https://127.0.0.1:{server.port}/v1").embed(["a"])

        assert server.connections == 1


@pytest.mark.parametrize(
    "location",
    ["ftp://127.0.0.1/v1/embeddings", "http://127.0.0.1:99999/v1/embeddings"],
    ids=["invalid-schema", "invalid-url"],
)
def test_a_redirect_to_an_unusable_url_fails_once(location):
    with CountingHTTPServer(lambda path: (307, {"Location": location}, b"")) as server:
        with pytest.raises(ConfigurationError, match="not a usable http\\(s\\) URL"):
            _client(server.base_url).embed(["a"])

        assert server.posts == ["/v1/embeddings"]


def test_a_redirect_loop_stops_after_max_redirects_and_is_not_retried():
    with CountingHTTPServer(lambda path: (307, {"Location": path}, b"")) as server:
        with pytest.raises(ConfigurationError, match="redirect loop"):
            _client(server.base_url).embed(["a"])

        # One request and its redirects; no retry of the whole chain.
        assert len(server.posts) == 1 + MAX_REDIRECTS


def test_a_port_out_of_range_is_refused_at_construction():
    with pytest.raises(ConfigurationError, match="port"):
        NebulaClient(api_key="ak_test", base_url="http://127.0.0.1:99999/v1")


# -- error bodies are read only as far as needed -----------------------------------------------


def test_an_endless_error_body_is_cut_at_64_kib():
    # 400 announcing 10 MB, sending 200 KiB, then silence: reading it all would hang until
    # the read timeout and turn a clear 400 into a timeout.
    def endless(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 10000000\r\n\r\n" + b"E" * (200 * 1024)
        )
        conn.recv(1)  # hold the connection open until the client or the test closes it

    with RawServer(endless) as server:
        client = NebulaClient(
            api_key="ak_test", base_url=f"http://127.0.0.1:{server.port}/v1", timeout=5
        )
        with pytest.raises(BadRequestError) as caught:
            client.embed(["a"])

    assert MAX_ERROR_BODY == 64 * 1024
    assert caught.value.status_code == 400
    assert caught.value.server_message == "E" * 300
