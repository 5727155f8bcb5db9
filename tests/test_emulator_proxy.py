"""A proxy in front of the emulator: nginx's body-size 413 and HTML 5xx pages, Cloudflare's 52x."""

from __future__ import annotations

import orjson
import pytest
import requests

from nebula_core.models import DEFAULT_MODEL
from nebula_core.testing import PROXY_FAULTS, TRANSIENT_FAULTS, Fault, NebulaEmulator

NGINX_413 = (
    b"<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n"
    b"<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


def post_body(emu: NebulaEmulator, body: bytes) -> requests.Response:
    return requests.post(
        f"{emu.base_url}/embeddings",
        data=body,
        headers={"Authorization": f"Bearer {emu.api_key}"},
        timeout=30,
    )


def body_of(size: int) -> bytes:
    """A valid request body of exactly `size` bytes."""
    empty = orjson.dumps({"model": DEFAULT_MODEL, "input": ["x"]})
    body = orjson.dumps({"model": DEFAULT_MODEL, "input": ["x" * (size - len(empty) + 1)]})
    assert len(body) == size
    return body


def test_a_body_over_the_limit_gets_nginxs_html_413() -> None:
    with NebulaEmulator(max_body_bytes=1000) as emu:
        assert post_body(emu, body_of(1000)).status_code == 200
        refused = post_body(emu, body_of(1001))
        assert refused.status_code == 413
        assert refused.content == NGINX_413
        assert refused.headers["Content-Type"] == "text/html"
        assert refused.headers["Server"] == "nginx"
        last = emu.embeddings_requests[-1]
        assert (last.status, last.model, last.body) == (413, None, body_of(1001))
        assert emu.stats.statuses == {200: 1, 413: 1}


def test_the_proxy_answers_before_the_key_is_checked() -> None:
    with NebulaEmulator(max_body_bytes=10) as emu:
        refused = requests.post(f"{emu.base_url}/embeddings", data=body_of(100), timeout=10)
        assert refused.status_code == 413  # no Authorization at all: the proxy never asks


def test_there_is_no_body_limit_by_default() -> None:
    with NebulaEmulator() as emu:
        assert post_body(emu, body_of(3 * 1024 * 1024)).status_code == 200


def test_the_body_limit_can_be_changed_while_running() -> None:
    with NebulaEmulator() as emu:
        emu.endpoint.max_body_bytes = 500
        assert post_body(emu, body_of(501)).status_code == 413


@pytest.mark.parametrize(
    ("code", "title"),
    [
        (520, "Web server is returning an unknown error"),
        (521, "Web server is down"),
        (522, "Connection timed out"),
        (523, "Origin is unreachable"),
        (524, "A timeout occurred"),
    ],
)
def test_cloudflare_faults_send_cloudflares_html_page(code: int, title: str) -> None:
    with NebulaEmulator() as emu:
        emu.enqueue(Fault.cloudflare(code))
        answer = post_body(emu, body_of(100))
        assert answer.status_code == code
        assert answer.headers["Server"] == "cloudflare"
        assert answer.headers["Content-Type"] == "text/html; charset=UTF-8"
        assert f"<title>inference.nebulablock.com | {code}: {title}</title>" in answer.text
        assert emu.embeddings_requests[0].fault == f"cloudflare:{code}"
        assert post_body(emu, body_of(100)).status_code == 200  # one request only


def test_cloudflare_codes_are_checked() -> None:
    with pytest.raises(ValueError):
        Fault.cloudflare(502)


def test_proxy_faults_are_nginx_5xx_and_cloudflare_52x_pages() -> None:
    assert [fault.name for fault in PROXY_FAULTS] == [
        "html_error:502",
        "html_error:504",
        "cloudflare:520",
        "cloudflare:521",
        "cloudflare:522",
        "cloudflare:523",
        "cloudflare:524",
    ]
    with NebulaEmulator() as emu:
        emu.enqueue(*PROXY_FAULTS)
        answers = [post_body(emu, body_of(100)) for _ in PROXY_FAULTS]
        assert [a.status_code for a in answers] == [502, 504, 520, 521, 522, 523, 524]
        assert all(a.text.lstrip().lower().startswith(("<html", "<!doctype")) for a in answers)
    assert Fault.html_error(502) in TRANSIENT_FAULTS


@pytest.mark.nebula_emulator(max_body_bytes=50)
def test_the_marker_sets_the_body_limit(nebula_emulator: NebulaEmulator) -> None:
    assert post_body(nebula_emulator, body_of(51)).status_code == 413
