"""`NebulaEmbeddings` used the way LangChain users use it, against the emulator over real HTTP:
exact vectors, query instructions, batching and concurrency, vector stores, caches, pickling,
progress bars, configuration errors and secret hygiene."""

from __future__ import annotations

import asyncio
import logging
import pickle
import subprocess
import sys

import pytest
from langchain_classic.embeddings import CacheBackedEmbeddings
from langchain_classic.storage import LocalFileStore
from langchain_core.documents import Document
from langchain_core.stores import InMemoryByteStore
from langchain_core.vectorstores import InMemoryVectorStore
from pydantic import SecretStr, ValidationError

from langchain_nebula import NebulaEmbeddings
from nebula_core import DEFAULT_BASE_URL, AuthenticationError, ConfigurationError
from nebula_core.models import QWEN3_QUERY_INSTRUCTION, RETRIEVAL_QUERY_INSTRUCTION
from nebula_core.testing import Fault, NebulaEmulator
from tests.conftest import TEXTS, LoopTicks
from tests.servers import CountingServer, vector_of

DOCS = [
    Document(
        page_content="Qdrant keeps vectors on disk and answers similarity search.", id="qdrant"
    ),
    Document(page_content="Throttled calls back off exponentially after HTTP 429.", id="retry"),
    Document(page_content="API keys are created in the NebulaBlock dashboard.", id="keys"),
    Document(page_content="Platform tokens expire two hours after login.", id="tokens"),
]
QUESTION = "when does my platform token expire"


@pytest.fixture
def make_embeddings(emu):
    """NebulaEmbeddings pointed at the emulator."""

    def make(**options) -> NebulaEmbeddings:
        return NebulaEmbeddings(api_key=emu.api_key, base_url=emu.base_url, **options)

    return make


# -- what each text is sent as, and the vector it gets back ----------------------------------


def test_documents_are_sent_as_they_are_and_get_their_own_vectors(emu, make_embeddings):
    texts = TEXTS[:5]

    vectors = make_embeddings().embed_documents(texts)

    assert vectors == [emu.embedding(text) for text in texts]
    assert [r.inputs for r in emu.embeddings_requests] == [texts]
    assert emu.embeddings_requests[0].model == "WhereIsAI/UAE-Large-V1"


def test_a_query_gets_the_models_retrieval_instruction(emu, make_embeddings):
    vector = make_embeddings().embed_query(QUESTION)

    assert vector == emu.embedding(RETRIEVAL_QUERY_INSTRUCTION + QUESTION)
    assert [r.inputs for r in emu.embeddings_requests] == [[RETRIEVAL_QUERY_INSTRUCTION + QUESTION]]


@pytest.mark.parametrize(
    ("model", "query_instruction", "sent"),
    [
        ("BAAI/bge-large-en-v1.5", None, RETRIEVAL_QUERY_INSTRUCTION + QUESTION),
        ("Qwen/Qwen3-Embedding-8B", None, QWEN3_QUERY_INSTRUCTION + QUESTION),
        ("acme/unknown-model", None, QUESTION),
        ("WhereIsAI/UAE-Large-V1", "", QUESTION),
        ("WhereIsAI/UAE-Large-V1", "query: ", "query: " + QUESTION),
        ("Qwen/Qwen3-Embedding-8B", "Instruct: find the FAQ entry\nQuery: ", None),
    ],
)
async def test_query_instruction_default_off_or_custom(
    emu, make_embeddings, model, query_instruction, sent
):
    if sent is None:
        sent = query_instruction + QUESTION
    embeddings = make_embeddings(model=model, query_instruction=query_instruction)

    sync_vector = embeddings.embed_query(QUESTION)
    async_vector = await embeddings.aembed_query(QUESTION)
    documents = await embeddings.aembed_documents([QUESTION])

    assert sync_vector == async_vector == emu.embedding(sent, model=model)
    assert documents == [emu.embedding(QUESTION, model=model)]  # documents are never prefixed
    assert [r.inputs for r in emu.embeddings_requests] == [[sent], [sent], [QUESTION]]
    assert {r.model for r in emu.embeddings_requests} == {model}


async def test_async_documents_match_sync_documents(emu, make_embeddings):
    embeddings = make_embeddings(batch_size=7)

    vectors = await embeddings.aembed_documents(TEXTS[:30])

    assert vectors == [emu.embedding(text) for text in TEXTS[:30]]
    assert len(emu.embeddings_requests) == 5  # ceil(30 / 7)


def test_an_empty_list_sends_nothing(emu, make_embeddings):
    assert make_embeddings().embed_documents([]) == []
    assert emu.embeddings_requests == []


def test_blank_texts_are_refused_before_any_request(emu, make_embeddings):
    with pytest.raises(ValueError, match=r"position"):
        make_embeddings().embed_documents(["fine", "   ", "also fine"])

    assert emu.embeddings_requests == []


def test_a_wrong_key_is_an_authentication_error(emu):
    embeddings = NebulaEmbeddings(api_key="ak_wrong", base_url=emu.base_url)

    with pytest.raises(AuthenticationError) as caught:
        embeddings.embed_query("hello")

    assert caught.value.status_code == 401
    assert len(emu.embeddings_requests) == 1  # a 401 is never retried


# -- batching and concurrency through the adapter -------------------------------------------


def test_documents_are_split_into_batches_of_batch_size(emu, make_embeddings):
    texts = TEXTS[:50]

    vectors = make_embeddings(batch_size=8, max_concurrency=1).embed_documents(texts)

    assert vectors == [emu.embedding(text) for text in texts]
    assert [r.inputs for r in emu.embeddings_requests] == [
        texts[start : start + 8] for start in range(0, 50, 8)
    ]


def test_sync_batches_run_concurrently_up_to_max_concurrency():
    texts = TEXTS[:64]  # 8 batches
    with CountingServer(latency=0.05) as server:
        embeddings = NebulaEmbeddings(
            api_key="ak_test", base_url=server.base_url, batch_size=8, max_concurrency=4
        )
        vectors = embeddings.embed_documents(texts)

    assert vectors == [vector_of(text) for text in texts]
    assert len(server.arrivals) == 8
    assert server.max_in_flight == 4  # concurrent, and never one more than allowed


async def test_async_batches_are_truly_concurrent():
    texts = TEXTS[:64]
    with CountingServer(latency=0.1) as server:
        embeddings = NebulaEmbeddings(
            api_key="ak_test", base_url=server.base_url, batch_size=8, max_concurrency=4
        )
        async with LoopTicks() as loop:
            vectors = await embeddings.aembed_documents(texts)

    assert vectors == [vector_of(text) for text in texts]
    assert server.max_in_flight == 4  # sequential would have one at a time
    assert loop.ticks >= 10  # the event loop kept running during the requests (>= 0.2 s)


async def test_gathered_async_queries_overlap():
    questions = [f"question number {i}" for i in range(4)]
    with CountingServer(latency=0.1) as server:
        embeddings = NebulaEmbeddings(
            api_key="ak_test", base_url=server.base_url, max_concurrency=4
        )
        vectors = await asyncio.gather(*(embeddings.aembed_query(q) for q in questions))

    assert vectors == [vector_of(RETRIEVAL_QUERY_INSTRUCTION + q) for q in questions]
    assert server.max_in_flight == 4  # four requests side by side, not one after another


# -- vector stores and caches ----------------------------------------------------------------


def test_in_memory_vector_store_retrieves_the_expected_document(emu, make_embeddings):
    store = InMemoryVectorStore.from_documents(DOCS, embedding=make_embeddings())

    found = store.similarity_search(QUESTION, k=1)

    assert [doc.id for doc in found] == ["tokens"]
    assert store.store["tokens"]["vector"] == emu.embedding(DOCS[3].page_content)
    assert [r.inputs for r in emu.embeddings_requests] == [
        [doc.page_content for doc in DOCS],
        [RETRIEVAL_QUERY_INSTRUCTION + QUESTION],
    ]


def test_qdrant_local_collection_survives_close_and_reopen(emu, make_embeddings, tmp_path):
    from langchain_qdrant import QdrantVectorStore  # noqa: PLC0415 - slow import, one test

    embeddings = make_embeddings()
    docs = [Document(page_content=doc.page_content) for doc in DOCS]  # Qdrant ids are UUIDs
    store = QdrantVectorStore.from_documents(
        docs, embedding=embeddings, path=str(tmp_path), collection_name="faq"
    )
    assert [doc.page_content for doc in store.similarity_search(QUESTION, k=1)] == [
        DOCS[3].page_content
    ]
    store.client.close()
    requests_before_reopen = len(emu.embeddings_requests)

    reopened = QdrantVectorStore.from_existing_collection(
        embedding=pickle.loads(pickle.dumps(embeddings)), path=str(tmp_path), collection_name="faq"
    )
    try:
        found = reopened.similarity_search_with_score(QUESTION, k=2)
    finally:
        reopened.client.close()

    assert found[0][0].page_content == DOCS[3].page_content
    assert found[0][1] > found[1][1]
    query = [RETRIEVAL_QUERY_INSTRUCTION + QUESTION]
    # langchain-qdrant embeds "dummy_text" to learn (or, on reopening, check) the vector size.
    assert [r.inputs for r in emu.embeddings_requests[:requests_before_reopen]] == [
        ["dummy_text"],
        [doc.page_content for doc in DOCS],
        query,
    ]
    # Reopening re-embeds no document: only the size probe and the question are sent.
    assert [r.inputs for r in emu.embeddings_requests[requests_before_reopen:]] == [
        ["dummy_text"],
        query,
    ]


def test_cache_backed_embeddings_send_only_uncached_texts(emu, make_embeddings):
    cached = CacheBackedEmbeddings.from_bytes_store(
        make_embeddings(),
        InMemoryByteStore(),
        namespace="WhereIsAI/UAE-Large-V1",
        key_encoder="sha256",
    )

    first = cached.embed_documents(TEXTS[:3])
    second = cached.embed_documents(TEXTS[:4])

    assert first == [emu.embedding(text) for text in TEXTS[:3]]
    assert second == [emu.embedding(text) for text in TEXTS[:4]]
    assert [r.inputs for r in emu.embeddings_requests] == [TEXTS[:3], [TEXTS[3]]]


async def test_a_file_cache_is_reused_by_a_new_process_worth_of_objects(
    emu, make_embeddings, tmp_path
):
    def build() -> CacheBackedEmbeddings:
        return CacheBackedEmbeddings.from_bytes_store(
            make_embeddings(),
            LocalFileStore(tmp_path),
            namespace="WhereIsAI/UAE-Large-V1",
            key_encoder="sha256",
        )

    first = await build().aembed_documents(TEXTS[:5])
    again = await build().aembed_documents(TEXTS[:5])

    assert first == again == [emu.embedding(text) for text in TEXTS[:5]]
    assert len(emu.embeddings_requests) == 1  # the second run was served from disk


# -- pickling, progress ------------------------------------------------------------------------


def test_an_unpickled_instance_embeds_correctly(emu, make_embeddings):
    embeddings = make_embeddings(model="BAAI/bge-large-en-v1.5", batch_size=3)
    embeddings.embed_documents(["warm up the connection pool"])

    clone = pickle.loads(pickle.dumps(embeddings))

    assert clone.model_dump() == embeddings.model_dump()
    assert clone.embed_documents(TEXTS[:7]) == [
        emu.embedding(text, model="BAAI/bge-large-en-v1.5") for text in TEXTS[:7]
    ]
    assert len(emu.embeddings_requests) == 1 + 3  # ceil(7 / 3) after unpickling


def test_show_progress_draws_a_bar_over_the_texts(emu, make_embeddings, capsys):
    vectors = make_embeddings(show_progress=True, batch_size=10).embed_documents(TEXTS[:30])

    err = capsys.readouterr().err
    assert vectors == [emu.embedding(text) for text in TEXTS[:30]]
    assert "Embedding" in err
    assert "30/30" in err


async def test_show_progress_works_in_async_code(emu, make_embeddings, capsys):
    await make_embeddings(show_progress=True, batch_size=4).aembed_documents(TEXTS[:12])

    assert "12/12" in capsys.readouterr().err


def test_no_progress_bar_by_default(emu, make_embeddings, capsys):
    make_embeddings(batch_size=10).embed_documents(TEXTS[:30])

    assert capsys.readouterr().err == ""


# -- configuration -----------------------------------------------------------------------------


def test_key_and_base_url_come_from_the_environment(emu, monkeypatch):
    monkeypatch.setenv("NEBULA_API_KEY", emu.api_key)
    monkeypatch.setenv("NEBULA_BASE_URL", emu.base_url)

    embeddings = NebulaEmbeddings()

    assert embeddings.api_key == SecretStr(emu.api_key)
    assert embeddings.base_url == emu.base_url
    assert embeddings.embed_query("hi") == emu.embedding(RETRIEVAL_QUERY_INSTRUCTION + "hi")


def test_arguments_win_over_the_environment(emu, monkeypatch):
    monkeypatch.setenv("NEBULA_API_KEY", "ak_stale_key_from_env")
    monkeypatch.setenv("NEBULA_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens there

    embeddings = NebulaEmbeddings(api_key=emu.api_key, base_url=emu.base_url)

    assert embeddings.embed_documents(["hi"]) == [emu.embedding("hi")]


def test_base_url_defaults_to_the_service(monkeypatch):
    assert NebulaEmbeddings(api_key="ak_x").base_url is None
    assert NebulaEmbeddings(api_key="ak_x").client.base_url == DEFAULT_BASE_URL

    monkeypatch.setenv("NEBULA_BASE_URL", "")  # set but empty counts as unset, as in the core

    assert NebulaEmbeddings(api_key="ak_x").client.base_url == DEFAULT_BASE_URL


def test_a_missing_key_fails_at_construction_and_says_how_to_set_it():
    with pytest.raises(ConfigurationError, match=r"pass api_key=\.\.\. or set the NEBULA_API_KEY"):
        NebulaEmbeddings()


def test_an_unknown_option_is_refused_by_name():
    with pytest.raises(ValidationError, match=r"batchsize\n  Extra inputs are not permitted"):
        NebulaEmbeddings(api_key="ak_x", batchsize=16)


def test_the_alias_free_field_names_are_the_public_api():
    embeddings = NebulaEmbeddings(
        api_key="ak_x",
        base_url="https://proxy.example.com/v1",
        model="BAAI/bge-large-en-v1.5",
        batch_size=16,
        max_concurrency=2,
        max_retries=1,
        timeout=5.0,
        show_progress=True,
        query_instruction="",
        default_headers={"X-Team": "search"},
        requests_per_minute=60,
        tokens_per_minute=60_000,
        deadline=30,
    )

    config = embeddings.client.config
    assert (config.base_url, config.timeout, config.max_retries, config.max_concurrency) == (
        "https://proxy.example.com/v1",
        5.0,
        1,
        2,
    )
    assert config.default_headers == {"X-Team": "search"}
    assert (config.requests_per_minute, config.tokens_per_minute, config.deadline) == (
        60,
        60_000,
        30.0,
    )


@pytest.mark.parametrize(
    ("option", "value", "error", "message"),
    [
        (
            "batch_size",
            0,
            ValidationError,
            r"batch_size\n  Input should be greater than or equal to 1",
        ),
        ("max_concurrency", 0, ConfigurationError, r"max_concurrency must be an integer >= 1"),
        ("max_retries", -1, ConfigurationError, r"max_retries must be an integer >= 0"),
        ("timeout", 0, ConfigurationError, r"timeout must be a positive number"),
        ("deadline", -5, ConfigurationError, r"deadline must be a positive number"),
        ("base_url", "inference.nebulablock.com", ConfigurationError, r"is not an http\(s\) URL"),
        ("timeout", "soon", ValidationError, r"timeout\n  Input should be a valid number"),
        (
            "default_headers",
            {"Authorization": "Bearer x"},
            ConfigurationError,
            r"default_headers must not set Authorization",
        ),
    ],
)
def test_bad_option_values_are_refused_by_name(option, value, error, message):
    with pytest.raises(error, match=message):
        NebulaEmbeddings(api_key="ak_x", **{option: value})


def test_reassigned_settings_take_effect(emu):
    embeddings = NebulaEmbeddings(api_key=emu.api_key, base_url="http://127.0.0.1:9/v1")

    embeddings.base_url = emu.base_url
    embeddings.max_concurrency = 2

    assert embeddings.embed_documents(["hi"]) == [emu.embedding("hi")]
    assert embeddings.client.config.max_concurrency == 2
    with pytest.raises(ValidationError, match="batch_size"):
        embeddings.batch_size = 0


def test_importing_without_langchain_names_the_extra():
    # A fresh interpreter in which langchain_core cannot be imported.
    code = (
        "import sys; sys.modules['langchain_core'] = None\n"
        "try:\n"
        "    import langchain_nebula\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    assert "pip install 'nebulablock-embeddings[langchain]'" in result.stdout


# -- secret hygiene ----------------------------------------------------------------------------


def test_the_key_never_shows_in_repr_dumps_or_debug_logs(caplog):
    secret = "ak_live_9f8e7d6c5b4a39281706"
    caplog.set_level(logging.DEBUG)
    with NebulaEmulator(api_key=secret) as emu:
        emu.enqueue(Fault.status(429, retry_after="0"))
        embeddings = NebulaEmbeddings(api_key=secret, base_url=emu.base_url)

        vectors = embeddings.embed_documents(["one", "two"])

        assert vectors == [emu.embedding("one"), emu.embedding("two")]
        assert len(emu.embeddings_requests) == 2  # the 429, then the retry

    assert embeddings.api_key is not None
    assert embeddings.api_key.get_secret_value() == secret  # it is there, just never shown
    shown = [
        repr(embeddings),
        str(embeddings),
        str(embeddings.model_dump()),
        embeddings.model_dump_json(),
        repr(embeddings.client),
        caplog.text,
    ]
    assert any("retry 1 of 6" in record.getMessage() for record in caplog.records)
    for text in shown:
        assert secret not in text
    assert embeddings.model_dump_json().count('"api_key":"**********"') == 1
