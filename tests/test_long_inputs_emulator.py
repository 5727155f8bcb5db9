"""Long inputs against the emulator in each style a real server answers them: a TEI-style 413,
a vLLM-style 400 and silent truncation, for every policy, with a known and an unknown model."""

from __future__ import annotations

import math

import pytest

from nebula_core import InputTooLongError, NebulaClient
from nebula_core._tokens import SPECIAL_TOKENS, count_tokens, truncate_to_tokens
from nebula_core.testing import NebulaEmulator

KNOWN = "WhereIsAI/UAE-Large-V1"  # 512 tokens, counted exactly by the client
UNKNOWN = "acme/bert-embed-small"  # no catalogue entry: the client learns its limit
UNKNOWN_LIMIT = 40
SHORT = "A short question about vector stores."
LONG = " ".join(
    f"Sentence {i} explains how retrieval systems split documents into chunks." for i in range(90)
)
assert count_tokens(KNOWN, LONG) > 512


def emulator(style: str) -> NebulaEmulator:
    return NebulaEmulator(long_input=style, max_input_tokens={UNKNOWN: UNKNOWN_LIMIT})


def embed(emu: NebulaEmulator, model: str, policy: str) -> list[list[float]]:
    client = NebulaClient(
        api_key=emu.api_key, base_url=emu.base_url, max_retries=0, on_long_input=policy
    )
    return client.embed([SHORT, LONG], model=model).embeddings


def accepted_inputs(emu: NebulaEmulator) -> list[str]:
    """Every input of every request the emulator answered with vectors."""
    return [text for r in emu.embeddings_requests if r.status == 200 for text in r.inputs or []]


def weighted_mean(emu: NebulaEmulator, pieces: list[str], model: str) -> list[float]:
    weights = [count_tokens(model, piece) - SPECIAL_TOKENS for piece in pieces]
    vectors = [emu.embedding(piece, model) for piece in pieces]
    mean = [sum(w * v[i] for w, v in zip(weights, vectors)) for i in range(len(vectors[0]))]
    norm = math.sqrt(sum(x * x for x in mean))
    return [x / norm for x in mean]


@pytest.mark.parametrize("style", ["tei", "vllm", "truncate"])
def test_known_model_truncates_before_sending(style):
    with emulator(style) as emu:
        short, long = embed(emu, KNOWN, "truncate")
        cut = truncate_to_tokens(KNOWN, LONG, 512)
        assert (short, long) == (emu.embedding(SHORT, KNOWN), emu.embedding(cut, KNOWN))
        assert [r.status for r in emu.embeddings_requests] == [200]


@pytest.mark.parametrize("style", ["tei", "vllm", "truncate"])
def test_known_model_averages_pieces_within_the_limit(style):
    with emulator(style) as emu:
        short, long = embed(emu, KNOWN, "average")
        pieces = accepted_inputs(emu)[1:]
        assert len(pieces) >= 2 and all(count_tokens(KNOWN, p) <= 512 for p in pieces)
        assert " ".join(pieces).split() == LONG.split()
        assert short == emu.embedding(SHORT, KNOWN)
        assert long == pytest.approx(weighted_mean(emu, pieces, KNOWN), abs=1e-12)


@pytest.mark.parametrize("style", ["tei", "vllm", "truncate"])
def test_known_model_error_policy_sends_nothing(style):
    with emulator(style) as emu, pytest.raises(InputTooLongError) as caught:
        embed(emu, KNOWN, "error")
    assert caught.value.positions == [1]
    assert emu.embeddings_requests == []


@pytest.mark.parametrize("style", ["tei", "vllm"])
def test_unknown_model_learns_the_limit_and_truncates(style):
    with emulator(style) as emu:
        short, long = embed(emu, UNKNOWN, "truncate")
        statuses = [r.status for r in emu.embeddings_requests]
        assert statuses[0] == (413 if style == "tei" else 400) and statuses[-1] == 200
        [sent] = [t for t in accepted_inputs(emu) if t != SHORT]
        assert LONG.startswith(sent) and len(sent) < len(LONG)
        assert (short, long) == (emu.embedding(SHORT, UNKNOWN), emu.embedding(sent, UNKNOWN))


@pytest.mark.parametrize("style", ["tei", "vllm"])
def test_unknown_model_learns_the_limit_and_averages(style):
    with emulator(style) as emu:
        short, long = embed(emu, UNKNOWN, "average")
        pieces = [t for t in accepted_inputs(emu) if t != SHORT]
        assert len(pieces) >= 2 and " ".join(pieces).split() == LONG.split()
        assert short == emu.embedding(SHORT, UNKNOWN)
        assert long == pytest.approx(weighted_mean(emu, pieces, UNKNOWN), abs=1e-12)


@pytest.mark.parametrize("style", ["tei", "vllm"])
def test_unknown_model_error_policy_names_the_position_after_one_refusal(style):
    with emulator(style) as emu, pytest.raises(InputTooLongError) as caught:
        embed(emu, UNKNOWN, "error")
    assert caught.value.positions == [1]
    assert len(emu.embeddings_requests) == 1


@pytest.mark.parametrize("policy", ["truncate", "average", "error"])
def test_unknown_model_on_a_silently_truncating_server(policy):
    # Nothing tells the client the input was cut: it gets the server's vector of the prefix.
    with emulator("truncate") as emu:
        short, long = embed(emu, UNKNOWN, policy)
        assert (short, long) == (emu.embedding(SHORT, UNKNOWN), emu.embedding(LONG, UNKNOWN))
        assert [r.status for r in emu.embeddings_requests] == [200]
