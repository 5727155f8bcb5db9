"""Over-long inputs end to end: every policy, a known and an unknown model, three server styles."""

from __future__ import annotations

import logging
import math
import pickle

import pytest
from long_servers import API_KEY, LongInputServer, vector_for

from langchain_nebula import NebulaEmbeddings
from llama_index_nebula import NebulaEmbedding
from nebula_core import BadRequestError, InputTooLongError, NebulaClient
from nebula_core._tokens import SPECIAL_TOKENS, count_tokens, split_to_tokens, truncate_to_tokens

KNOWN = "WhereIsAI/UAE-Large-V1"  # 512 tokens, counted exactly
UNKNOWN = "acme/bert-embed-small"  # not in the catalogue: its limit is learned, counts estimated
QWEN = "Qwen/Qwen3-Embedding-8B"
STYLES = ["tei", "vllm", "silent"]


def long_text(sentences: int, seed: str = "") -> str:
    return " ".join(
        f"Sentence {i}{seed} explains how retrieval systems split documents into chunks, "
        "embed each chunk and rank them by cosine similarity."
        for i in range(sentences)
    )


SHORT_A = "A short question about vector stores."
SHORT_B = "Another short passage."
LONG_KNOWN = long_text(40)  # about 900 tokens, over UAE's 512
assert count_tokens(KNOWN, LONG_KNOWN) > 800


def make_client(server: LongInputServer, **options: object) -> NebulaClient:
    return NebulaClient(
        api_key=API_KEY,
        base_url=server.base_url,
        max_retries=0,
        **options,  # type: ignore[arg-type]
    )


def weighted_mean(pieces: list[str], model: str, dims: int = 8) -> list[float]:
    weights = [count_tokens(model, piece) - SPECIAL_TOKENS for piece in pieces]
    vectors = [vector_for(piece, dims) for piece in pieces]
    mean = [sum(w * v[i] for w, v in zip(weights, vectors)) for i in range(dims)]
    norm = math.sqrt(sum(x * x for x in mean))
    return [x / norm for x in mean]


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# -- known model: planned before any request ------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
def test_truncate_known_model_sends_longest_prefix_and_warns_once(style, caplog):
    cut = truncate_to_tokens(KNOWN, LONG_KNOWN, 512)
    assert count_tokens(KNOWN, cut) == 512 and LONG_KNOWN.startswith(cut)
    with LongInputServer(style) as server, make_client(server) as client:
        texts = [SHORT_A, LONG_KNOWN, SHORT_B, LONG_KNOWN]
        with caplog.at_level(logging.WARNING, logger="nebula_core"):
            result = client.embed(texts, model=KNOWN)
    assert server.requests == [[SHORT_A, cut, SHORT_B, cut]]
    assert result.embeddings == [vector_for(t) for t in (SHORT_A, cut, SHORT_B, cut)]
    before = count_tokens(KNOWN, LONG_KNOWN)
    assert warnings_of(caplog) == [
        f"Truncated 2 input(s) to the 512-token limit of {KNOWN}; the text past the limit was "
        f"not embedded. Position (tokens before cutting): 1 ({before:,} tokens), 3 "
        f'({before:,} tokens). Pass on_long_input="average" to embed all of each text, or '
        '"error" to refuse them.'
    ]


@pytest.mark.parametrize("style", STYLES)
def test_average_known_model_returns_token_weighted_mean(style, caplog):
    pieces = split_to_tokens(KNOWN, LONG_KNOWN, 512)
    assert len(pieces) == 2 and all(count_tokens(KNOWN, p) <= 512 for p in pieces)
    with (
        LongInputServer(style) as server,
        make_client(server, on_long_input="average") as client,
        caplog.at_level(logging.WARNING, logger="nebula_core"),
    ):
        result = client.embed([SHORT_A, LONG_KNOWN, SHORT_B], model=KNOWN)
    assert server.requests == [[SHORT_A, *pieces, SHORT_B]]
    assert result.embeddings[0] == vector_for(SHORT_A)
    assert result.embeddings[1] == pytest.approx(weighted_mean(pieces, KNOWN), abs=1e-12)
    assert result.embeddings[2] == vector_for(SHORT_B)
    assert warnings_of(caplog) == []


@pytest.mark.parametrize("style", STYLES)
def test_error_known_model_names_every_position_before_any_request(style):
    with (
        LongInputServer(style) as server,
        make_client(server, on_long_input="error") as client,
        pytest.raises(InputTooLongError) as caught,
    ):
        client.embed([LONG_KNOWN, SHORT_A, SHORT_B, LONG_KNOWN], model=KNOWN)
    assert caught.value.positions == [0, 3]
    assert caught.value.limit == 512
    assert isinstance(caught.value, BadRequestError)
    assert "exceed the 512-token limit" in str(caught.value)
    assert server.requests == []


def test_max_input_tokens_lowers_the_catalogue_limit():
    text = long_text(3)
    with LongInputServer("tei") as server, make_client(server, max_input_tokens=20) as client:
        result = client.embed([text], model=KNOWN)
    cut = truncate_to_tokens(KNOWN, text, 20)
    assert count_tokens(KNOWN, cut) == 20
    assert server.requests == [[cut]]
    assert result.embeddings == [vector_for(cut)]


# -- unknown model: the limit is learned from the refusal -----------------------------------

UNKNOWN_LIMIT = 64
LONG_UNKNOWN = long_text(4)  # about 100 tokens, over the server's 64
assert count_tokens(KNOWN, LONG_UNKNOWN) > UNKNOWN_LIMIT


@pytest.mark.parametrize("style", ["tei", "vllm"])
def test_truncate_unknown_model_learns_limit_and_keeps_it(style, caplog):
    cut = truncate_to_tokens(UNKNOWN, LONG_UNKNOWN, UNKNOWN_LIMIT)
    with LongInputServer(style, limit=UNKNOWN_LIMIT) as server, make_client(server) as client:
        with caplog.at_level(logging.WARNING, logger="nebula_core"):
            first = client.embed([LONG_UNKNOWN], model=UNKNOWN)
        assert server.requests == [[LONG_UNKNOWN], [cut]]
        assert first.embeddings == [vector_for(cut)]
        assert first.requests == 2
        assert len(warnings_of(caplog)) == 1 and "64-token limit" in warnings_of(caplog)[0]
        # The next call plans with the learned limit: no refused request.
        second = client.embed([SHORT_A, LONG_UNKNOWN], model=UNKNOWN)
    assert server.requests[2:] == [[SHORT_A, cut]]
    assert second.embeddings == [vector_for(SHORT_A), vector_for(cut)]


@pytest.mark.parametrize("style", ["tei", "vllm"])
def test_average_unknown_model_resends_pieces_of_the_refused_input(style):
    pieces = split_to_tokens(UNKNOWN, LONG_UNKNOWN, UNKNOWN_LIMIT)
    assert len(pieces) > 1
    with (
        LongInputServer(style, limit=UNKNOWN_LIMIT) as server,
        make_client(server, on_long_input="average") as client,
    ):
        result = client.embed([LONG_UNKNOWN], model=UNKNOWN)
    assert server.requests == [[LONG_UNKNOWN], pieces]
    assert result.embeddings[0] == pytest.approx(weighted_mean(pieces, UNKNOWN), abs=1e-12)


@pytest.mark.parametrize("style", ["tei", "vllm"])
def test_error_unknown_model_raises_after_one_request_then_before_any(style):
    texts = [SHORT_A, LONG_UNKNOWN, SHORT_B, LONG_UNKNOWN]
    with (
        LongInputServer(style, limit=UNKNOWN_LIMIT) as server,
        make_client(server, on_long_input="error", max_concurrency=1) as client,
    ):
        with pytest.raises(InputTooLongError) as first:
            client.embed(texts, model=UNKNOWN)
        assert first.value.positions == [1, 3]
        assert first.value.limit == UNKNOWN_LIMIT
        assert first.value.status_code == (413 if style == "tei" else 400)
        assert len(server.requests) == 1
        with pytest.raises(InputTooLongError) as second:
            client.embed(texts, model=UNKNOWN)
    assert second.value.positions == [1, 3]
    assert len(server.requests) == 1


def test_silent_server_unknown_model_returns_what_the_server_embedded(caplog):
    with (
        LongInputServer("silent", limit=UNKNOWN_LIMIT) as server,
        make_client(server) as client,
        caplog.at_level(logging.WARNING, logger="nebula_core"),
    ):
        result = client.embed([LONG_UNKNOWN], model=UNKNOWN)
    # Nothing says the input was cut, so the client cannot warn; the server's cut is exact.
    assert server.requests == [[LONG_UNKNOWN]]
    assert result.embeddings == [vector_for(truncate_to_tokens(KNOWN, LONG_UNKNOWN, 64))]
    assert warnings_of(caplog) == []


@pytest.mark.parametrize("style", ["tei", "vllm"])
def test_refused_batch_is_replanned_and_batch_size_never_shrinks(style):
    texts = [f"{SHORT_A} {i}" for i in range(8)]
    texts[1] = LONG_UNKNOWN
    cut = truncate_to_tokens(UNKNOWN, LONG_UNKNOWN, UNKNOWN_LIMIT)
    with (
        LongInputServer(style, limit=UNKNOWN_LIMIT) as server,
        make_client(server, max_concurrency=1) as client,
    ):
        result = client.embed(texts, model=UNKNOWN, batch_size=4)
    sent = [texts[0], cut, *texts[2:4]]
    assert server.requests == [texts[:4], sent, texts[4:]]
    assert result.embeddings == [vector_for(t) for t in [*sent, *texts[4:]]]


async def test_aembed_averages_like_embed():
    pieces = split_to_tokens(KNOWN, LONG_KNOWN, 512)
    with LongInputServer("tei") as server, make_client(server, on_long_input="average") as client:
        result = await client.aembed([LONG_KNOWN, SHORT_A], model=KNOWN)
    assert result.embeddings[0] == pytest.approx(weighted_mean(pieces, KNOWN), abs=1e-12)
    assert result.embeddings[1] == vector_for(SHORT_A)
    assert len(server.requests) == 1


# -- token-aware batching ---------------------------------------------------------------------


def test_batches_are_cut_by_tokens_as_well_as_by_count():
    texts = [f"passage number {i} about retrieval" for i in range(6)]
    counts = [count_tokens(KNOWN, t) for t in texts]
    assert counts == [7] * 6
    with (
        LongInputServer("tei") as server,
        make_client(server, max_tokens_per_request=15, max_concurrency=1) as client,
    ):
        result = client.embed(texts, model=KNOWN, batch_size=64)
    assert server.requests == [texts[0:2], texts[2:4], texts[4:6]]
    assert result.embeddings == [vector_for(t) for t in texts]


# -- Matryoshka dimensions --------------------------------------------------------------------


def test_dimensions_keep_the_first_values_renormalized():
    with LongInputServer("tei", dimensions=16) as server, make_client(server, dimensions=4) as c:
        result = c.embed([SHORT_A, SHORT_B], model=QWEN)
    for text, vector in zip([SHORT_A, SHORT_B], result.embeddings):
        head = vector_for(text, 16)[:4]
        norm = math.sqrt(sum(x * x for x in head))
        assert vector == [x / norm for x in head]


def test_dimensions_apply_after_averaging():
    model = "acme/matryoshka"  # unknown, so Matryoshka is the caller's word; counts estimated
    pieces = split_to_tokens(model, LONG_KNOWN, 512)
    assert len(pieces) > 1
    with (
        LongInputServer("tei", dimensions=16) as server,
        make_client(server, dimensions=4, on_long_input="average", max_input_tokens=512) as c,
    ):
        result = c.embed([LONG_KNOWN], model=model)
    assert server.requests == [pieces]
    mean = weighted_mean(pieces, model, 16)[:4]
    norm = math.sqrt(sum(x * x for x in mean))
    assert result.embeddings[0] == pytest.approx([x / norm for x in mean], abs=1e-12)


@pytest.mark.parametrize(
    ("model", "dimensions", "message"),
    [
        (KNOWN, 256, "is not a Matryoshka model"),
        (QWEN, 8192, "exceeds the 4096 dimensions"),
    ],
)
def test_dimensions_refused_for_models_that_cannot_give_them(model, dimensions, message):
    with (
        LongInputServer("tei") as server,
        make_client(server, dimensions=dimensions) as client,
        pytest.raises(ValueError, match=message),
    ):
        client.embed([SHORT_A], model=model)
    assert server.requests == []


def test_adapters_refuse_bad_dimensions_at_construction():
    with pytest.raises(ValueError, match="is not a Matryoshka model"):
        NebulaEmbeddings(model=KNOWN, api_key=API_KEY, dimensions=256)
    with pytest.raises(ValueError, match="is not a Matryoshka model"):
        NebulaEmbedding(model_name=KNOWN, api_key=API_KEY, dimensions=256)
    assert NebulaEmbeddings(model=QWEN, api_key=API_KEY, dimensions=256).dimensions == 256


def test_bad_options_are_refused_at_construction():
    with pytest.raises(ValueError, match="on_long_input must be one of truncate, average, error"):
        NebulaClient(api_key=API_KEY, on_long_input="chunk")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_input_tokens must be an integer >= 3"):
        NebulaClient(api_key=API_KEY, max_input_tokens=2)
    with pytest.raises(ValueError, match="dimensions must be an integer >= 1"):
        NebulaClient(api_key=API_KEY, dimensions=0)


def test_settings_survive_pickling():
    with LongInputServer("tei") as server:
        client = pickle.loads(pickle.dumps(make_client(server, on_long_input="error")))
        with pytest.raises(InputTooLongError):
            client.embed([LONG_KNOWN], model=KNOWN)
        client.close()
    assert server.requests == []
