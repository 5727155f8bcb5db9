"""Per-input token limits per model, answered TEI-style, vLLM-style, or by silent truncation."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import requests

from nebula_core.models import DEFAULT_MODEL
from nebula_core.testing import NebulaEmulator
from nebula_core.testing._tokens import default_tokenizer

QWEN = "Qwen/Qwen3-Embedding-8B"
BGE = "BAAI/bge-large-en-v1.5"


def post(emu: NebulaEmulator, inputs: list[str], model: str = DEFAULT_MODEL) -> requests.Response:
    return requests.post(
        f"{emu.base_url}/embeddings",
        data=orjson.dumps({"model": model, "input": inputs}),
        headers={"Authorization": f"Bearer {emu.api_key}"},
        timeout=30,
    )


def words(tokens: int) -> str:
    """A text of exactly `tokens` emulator tokens (words plus the two special tokens)."""
    return " ".join(f"w{i}" for i in range(tokens - 2))


# -- the tokenizer seam ----------------------------------------------------------------------


def test_the_default_tokenizer_counts_words_punctuation_and_two_special_tokens() -> None:
    tokenizer = default_tokenizer(DEFAULT_MODEL)
    assert tokenizer.count("hello world") == 4
    assert tokenizer.count("retries, and rate-limits!") == 9
    assert tokenizer.count(words(600)) == 600


def test_truncate_keeps_the_longest_prefix_within_the_limit() -> None:
    tokenizer = default_tokenizer(DEFAULT_MODEL)
    assert tokenizer.truncate("one, two three. four", 5) == "one, two"
    assert tokenizer.count(tokenizer.truncate(words(600), 512)) == 512
    assert tokenizer.truncate(words(600), 512) == words(512)
    assert tokenizer.truncate("short", 512) == "short"


# -- limits per model ------------------------------------------------------------------------


def test_limits_default_to_each_models_context_and_can_be_overridden() -> None:
    emu = NebulaEmulator()
    assert emu.long_inputs.limit(DEFAULT_MODEL) == 512
    assert emu.long_inputs.limit(BGE) == 512
    assert emu.long_inputs.limit(QWEN) == 32768
    assert emu.long_inputs.limit("someone/unknown-model") == 8192
    assert NebulaEmulator(max_input_tokens=100).long_inputs.limit(QWEN) == 100
    per_model = NebulaEmulator(max_input_tokens={QWEN: 1000}).long_inputs
    assert (per_model.limit(QWEN), per_model.limit(BGE)) == (1000, 512)


@pytest.mark.parametrize(
    "options", [{"long_input": "cut"}, {"max_input_tokens": 0}, {"max_input_tokens": {QWEN: -1}}]
)
def test_long_input_options_refuse_nonsense(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        NebulaEmulator(**options)


# -- the answers -----------------------------------------------------------------------------


def test_by_default_an_over_long_input_gets_the_emulators_own_400() -> None:
    with NebulaEmulator() as emu:
        assert post(emu, [words(512)]).status_code == 200
        answer = post(emu, ["ok", words(600)])
        assert answer.status_code == 400
        assert answer.json()["error"]["message"] == (
            f"Input at index 1 is too long for {DEFAULT_MODEL}: 600 tokens, "
            "but the context length is 512 tokens."
        )


@pytest.mark.parametrize("mode", ["tei", "reject"])
def test_tei_style_answers_413_with_a_validation_error(mode: str) -> None:
    with NebulaEmulator(long_input=mode) as emu:  # type: ignore[arg-type]
        answer = post(emu, ["ok", words(513)])
        assert answer.status_code == 413
        assert answer.json() == {
            "error": "Input validation error: inputs must have less than 512 tokens",
            "error_type": "Validation",
        }
        assert emu.stats.statuses == {413: 1}


def test_vllm_style_answers_400_with_the_context_length() -> None:
    with NebulaEmulator(long_input="vllm") as emu:
        answer = post(emu, [words(600)])
        assert answer.status_code == 400
        assert answer.json() == {
            "object": "error",
            "message": "This model's maximum context length is 512 tokens. However, you "
            "requested 600 tokens in the input for embedding generation. Please reduce the "
            "length of the input.",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        }


def test_truncate_embeds_the_first_tokens_silently_and_bills_only_them() -> None:
    long_text = words(600)
    with NebulaEmulator(long_input="truncate", shuffle=False) as emu:
        answer = post(emu, [long_text, "short one"])
        assert answer.status_code == 200
        body = answer.json()
        assert body["data"][0]["embedding"] == emu.embedding(words(512))
        assert body["data"][0]["embedding"] == emu.embedding(long_text)  # the same, truncated
        assert body["data"][1]["embedding"] == emu.embedding("short one")
        assert body["usage"]["prompt_tokens"] == 512 + 4
        assert emu.stats.tokens == 516


def test_the_limit_follows_the_model() -> None:
    with NebulaEmulator(long_input="tei") as emu:
        assert post(emu, [words(600)], model=QWEN).status_code == 200  # 32k context
        assert post(emu, [words(600)], model=BGE).status_code == 413
    with NebulaEmulator(long_input="tei", max_input_tokens={QWEN: 100}) as emu:
        answer = post(emu, [words(101)], model=QWEN)
        assert answer.status_code == 413
        assert answer.json()["error"].endswith("less than 100 tokens")


def test_the_limit_can_be_changed_while_running() -> None:
    with NebulaEmulator() as emu:
        emu.long_inputs.long_input = "tei"
        emu.long_inputs.max_input_tokens = 10
        assert post(emu, [words(11)]).status_code == 413


@pytest.mark.nebula_emulator(long_input="vllm", max_input_tokens=8)
def test_the_marker_sets_the_long_input_style(nebula_emulator: NebulaEmulator) -> None:
    assert post(nebula_emulator, [words(9)]).status_code == 400
    assert post(nebula_emulator, [words(8)]).status_code == 200
