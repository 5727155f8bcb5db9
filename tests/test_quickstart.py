"""`make demo` (examples/quickstart.py) works on a machine with no key, with a key, and fails
cleanly with a wrong one.

The script runs as a subprocess, exactly as `make demo` runs it. The runs against an emulator
started here check the script's summary against what the emulator actually received.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

from nebula_core.testing import Fault, NebulaEmulator

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "quickstart.py"

HIT = re.compile(
    r"^   (?P<framework>LangChain|LlamaIndex) +(?P<score>-?\d\.\d{3})  "
    r"(?P<source>\S+\.md) > (?P<section>.+)$"
)
SUMMARY = re.compile(
    r"^Summary: (?P<langchain>\d+) LangChain \+ (?P<llama_index>\d+) LlamaIndex chunks and "
    r"(?P<questions>\d+) questions embedded in (?P<requests>\d+) requests(?: \(retries: \d+\))?, "
    r"(?P<tokens>[\d,]+) tokens, (?P<seconds>\d+\.\d) s\.$"
)

#: Where a sensible answer to each question lives (README.md may answer any of them too).
EXPECTED_SOURCES = {
    "How do I run the tests?": "docs/development.md",
    # Both pages answer it: retrying, and throttling told apart from an exhausted quota.
    "What happens when the server returns 429 Too Many Requests?": (
        "docs/retries-and-rate-limits.md",
        "docs/errors.md",
    ),
    "How do I use the emulator in my own tests?": "docs/emulator.md",
    "Which environment variables configure the API key and base URL?": "docs/configuration.md",
    "Which error is raised for an empty string input?": "docs/errors.md",
}


def _questions() -> list[str]:
    """The script's QUESTIONS, read without running it."""
    for node in ast.parse(SCRIPT.read_text("utf-8")).body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "QUESTIONS":
            return list(ast.literal_eval(node.value))
    raise AssertionError("examples/quickstart.py has no QUESTIONS list")


def run_demo(**env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NEBULA_")}
    environment.update(env)
    return subprocess.run(
        [sys.executable, str(SCRIPT)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def parse_answers(stdout: str) -> dict[str, list[re.Match[str]]]:
    """question -> its printed hits, in order."""
    answers: dict[str, list[re.Match[str]]] = {}
    current: list[re.Match[str]] = []
    for line in stdout.splitlines():
        question = re.match(r"^\d+\. (.+)$", line)
        if question:
            current = answers.setdefault(question.group(1), [])
        elif hit := HIT.match(line):
            current.append(hit)
    return answers


def check_answers(stdout: str) -> re.Match[str]:
    """Every question answered by both frameworks from the right page; the summary line."""
    answers = parse_answers(stdout)
    assert list(answers) == _questions()
    assert 4 <= len(answers) <= 6
    assert set(answers) == set(EXPECTED_SOURCES)
    for question, hits in answers.items():
        frameworks = [hit["framework"] for hit in hits]
        assert frameworks == ["LangChain", "LangChain", "LlamaIndex", "LlamaIndex"], question
        for hit in hits:
            assert (ROOT / hit["source"]).is_file(), hit.group(0)
            assert 0.0 < float(hit["score"]) <= 1.0, hit.group(0)
        for framework in ("LangChain", "LlamaIndex"):
            top = next(hit for hit in hits if hit["framework"] == framework)
            expected = EXPECTED_SOURCES[question]
            accepted = (expected,) if isinstance(expected, str) else expected
            assert top["source"] in (*accepted, "README.md"), (
                f"{framework} answered {question!r} from {top['source']} > {top['section']}"
            )
    summary = SUMMARY.match(stdout.splitlines()[-1])
    assert summary, stdout.splitlines()[-1]
    assert int(summary["questions"]) == len(answers)
    return summary


def test_demo_without_a_key_starts_the_emulator_and_answers_every_question() -> None:
    result = run_demo()

    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert re.fullmatch(
        r"No NEBULA_API_KEY set: using the local NebulaBlock emulator at "
        r"http://127\.0\.0\.1:\d+/v1 \(lexical stand-in vectors, not a real model\)\.",
        first,
    )
    summary = check_answers(result.stdout)
    assert int(summary["langchain"]) > 20 and int(summary["llama_index"]) > 20
    # A progress bar for each framework's ingestion, and nothing alarming.
    assert "Embedding: 100%" in result.stderr
    assert "Generating embeddings: 100%" in result.stderr
    assert "Traceback" not in result.stderr and "WARNING" not in result.stderr


def test_demo_with_a_key_uses_the_given_service_and_reports_what_it_billed() -> None:
    with NebulaEmulator() as emu:  # stands in for the real API: only the env vars point here
        emu.enqueue(Fault.status(503, retry_after="0"))  # the first request fails once
        result = run_demo(**emu.env())
        received, base_url = emu.embeddings_requests, emu.base_url

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        f"Using the NebulaBlock API at {base_url} (NEBULA_API_KEY is set)."
    )
    summary = check_answers(result.stdout)
    # The summary is counted by the client, so it holds against the real API too; here it
    # must match what the service received and billed, request for request, token for token.
    assert int(summary["requests"]) == len(received)
    assert "(retries: 1)" in summary.group(0)
    assert [r.status for r in received] == [503] + [200] * (len(received) - 1)
    served = [text for r in received if r.status == 200 for text in r.inputs or []]
    assert int(summary["tokens"].replace(",", "")) == sum(map(emu.count_tokens, served))
    chunks = int(summary["langchain"]) + int(summary["llama_index"])
    assert len(served) == chunks + 2 * int(summary["questions"])  # each question asked of both
    assert re.search(
        # Batches run concurrently: whichever reaches the service first gets the 503.
        r"^WARNING nebula_core: NebulaBlock request for inputs \d+\.\.\d+ failed \(HTTP 503: ",
        result.stderr,
        re.M,
    )


def test_demo_with_a_wrong_key_exits_with_one_clear_line() -> None:
    key = "ak_definitely_wrong_0123"
    with NebulaEmulator() as emu:
        result = run_demo(NEBULA_API_KEY=key, NEBULA_BASE_URL=emu.base_url)
        received = emu.embeddings_requests

    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if "Error" in line]
    assert errors == [
        "error: AuthenticationError: NebulaBlock refused the API key (HTTP 401: Invalid API "
        "key. Check the key in your NebulaBlock account.). Check api_key or NEBULA_API_KEY; "
        "platform access tokens expire after 2 hours, API keys do not."
    ]
    assert key not in result.stdout + result.stderr
    # The first ingestion's batches (at most max_concurrency=8 at once) are refused, none is
    # retried, and nothing runs after the error.
    assert 1 <= len(received) <= 8
    assert all(request.status == 401 for request in received)
    sent = [tuple(request.inputs or []) for request in received]
    assert len(set(sent)) == len(sent)
    assert "Summary:" not in result.stdout
