"""`python -m nebula_core.testing` exposes every new behaviour as a flag."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import requests

from nebula_core.models import DEFAULT_MODEL


@contextmanager
def served(*flags: str) -> Iterator[tuple[str, str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "nebula_core.testing", "--port", "0", *flags],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    try:
        settings = dict(pair.split("=", 1) for pair in process.stdout.readline().split())
        yield settings["NEBULA_BASE_URL"], settings["NEBULA_API_KEY"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.stdout.close()


def post(base_url: str, key: str, inputs: list[str], **extra: object) -> requests.Response:
    return requests.post(
        f"{base_url}/embeddings",
        data=orjson.dumps({"model": DEFAULT_MODEL, "input": inputs, **extra}),
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


def test_the_cli_flags_switch_the_behaviours_on() -> None:
    flags = [
        "--requests-per-minute", "1",
        "--rate-limit-headers",
        "--rate-limit-body", "text",
        "--long-input", "tei",
        "--max-input-tokens", "10",
        "--max-body-bytes",  # no value: nginx's 1 MiB
        "--honour-encoding-format",
        "--vectors", "raw",
        "--capacity", "2",
        "--seconds-per-token", "0.0001",
        "--idle-timeout", "30",
    ]  # fmt: skip
    with served(*flags) as (base_url, key):
        answer = post(base_url, key, ["x"], encoding_format="base64")
        assert answer.status_code == 200
        assert isinstance(answer.json()["data"][0]["embedding"], str)
        assert answer.headers["x-ratelimit-limit-requests"] == "1"
        # Refusals before the rate limit (token limit, proxy) use none of the allowance.
        assert post(base_url, key, ["a b c d e f g h i"]).status_code == 413  # 11 tokens
        big = post(base_url, key, ["y" * (1024 * 1024)])
        assert big.status_code == 413 and big.headers["Server"] == "nginx"
        throttled = post(base_url, key, ["x"])
        assert throttled.status_code == 429
        assert throttled.headers["Content-Type"].startswith("text/plain")


def test_the_strict_cli_rejects_extra_fields() -> None:
    with served("--extra-fields", "forbid") as (base_url, key):
        answer = post(base_url, key, ["x"], encoding_format="base64")
        assert answer.status_code == 422
        assert answer.json()["detail"][0]["loc"] == ["body", "encoding_format"]
