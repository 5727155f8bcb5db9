"""Drop-in migration: the OpenAI integrations' argument names work, or are refused by name."""

from __future__ import annotations

import json
import math
import pickle
import threading
from typing import Any

import pytest
from _servers import CountingHTTPServer
from llama_index.embeddings.openai import OpenAIEmbeddingMode
from pydantic import ValidationError

from langchain_nebula import NebulaEmbeddings
from llama_index_nebula import NebulaEmbedding
from nebula_core import APITimeoutError, ConfigurationError, InputTooLongError
from nebula_core._tokens import SPECIAL_TOKENS, count_tokens, split_to_tokens
from nebula_core.testing import Fault, NebulaEmulator

MODEL = "WhereIsAI/UAE-Large-V1"  # 512 tokens, counted exactly
SEVEN = [f"passage {i} about vector stores" for i in range(7)]
LONG = " ".join(
    f"Sentence {i} explains how retrieval systems split documents into chunks." for i in range(6)
)
SECRET = "ak_migration_secret_value"


def lc(emu: NebulaEmulator, **options: Any) -> NebulaEmbeddings:
    """A NebulaEmbeddings built with OpenAIEmbeddings' names for key and URL."""
    return NebulaEmbeddings(
        openai_api_key=emu.api_key, openai_api_base=emu.base_url, max_retries=0, **options
    )


def li(emu: NebulaEmulator, **options: Any) -> NebulaEmbedding:
    """A NebulaEmbedding built with llama-index OpenAIEmbedding's names for the URL."""
    return NebulaEmbedding(api_key=emu.api_key, api_base=emu.base_url, max_retries=0, **options)


def batches(emu: NebulaEmulator) -> list[list[str]]:
    return [list(r.inputs or []) for r in emu.embeddings_requests]


def weighted_mean(emu: NebulaEmulator, pieces: list[str]) -> list[float]:
    """What `average` must return: the token-weighted mean of the pieces, L2-normalized."""
    weights = [count_tokens(MODEL, piece) - SPECIAL_TOKENS for piece in pieces]
    vectors = [emu.embedding(piece) for piece in pieces]
    mean = [0.0] * len(vectors[0])
    for vector, weight in zip(vectors, weights, strict=True):
        for i, value in enumerate(vector):
            mean[i] += weight * value
    norm = math.sqrt(math.fsum(x * x for x in mean))
    return [x / norm for x in mean]


# -- LangChain: OpenAIEmbeddings' names -------------------------------------------------------


def test_chunk_size_is_the_batch_size(emu):
    embeddings = lc(emu, chunk_size=3)

    vectors = embeddings.embed_documents(SEVEN)

    assert embeddings.batch_size == 3
    assert sorted(map(len, batches(emu))) == [1, 3, 3]
    assert vectors == [emu.embedding(t) for t in SEVEN]


def test_openai_key_and_base_url_names_reach_the_client(emu):
    embeddings = lc(emu)

    assert embeddings.api_key is not None and embeddings.api_key.get_secret_value() == emu.api_key
    assert embeddings.base_url == emu.base_url
    assert embeddings.embed_documents(["hello"]) == [emu.embedding("hello")]
    assert embeddings.client.stats.requests == 1


def test_plain_renames_read_and_write_our_fields_as_attributes(emu):
    embeddings = lc(emu, chunk_size=3, request_timeout=5)
    assert (embeddings.chunk_size, embeddings.request_timeout) == (3, 5.0)
    assert embeddings.openai_api_base == emu.base_url

    embeddings.chunk_size = 2
    embeddings.embed_documents(SEVEN[:4])

    assert embeddings.batch_size == 2
    assert [len(b) for b in batches(emu)] == [2, 2]
    with pytest.raises(ValidationError, match="batch_size\n  Input should be greater than"):
        embeddings.chunk_size = 0
    assert not hasattr(NebulaEmbeddings, "check_embedding_ctx_length")
    assert not hasattr(NebulaEmbeddings, "embedding_ctx_length")


def test_show_progress_bar_draws_the_bar(emu, capsys):
    embeddings = lc(emu, show_progress_bar=True, chunk_size=3)

    embeddings.embed_documents(SEVEN)

    assert embeddings.show_progress is True
    assert "7/7" in capsys.readouterr().err


def test_request_timeout_is_the_per_response_timeout(emu):
    embeddings = lc(emu, request_timeout=0.5)
    assert embeddings.timeout == 0.5
    assert embeddings.client.config.timeout == 0.5
    emu.enqueue(Fault.delay(3))

    with pytest.raises(APITimeoutError):
        embeddings.embed_query("slow")  # the default 60 s would have waited the 3 s out


def test_request_timeout_none_keeps_the_default(emu):
    assert lc(emu, request_timeout=None).timeout == 60.0


def test_embedding_ctx_length_averages_pieces_as_openai_does(emu):
    """OpenAI's default check_embedding_ctx_length=True applies: split, embed, average."""
    embeddings = lc(emu, embedding_ctx_length=16)
    pieces = split_to_tokens(MODEL, LONG, 16)
    assert len(pieces) > 3 and all(count_tokens(MODEL, p) <= 16 for p in pieces)

    [short, long] = embeddings.embed_documents(["short text", LONG])

    assert (embeddings.max_input_tokens, embeddings.on_long_input) == (16, "average")
    assert batches(emu) == [["short text", *pieces]]
    assert short == emu.embedding("short text")
    assert long == weighted_mean(emu, pieces)


def test_check_embedding_ctx_length_true_is_average_at_the_model_limit(emu):
    embeddings = lc(emu, check_embedding_ctx_length=True)
    text = "retrieval systems split documents into chunks " * 120  # over 512 tokens
    pieces = split_to_tokens(MODEL, text, 512)
    assert len(pieces) == 2

    [vector] = embeddings.embed_documents([text])

    assert embeddings.on_long_input == "average"
    assert batches(emu) == [pieces]
    assert vector == weighted_mean(emu, pieces)


def test_check_embedding_ctx_length_false_refuses_long_inputs_before_sending(emu):
    embeddings = lc(emu, check_embedding_ctx_length=False, embedding_ctx_length=16)

    with pytest.raises(InputTooLongError) as caught:
        embeddings.embed_documents(["short text", LONG, "another"])

    assert embeddings.on_long_input == "error"
    assert caught.value.positions == [1]
    assert emu.embeddings_requests == []


def test_our_long_input_setting_wins_over_the_implied_average(emu):
    embeddings = lc(emu, embedding_ctx_length=16, on_long_input="truncate")

    assert (embeddings.max_input_tokens, embeddings.on_long_input) == (16, "truncate")


def test_max_retries_dimensions_and_headers_keep_their_names(emu):
    embeddings = NebulaEmbeddings(
        model="Qwen/Qwen3-Embedding-8B",
        openai_api_key=emu.api_key,
        openai_api_base=emu.base_url,
        max_retries=1,
        dimensions=256,
        default_headers={"X-Team": "search"},
    )
    emu.enqueue(Fault.status(503))

    [vector] = embeddings.embed_documents(["hello"])

    assert len(vector) == 256
    assert [r.status for r in emu.embeddings_requests] == [503, 200]
    assert emu.embeddings_requests[1].headers["x-team"] == "search"


def test_an_openai_name_and_ours_with_different_values_is_refused(emu):
    with pytest.raises(ConfigurationError) as caught:
        lc(emu, chunk_size=16, batch_size=32)
    assert str(caught.value) == (
        "NebulaEmbeddings got both chunk_size and batch_size with different values; "
        "OpenAIEmbeddings calls batch_size chunk_size: pass only one of them."
    )
    assert lc(emu, chunk_size=16, batch_size=16).batch_size == 16


def test_conflicting_keys_are_refused_without_showing_either(emu):
    with pytest.raises(ConfigurationError) as caught:
        NebulaEmbeddings(openai_api_key=SECRET, api_key=SECRET + "2", base_url=emu.base_url)
    assert SECRET not in str(caught.value)
    assert "openai_api_key and api_key" in str(caught.value)


def test_check_embedding_ctx_length_conflicting_with_on_long_input_is_refused(emu):
    with pytest.raises(ConfigurationError, match="check_embedding_ctx_length and on_long_input"):
        lc(emu, check_embedding_ctx_length=True, on_long_input="truncate")


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        (
            "tiktoken_model_name",
            "cl100k_base",
            "token counts use the model's own tokenizer, never tiktoken; remove it",
        ),
        (
            "allowed_special",
            "all",
            "token counts use the model's own tokenizer, never tiktoken; remove it",
        ),
        (
            "deployment",
            "my-deployment",
            "it is for Azure OpenAI; NebulaBlock has no API "
            "versions or deployments; pass the NebulaBlock model id as model=",
        ),
        (
            "openai_api_version",
            "2024-02-01",
            "it is for Azure OpenAI; NebulaBlock has no API versions or deployments",
        ),
        ("openai_organization", "org-1", "NebulaBlock has no organizations; the API key is enough"),
        (
            "openai_proxy",
            "http://proxy:3128",
            "set HTTPS_PROXY in the environment; the client honours it",
        ),
        ("headers", {"X": "1"}, "pass default_headers="),
        (
            "model_kwargs",
            {"user": "me"},
            "its entries go into OpenAI's request body, and "
            "NebulaBlock's takes only model and input (for shorter Matryoshka vectors pass "
            "dimensions=)",
        ),
        (
            "skip_empty",
            True,
            "empty or whitespace-only texts raise ValueError naming their "
            "positions; drop them before embedding",
        ),
        (
            "retry_min_seconds",
            1,
            "retries back off exponentially with jitter and follow "
            "Retry-After; bound them with max_retries= and deadline=",
        ),
        (
            "http_client",
            object(),
            "the client keeps its own connection pool; for a proxy set "
            "HTTPS_PROXY in the environment, for extra headers pass default_headers=",
        ),
    ],
)
def test_langchain_refuses_what_it_cannot_honour_naming_the_replacement(emu, name, value, why):
    with pytest.raises(ConfigurationError) as caught:
        lc(emu, **{name: value})
    assert str(caught.value) == (
        f"NebulaEmbeddings does not take {name} (from OpenAIEmbeddings): {why}."
    )


@pytest.mark.parametrize(
    "options",
    [
        {"tiktoken_enabled": False},
        {"tiktoken_enabled": True},
        {"model_kwargs": {}},
        {"skip_empty": False},
        {"default_query": None},
        {"openai_api_version": None},
    ],
)
def test_langchain_accepts_values_that_ask_for_what_we_do(emu, options):
    embeddings = lc(emu, **options)
    assert embeddings.embed_documents(["hello"]) == [emu.embedding("hello")]


def test_the_key_given_by_its_openai_name_never_shows():
    embeddings = NebulaEmbeddings(openai_api_key=SECRET, openai_api_base="http://127.0.0.1:9/v1")

    assert embeddings.api_key is not None and embeddings.api_key.get_secret_value() == SECRET
    for shown in (
        repr(embeddings),
        str(embeddings),
        embeddings.model_dump_json(),
        json.dumps(embeddings.model_dump(), default=str),
        json.dumps(embeddings.model_dump(by_alias=True), default=str),
        repr(embeddings.client),
    ):
        assert SECRET not in shown
        assert "openai_api_key" not in shown


# -- LlamaIndex: OpenAIEmbedding's names ------------------------------------------------------


def test_api_base_and_embed_batch_size(emu):
    embed_model = li(emu, embed_batch_size=3, timeout=20.0)

    vectors = embed_model.get_text_embedding_batch(SEVEN)

    assert embed_model.base_url == emu.base_url
    assert embed_model.client.config.timeout == 20.0
    assert sorted(map(len, batches(emu))) == [1, 3, 3]
    assert vectors == [emu.embedding(t) for t in SEVEN]


def test_api_base_attribute_reads_and_moves_the_base_url(emu):
    embed_model = li(emu)
    assert embed_model.api_base == emu.base_url

    with NebulaEmulator(api_key=emu.api_key) as other:
        embed_model.api_base = other.base_url
        embed_model.get_text_embedding("hello")
        assert len(other.embeddings_requests) == 1
    assert emu.embeddings_requests == []


def test_model_is_the_model_name(emu):
    embed_model = li(emu, model="BAAI/bge-large-en-v1.5")

    assert embed_model.model_name == "BAAI/bge-large-en-v1.5"
    embed_model.get_text_embedding("hello")
    assert emu.embeddings_requests[0].model == "BAAI/bge-large-en-v1.5"


class InFlightServer(CountingHTTPServer):
    """Counts requests in flight; each waits (up to a second) for `probe` to be in flight at
    once, so a bound below `probe` shows as a peak equal to the bound, and no bound as more."""

    def __init__(self, probe: int) -> None:
        self.peak = 0
        self._in_flight = 0
        self._changed = threading.Condition()
        body = json.dumps(
            {
                "object": "list",
                "model": MODEL,
                "data": [{"object": "embedding", "index": 0, "embedding": [0.6, 0.8]}],
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            }
        ).encode()

        def respond(path: str) -> tuple[int, dict[str, str], bytes]:
            with self._changed:
                self._in_flight += 1
                self.peak = max(self.peak, self._in_flight)
                self._changed.notify_all()
                self._changed.wait_for(lambda: self.peak >= probe, timeout=1.0)
                self._in_flight -= 1
            return 200, {"Content-Type": "application/json"}, body

        super().__init__(respond)


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_num_workers_bounds_requests_in_flight(asynchronous):
    with InFlightServer(probe=4) as server:
        # The default max_concurrency is 4: without the mapping the probe would see 4.
        embed_model = NebulaEmbedding(
            api_key="ak_test", api_base=server.base_url, embed_batch_size=1, num_workers=3
        )
        texts = [f"text {i}" for i in range(6)]
        if asynchronous:
            vectors = await embed_model.aget_text_embedding_batch(texts)
        else:
            vectors = embed_model.get_text_embedding_batch(texts)

    assert embed_model.max_concurrency == 3
    assert embed_model.num_workers is None  # consumed: one setting, read as max_concurrency
    assert embed_model.client.config.max_concurrency == 3
    assert vectors == [[0.6, 0.8]] * 6
    assert server.peak == 3


def test_num_workers_survives_to_dict_and_pickle(emu):
    embed_model = li(emu, num_workers=3)

    restored = NebulaEmbedding.from_dict(embed_model.to_dict(), api_key=emu.api_key)
    unpickled = pickle.loads(pickle.dumps(embed_model))

    assert restored.max_concurrency == unpickled.max_concurrency == 3
    assert unpickled.client.config.max_concurrency == 3


def test_num_workers_and_a_different_max_concurrency_are_refused(emu):
    with pytest.raises(ConfigurationError) as caught:
        li(emu, num_workers=8, max_concurrency=4)
    assert str(caught.value) == (
        "NebulaEmbedding got both num_workers and max_concurrency with different values; "
        "OpenAIEmbedding calls max_concurrency num_workers: pass only one of them."
    )
    assert li(emu, num_workers=4, max_concurrency=4).max_concurrency == 4


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        (
            "additional_kwargs",
            {"user": "me"},
            "its entries go into OpenAI's request body, and "
            "NebulaBlock's takes only model and input (for shorter Matryoshka vectors pass "
            "dimensions=)",
        ),
        (
            "api_version",
            "2024-02-01",
            "it is for Azure OpenAI; NebulaBlock has no API versions or deployments",
        ),
        (
            "reuse_client",
            False,
            "one client is always shared, safely across threads and event loops",
        ),
        (
            "mode",
            "similarity",
            "queries get the model's retrieval instruction; change it with query_instruction=",
        ),
        (
            "http_client",
            object(),
            "the client keeps its own connection pool; for a proxy set "
            "HTTPS_PROXY in the environment, for extra headers pass default_headers=",
        ),
    ],
)
def test_llama_index_refuses_what_it_cannot_honour_naming_the_replacement(emu, name, value, why):
    with pytest.raises(ConfigurationError) as caught:
        li(emu, **{name: value})
    assert str(caught.value) == (
        f"NebulaEmbedding does not take {name} (from OpenAIEmbedding): {why}."
    )


@pytest.mark.parametrize(
    "options",
    [
        {"additional_kwargs": {}},
        {"api_version": ""},
        {"reuse_client": True},
        {"mode": "text_search"},
        {"mode": OpenAIEmbeddingMode.TEXT_SEARCH_MODE},
        {"num_workers": None},
    ],
)
def test_llama_index_accepts_values_that_ask_for_what_we_do(emu, options):
    embed_model = li(emu, **options)
    assert embed_model.get_text_embedding("hello") == emu.embedding("hello")


def test_llama_index_refuses_unknown_arguments(emu):
    with pytest.raises(ValidationError, match=r"batchsize\n  Extra inputs are not permitted"):
        li(emu, batchsize=8)


def test_llama_index_key_never_shows_with_openai_names(emu):
    embed_model = NebulaEmbedding(api_key=SECRET, api_base=emu.base_url, num_workers=2)

    for shown in (repr(embed_model), embed_model.to_json(), str(embed_model.to_dict())):
        assert SECRET not in shown
        assert "api_base" not in shown
