"""Offline token counts: exact for BERT-family models, never an under-count elsewhere."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from nebula_core._long_inputs import (
    LongInputPlan,
    effective_limit,
    limit_from_message,
    plan_long_inputs,
    token_ranges,
)
from nebula_core._tokens import (
    count_tokens,
    count_tokens_many,
    estimate_tokens,
    fits,
    is_exact,
    split_to_tokens,
    truncate_to_tokens,
)
from nebula_core.models import check_dimensions, reduce_dimensions

BERT = "WhereIsAI/UAE-Large-V1"
UNKNOWN = "acme/unknown-model"
KOREAN = "임베딩 모델은 문장을 고정 길이의 벡터로 바꿉니다."


def test_bert_models_count_exactly_with_the_shipped_vocabulary():
    assert is_exact(BERT) and is_exact("BAAI/bge-large-en-v1.5")
    assert not is_exact("Qwen/Qwen3-Embedding-8B") and not is_exact(UNKNOWN)
    # bert-base-uncased: [CLS] hello , my dog is cute [SEP]
    assert count_tokens(BERT, "Hello, my dog is cute") == 8
    # [CLS] i like straw ##berries [SEP]
    assert count_tokens(BERT, "I like strawberries") == 6
    assert count_tokens_many(BERT, ["Hello, my dog is cute", "hi"]) == [8, 3]


def test_hangul_counts_as_jamo_so_short_korean_can_exceed_a_limit():
    # WordPiece decomposes each syllable into 2-3 jamo: more tokens than characters.
    exact = count_tokens(BERT, KOREAN)
    assert exact > len(KOREAN) + 2
    assert not fits(BERT, KOREAN, len(KOREAN) + 2)
    assert estimate_tokens(KOREAN) >= exact


def test_truncate_gives_the_longest_prefix_within_the_limit():
    text = "Retrieval systems split documents into chunks and embed every chunk. " * 20
    for limit in (3, 10, 37, 64):
        prefix = truncate_to_tokens(BERT, text, limit)
        assert text.startswith(prefix)
        assert count_tokens(BERT, prefix) == limit
        # One more token of the original would not fit.
        longer = truncate_to_tokens(BERT, text, limit + 1)
        assert len(longer) > len(prefix) and count_tokens(BERT, longer) == limit + 1
    assert truncate_to_tokens(BERT, "short", 10) == "short"


def test_truncate_maps_offsets_back_to_the_original_text():
    # Lower-casing and accent stripping happen inside the tokenizer; the prefix keeps the
    # caller's own characters.
    text = "Café RÉSUMÉ Naïve " * 30
    prefix = truncate_to_tokens(BERT, text, 12)
    assert text.startswith(prefix) and "É" in prefix


@pytest.mark.parametrize("model", [BERT, UNKNOWN])
def test_split_gives_pieces_within_the_limit_covering_the_text(model):
    text = " ".join(f"word{i} alpha beta gamma" for i in range(200))
    pieces = split_to_tokens(model, text, 50)
    assert len(pieces) > 1
    assert all(count_tokens(model, piece) <= 50 for piece in pieces)
    # Nothing is lost but the blanks between pieces.
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")


def test_estimate_never_undercounts_english_code_or_cjk_on_disk():
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    code = (stdlib / "json" / "decoder.py").read_text(encoding="utf-8")
    english = (
        (stdlib / "LICENSE.txt").read_text(encoding="utf-8")
        if (stdlib / "LICENSE.txt").exists()
        else code.split('"""')[1]
    )
    cjk = "向量数据库把每段文本保存为一个嵌入向量。長い文書はチャンクに分割します。" + KOREAN
    for text in (code, english, cjk):
        for start in range(0, len(text), 700):
            chunk = text[start : start + 700]
            if chunk.strip():
                assert estimate_tokens(chunk) >= count_tokens(BERT, chunk)


def test_limit_is_read_from_tei_and_vllm_messages():
    tei = "Input validation error: `inputs` must have less than 512 tokens. Given: 1024"
    vllm = "This model's maximum context length is 8192 tokens. However, you requested 9000"
    assert limit_from_message(tei) == 512
    assert limit_from_message(vllm) == 8192
    emulator = "input 0 too long for x: 900 tokens, but the context length is 512 tokens."
    assert limit_from_message(emulator) == 512
    assert limit_from_message("<html>413 Request Entity Too Large</html>") is None
    assert limit_from_message(None) is None


def test_effective_limit_prefers_caller_then_catalogue_lowered_by_learned():
    assert effective_limit(BERT, None, None) == 512
    assert effective_limit("Qwen/Qwen3-Embedding-8B", None, None) == 32768
    assert effective_limit(BERT, 100, None) == 100
    assert effective_limit(UNKNOWN, None, None) is None
    assert effective_limit(UNKNOWN, None, 256) == 256
    assert effective_limit(BERT, None, 300) == 300


def test_token_ranges_cut_by_count_and_by_tokens():
    assert token_ranges([5] * 5, 2, None) == [(0, 2), (2, 4), (4, 5)]
    assert token_ranges([5, 5, 5, 20, 1], 10, 10) == [(0, 2), (2, 3), (3, 4), (4, 5)]
    assert token_ranges([], 4, 10) == []


def test_average_plan_maps_pieces_back_with_token_weights():
    long_text = "alpha beta gamma delta " * 20
    plan = plan_long_inputs(["short", long_text], BERT, "average", 20)
    assert plan.owners is not None and plan.weights is not None
    assert plan.owners[0] == 0 and set(plan.owners[1:]) == {1}
    assert plan.weights[1:] == [count_tokens(BERT, p) - 2 for p in plan.texts[1:]]
    vectors = [[1.0, 0.0]] + [[0.0, 2.0]] * (len(plan.texts) - 1)
    assert plan.combine(vectors) == [[1.0, 0.0], [0.0, 1.0]]


def test_identity_plan_returns_the_same_list():
    texts = ["one", "two"]
    plan = plan_long_inputs(texts, BERT, "truncate", 512)
    assert plan.texts is texts and plan.warning() is None
    assert LongInputPlan(BERT, "truncate", None, texts).combine([[1.0]]) == [[1.0]]


def test_dimensions_are_checked_against_the_catalogue():
    check_dimensions("Qwen/Qwen3-Embedding-8B", 1024)
    check_dimensions(UNKNOWN, 64)
    check_dimensions(BERT, None)
    with pytest.raises(ValueError, match="not a Matryoshka model"):
        check_dimensions("BAAI/bge-large-en-v1.5", 512)
    assert reduce_dimensions([[3.0, 4.0, 12.0]], 2) == [[0.6, 0.8]]


@pytest.mark.parametrize("model", [BERT, UNKNOWN])
def test_a_huge_input_is_cut_from_a_head_and_reported_as_more_than(model):
    text = "word " * 200_000
    plan = plan_long_inputs([text], model, "truncate", 512)
    assert text.startswith(plan.texts[0]) and count_tokens(model, plan.texts[0]) <= 512
    assert count_tokens(model, plan.texts[0]) >= 400
    warning = plan.warning()
    assert warning is not None and "0 (more than " in warning
