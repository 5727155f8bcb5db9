"""NebulaEmbedding (LlamaIndex) against the emulator over real HTTP: the BaseEmbedding contract,
concurrent batches sync and async, query instructions, indexes, ingestion in worker processes,
Qdrant on disk, the embeddings cache, pickling and secret hygiene (SPEC §3-4)."""

from __future__ import annotations

import logging
import math
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import llama_index.core
import pytest
from llama_index.core import Document, Settings, StorageContext, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import Field
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload, LlamaDebugHandler
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.embedding import (
    EmbeddingEndEvent,
    EmbeddingStartEvent,
)
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import MetadataMode
from llama_index.core.storage.kvstore import SimpleKVStore
from llama_index.vector_stores.qdrant import QdrantVectorStore
from qdrant_client import QdrantClient

from llama_index.embeddings.nebula import NebulaEmbedding as ConventionalNebulaEmbedding
from llama_index_nebula import NebulaEmbedding
from nebula_core import AuthenticationError, BadRequestError, ConfigurationError
from nebula_core.models import QWEN3_QUERY_INSTRUCTION, RETRIEVAL_QUERY_INSTRUCTION
from nebula_core.testing import Fault, NebulaEmulator
from tests.conftest import TEXTS, LoopTicks
from tests.servers import CountingServer, vector_of

DOCS = [
    "NebulaBlock API keys are created in the dashboard and usually start with ak_.",
    "Platform access tokens expire two hours after login; request a new token then.",
    "The embeddings endpoint accepts a list of input strings and returns one vector each.",
    "Rate limits depend on the account tier: the free tier allows sixty requests per minute.",
    "Qdrant stores vectors on local disk when the client is opened with a path.",
    "Retries back off exponentially and honour the Retry-After header of throttled replies.",
]
QUESTION = "When do platform access tokens expire?"
ANSWER = DOCS[1]


@pytest.fixture
def make_embed(emu: NebulaEmulator):
    """NebulaEmbedding instances pointed at the emulator; their pools are closed afterwards."""
    made: list[NebulaEmbedding] = []

    def make(**overrides: Any) -> NebulaEmbedding:
        options: dict[str, Any] = {"api_key": emu.api_key, "base_url": emu.base_url}
        options.update(overrides)
        embed = NebulaEmbedding(**options)
        made.append(embed)
        return embed

    yield make
    for embed in made:
        embed.client.close()


def sent_inputs(emu: NebulaEmulator) -> list[list[str]]:
    return [request.inputs for request in emu.embeddings_requests]


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


# -- the LlamaIndex integration contract --------------------------------------------------


def test_is_a_llama_index_base_embedding():
    assert BaseEmbedding.__name__ in [base.__name__ for base in NebulaEmbedding.__mro__]
    assert NebulaEmbedding.class_name() == "NebulaEmbedding"


def test_conventional_import_path_is_the_same_class():
    assert ConventionalNebulaEmbedding is NebulaEmbedding


def test_defaults_match_the_spec(emu):
    # max_concurrency is 8, not the spec's 4: issue 14 measured 4 leaving a GPU server idle.
    embed = NebulaEmbedding(api_key=emu.api_key, base_url=emu.base_url)
    config = embed.client.config

    assert embed.model_name == "WhereIsAI/UAE-Large-V1"
    assert embed.embed_batch_size == 64
    assert (embed.max_concurrency, embed.max_retries, embed.timeout) == (8, 6, 60.0)
    assert (config.max_concurrency, config.max_retries, config.timeout) == (8, 6, 60.0)
    assert embed.query_instruction is None
    embed.client.close()


def test_client_options_are_passed_to_the_core(make_embed):
    embed = make_embed(
        max_concurrency=3,
        max_retries=2,
        timeout=7.5,
        deadline=30.0,
        requests_per_minute=120.0,
        tokens_per_minute=50_000.0,
        default_headers={"X-Team": "search"},
    )
    config = embed.client.config

    assert (config.max_concurrency, config.max_retries, config.timeout) == (3, 2, 7.5)
    assert (config.deadline, config.requests_per_minute, config.tokens_per_minute) == (
        30.0,
        120.0,
        50_000.0,
    )
    assert config.default_headers == {"X-Team": "search"}


@pytest.mark.parametrize("path", ["llama_index_nebula", "llama_index.embeddings.nebula"])
def test_import_without_llama_index_core_names_the_extra(path):
    # `None` in sys.modules makes every `import llama_index.core...` fail, as if not installed.
    code = (
        "import sys\n"
        "sys.modules['llama_index.core'] = None\n"
        "try:\n"
        f"    import {path}\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    assert "pip install 'nebulablock-embeddings[llama-index]'" in done.stdout


def test_env_vars_configure_it_and_arguments_win(nebula_env, monkeypatch):
    from_env = NebulaEmbedding()
    assert from_env.base_url == nebula_env.base_url
    assert from_env.get_text_embedding("a passage") == nebula_env.embedding("a passage")

    monkeypatch.setenv("NEBULA_API_KEY", "ak_not_this_one")
    monkeypatch.setenv("NEBULA_BASE_URL", "http://127.0.0.1:9/v1")
    explicit = NebulaEmbedding(api_key=nebula_env.api_key, base_url=nebula_env.base_url)
    assert explicit.get_text_embedding("a passage") == nebula_env.embedding("a passage")
    from_env.client.close()
    explicit.client.close()


def test_missing_key_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="NEBULA_API_KEY"):
        NebulaEmbedding()


# -- batches: exact, ordered, concurrent --------------------------------------------------


def test_batch_is_exact_in_order_and_split_by_embed_batch_size(emu, make_embed):
    vectors = make_embed(embed_batch_size=16).get_text_embedding_batch(TEXTS)

    assert vectors == [emu.embedding(text) for text in TEXTS]
    batches = sent_inputs(emu)
    assert len(batches) == 13  # ceil(200 / 16)
    assert sorted(batches) == sorted(TEXTS[start : start + 16] for start in range(0, 200, 16))


async def test_async_batch_is_exact_in_order_and_split_by_embed_batch_size(emu, make_embed):
    vectors = await make_embed(embed_batch_size=16).aget_text_embedding_batch(TEXTS)

    assert vectors == [emu.embedding(text) for text in TEXTS]
    batches = sent_inputs(emu)
    assert len(batches) == 13
    assert sorted(batches) == sorted(TEXTS[start : start + 16] for start in range(0, 200, 16))


def test_sync_batches_are_in_flight_together():
    with CountingServer(latency=0.05) as server:
        embed = NebulaEmbedding(
            api_key="ak_test", base_url=server.base_url, embed_batch_size=2, max_concurrency=4
        )
        vectors = embed.get_text_embedding_batch(TEXTS[:16])

    assert vectors == [vector_of(text) for text in TEXTS[:16]]
    assert len(server.arrivals) == 8
    assert server.max_in_flight == 4  # four at a time, never five


async def test_async_batches_are_in_flight_together():
    with CountingServer(latency=0.05) as server:
        embed = NebulaEmbedding(
            api_key="ak_test", base_url=server.base_url, embed_batch_size=2, max_concurrency=4
        )
        vectors = await embed.aget_text_embedding_batch(TEXTS[:16])

    assert vectors == [vector_of(text) for text in TEXTS[:16]]
    assert len(server.arrivals) == 8
    assert server.max_in_flight == 4


async def test_async_batch_leaves_the_event_loop_free(emu, make_embed):
    embed = make_embed(embed_batch_size=2, max_concurrency=4)
    emu.latency = 0.2

    async with LoopTicks() as loop:
        await embed.aget_text_embedding_batch(TEXTS[:16])

    assert loop.ticks >= 10  # the loop kept running through ~0.4 s of network waits


def test_empty_batch_sends_nothing_and_empty_text_is_refused(emu, make_embed):
    embed = make_embed()

    assert embed.get_text_embedding_batch([]) == []
    with pytest.raises(ValueError, match="1"):
        embed.get_text_embedding_batch(["fine", "   "])
    assert emu.embeddings_requests == []


def test_reassigned_connection_setting_takes_effect(emu, make_embed):
    embed = make_embed()
    assert embed.get_text_embedding("a passage") == emu.embedding("a passage")

    embed.api_key = "ak_revoked_key"  # type: ignore[assignment]

    with pytest.raises(AuthenticationError) as caught:
        embed.get_text_embedding("a passage")
    assert caught.value.status_code == 401
    assert "ak_revoked_key" not in str(caught.value)


def test_show_progress_counts_every_text(emu, make_embed, capsys):
    make_embed(embed_batch_size=4).get_text_embedding_batch(TEXTS[:12], show_progress=True)

    err = capsys.readouterr().err
    assert "Generating embeddings" in err
    assert "12/12" in err


# -- queries get the model's instruction, documents never do --------------------------------


@pytest.mark.parametrize(
    ("model", "query_instruction", "prefix"),
    [
        ("WhereIsAI/UAE-Large-V1", None, RETRIEVAL_QUERY_INSTRUCTION),
        ("BAAI/bge-large-en-v1.5", None, RETRIEVAL_QUERY_INSTRUCTION),
        ("Qwen/Qwen3-Embedding-8B", None, QWEN3_QUERY_INSTRUCTION),
        ("acme/unknown-model", None, ""),
        ("WhereIsAI/UAE-Large-V1", "", ""),
        ("WhereIsAI/UAE-Large-V1", "query: ", "query: "),
    ],
)
async def test_queries_get_the_instruction_and_documents_do_not(
    emu, make_embed, model, query_instruction, prefix
):
    embed = make_embed(model_name=model, query_instruction=query_instruction)

    query = embed.get_query_embedding(QUESTION)
    aquery = await embed.aget_query_embedding(QUESTION)
    text = embed.get_text_embedding(ANSWER)
    atext = await embed.aget_text_embedding(ANSWER)
    texts = embed.get_text_embedding_batch(DOCS[:2])

    assert query == aquery == emu.embedding(prefix + QUESTION, model=model)
    assert text == atext == emu.embedding(ANSWER, model=model)
    assert texts == [emu.embedding(doc, model=model) for doc in DOCS[:2]]
    assert sent_inputs(emu) == [
        [prefix + QUESTION],
        [prefix + QUESTION],
        [ANSWER],
        [ANSWER],
        DOCS[:2],
    ]
    assert {request.model for request in emu.embeddings_requests} == {model}


# -- LlamaIndex indexes, pipelines and stores ---------------------------------------------


@pytest.mark.parametrize("use_async", [False, True])
def test_vector_store_index_retrieves_the_expected_node(emu, make_embed, use_async):
    embed = make_embed(embed_batch_size=2)
    index = VectorStoreIndex.from_documents(
        [Document(text=doc) for doc in DOCS], embed_model=embed, use_async=use_async
    )
    assert sorted(text for batch in sent_inputs(emu) for text in batch) == sorted(DOCS)
    assert len(emu.embeddings_requests) == 3

    hits = index.as_retriever(similarity_top_k=1).retrieve(QUESTION)

    assert [hit.node.get_content() for hit in hits] == [ANSWER]
    query_vector = emu.embedding(RETRIEVAL_QUERY_INSTRUCTION + QUESTION)
    assert hits[0].score == pytest.approx(cosine(query_vector, emu.embedding(ANSWER)))
    assert sent_inputs(emu)[-1] == [RETRIEVAL_QUERY_INSTRUCTION + QUESTION]


@pytest.mark.timeout(90)  # a worker that dies while starting makes multiprocessing.Pool hang
def test_ingestion_pipeline_with_worker_processes_gets_exact_vectors(emu, make_embed, monkeypatch):
    # LlamaIndex lowers num_workers to the CPU count; keep two worker processes on any runner.
    monkeypatch.setattr("multiprocessing.cpu_count", lambda: 2)
    # The splitter's tiktoken encoding is unpickled in the workers before LlamaIndex points
    # tiktoken at its bundled files, so offline runners would try to download it.
    tiktoken_cache = Path(llama_index.core.__file__).parent / "_static" / "tiktoken_cache"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tiktoken_cache))
    embed = make_embed(embed_batch_size=2)
    pipeline = IngestionPipeline(transformations=[SentenceSplitter(chunk_size=512), embed])

    # The workers are spawned with NEBULA_* unset (conftest): the key travels in the pickle.
    nodes = pipeline.run(documents=[Document(text=doc) for doc in DOCS], num_workers=2)

    contents = [node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]
    assert sorted(contents) == sorted(DOCS)
    assert [node.embedding for node in nodes] == [emu.embedding(text) for text in contents]
    assert sorted(text for batch in sent_inputs(emu) for text in batch) == sorted(DOCS)
    assert len(emu.embeddings_requests) == 4  # 3 + 3 nodes per worker, batches of 2


def test_settings_embed_model_is_used_by_indexes(emu, make_embed, monkeypatch):
    monkeypatch.setattr(Settings, "_embed_model", None)  # restores the global after the test
    embed = make_embed()
    Settings.embed_model = embed
    assert Settings.embed_model is embed

    index = VectorStoreIndex.from_documents([Document(text=doc) for doc in DOCS])
    hits = index.as_retriever(similarity_top_k=1).retrieve(QUESTION)

    assert [hit.node.get_content() for hit in hits] == [ANSWER]
    assert sent_inputs(emu) == [DOCS, [RETRIEVAL_QUERY_INSTRUCTION + QUESTION]]


@pytest.mark.filterwarnings("ignore:Payload indexes have no effect in the local Qdrant")
def test_qdrant_on_disk_survives_close_and_reopen(emu, make_embed, tmp_path):
    embed = make_embed()
    client = QdrantClient(path=str(tmp_path / "qdrant"))
    store = QdrantVectorStore(client=client, collection_name="nebula_docs")
    VectorStoreIndex.from_documents(
        [Document(text=doc) for doc in DOCS],
        storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=embed,
    )
    client.close()
    assert sent_inputs(emu) == [DOCS]

    client = QdrantClient(path=str(tmp_path / "qdrant"))
    try:
        store = QdrantVectorStore(client=client, collection_name="nebula_docs")
        index = VectorStoreIndex.from_vector_store(store, embed_model=embed)
        hits = index.as_retriever(similarity_top_k=1).retrieve(QUESTION)
    finally:
        client.close()

    assert [hit.node.get_content() for hit in hits] == [ANSWER]
    query_vector = emu.embedding(RETRIEVAL_QUERY_INSTRUCTION + QUESTION)
    # Qdrant stores float32: the score is the cosine of the exact vectors to ~1e-6.
    assert hits[0].score == pytest.approx(cosine(query_vector, emu.embedding(ANSWER)), abs=1e-5)
    assert sent_inputs(emu) == [DOCS, [RETRIEVAL_QUERY_INSTRUCTION + QUESTION]]  # no re-embedding


@pytest.mark.parametrize("use_async", [False, True])
async def test_embeddings_cache_sends_only_uncached_texts(emu, make_embed, use_async):
    embed = make_embed(embed_batch_size=4, embeddings_cache=SimpleKVStore())

    async def batch(texts: list[str]) -> list[list[float]]:
        if use_async:
            return await embed.aget_text_embedding_batch(texts)
        return embed.get_text_embedding_batch(texts)

    first = await batch(TEXTS[:10])
    assert len(emu.embeddings_requests) == 3

    second = await batch(TEXTS[:14])

    assert first == [emu.embedding(text) for text in TEXTS[:10]]
    assert second == [emu.embedding(text) for text in TEXTS[:14]]
    assert len(emu.embeddings_requests) == 4
    assert sent_inputs(emu)[-1] == TEXTS[10:14]

    assert await batch(TEXTS[:14]) == second
    assert len(emu.embeddings_requests) == 4


# -- instrumentation: one event pair per embed_batch_size slice, as LlamaIndex emits -------


class EventRecorder(BaseEventHandler):
    events: list[BaseEvent] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "EventRecorder"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)


@pytest.fixture
def recorder():
    """An event handler on LlamaIndex's root dispatcher, removed after the test."""
    root = get_dispatcher()
    handler = EventRecorder()
    root.add_event_handler(handler)
    yield handler
    root.event_handlers.remove(handler)


@pytest.mark.parametrize("use_async", [False, True])
async def test_each_slice_gets_its_events_and_callbacks(emu, make_embed, recorder, use_async):
    debug = LlamaDebugHandler()
    embed = make_embed(embed_batch_size=4, callback_manager=CallbackManager([debug]))

    if use_async:
        vectors = await embed.aget_text_embedding_batch(TEXTS[:10])
    else:
        vectors = embed.get_text_embedding_batch(TEXTS[:10])

    slices = [TEXTS[0:4], TEXTS[4:8], TEXTS[8:10]]
    starts = [e for e in recorder.events if isinstance(e, EmbeddingStartEvent)]
    ends = [e for e in recorder.events if isinstance(e, EmbeddingEndEvent)]
    assert [start.model_dict for start in starts] == [embed.to_payload()] * 3
    assert [end.chunks for end in ends] == slices
    assert [end.embeddings for end in ends] == [vectors[0:4], vectors[4:8], vectors[8:10]]
    pairs = debug.get_event_pairs(CBEventType.EMBEDDING)
    assert [pair[1].payload[EventPayload.CHUNKS] for pair in pairs] == slices
    assert vectors == [emu.embedding(text) for text in TEXTS[:10]]


def test_a_failed_batch_ends_its_callback_events_with_the_error(emu, make_embed):
    debug = LlamaDebugHandler()
    embed = make_embed(embed_batch_size=4, max_concurrency=1)
    embed.callback_manager = CallbackManager([debug])
    emu.enqueue(Fault.status(400))

    with pytest.raises(BadRequestError) as caught:
        embed.get_text_embedding_batch(TEXTS[:10])

    assert caught.value.status_code == 400
    assert len(emu.embeddings_requests) == 1  # the first error stops the batches not yet sent
    pairs = debug.get_event_pairs(CBEventType.EMBEDDING)
    assert len(pairs) == 3
    assert pairs[0][1].payload == {EventPayload.EXCEPTION: caught.value}


# -- pickling and secret hygiene ----------------------------------------------------------


def test_pickled_copy_keeps_key_and_settings_without_env(emu, make_embed):
    embed = make_embed(model_name="BAAI/bge-large-en-v1.5", embed_batch_size=8, timeout=9.0)

    restored = pickle.loads(pickle.dumps(embed))

    assert restored.to_dict() == embed.to_dict()
    assert restored.api_key == embed.api_key
    assert restored.client is not embed.client
    assert restored.get_text_embedding_batch(TEXTS[:3]) == [
        emu.embedding(text, model="BAAI/bge-large-en-v1.5") for text in TEXTS[:3]
    ]


def test_rebuilding_from_public_fields_keeps_the_key(emu, make_embed):
    # What LlamaIndex's BaseComponent.__setstate__ does in a worker process.
    embed = make_embed(query_instruction="")

    rebuilt = NebulaEmbedding(**embed.__dict__)

    assert rebuilt.get_query_embedding(QUESTION) == emu.embedding(QUESTION)


def test_key_resolved_from_env_travels_in_the_pickle(nebula_env, monkeypatch):
    embed = NebulaEmbedding()
    monkeypatch.delenv("NEBULA_API_KEY")
    monkeypatch.delenv("NEBULA_BASE_URL")

    restored = pickle.loads(pickle.dumps(embed))
    rebuilt = NebulaEmbedding(**embed.__dict__)  # what BaseComponent.__setstate__ runs

    for copy in (restored, rebuilt):
        assert copy.api_key is not None
        assert copy.api_key.get_secret_value() == nebula_env.api_key
        assert copy.base_url == nebula_env.base_url
        assert copy.get_text_embedding("a passage") == nebula_env.embedding("a passage")
        copy.client.close()
    embed.client.close()


def test_key_never_appears_in_dumps_repr_logs_or_events(emu, make_embed, recorder, caplog):
    caplog.set_level(logging.DEBUG)
    debug = LlamaDebugHandler()
    embed = make_embed(embed_batch_size=2, callback_manager=CallbackManager([debug]))
    emu.enqueue(Fault.status(503, retry_after="0"))

    embed.get_text_embedding_batch(TEXTS[:4])
    embed.get_query_embedding(QUESTION)

    key = emu.api_key
    assert "retry 1 of 6" in caplog.text  # the retry was logged...
    assert key not in caplog.text  # ...without the key
    assert recorder.events
    for event in recorder.events:
        assert key not in repr(event)
        assert key not in str(event.model_dump())
    for pair in debug.get_event_pairs():
        for event in pair:
            assert key not in repr(event.payload)
    assert "api_key" not in embed.to_dict()
    for shown in (embed.to_json(), str(embed.to_dict()), repr(embed), str(embed)):
        assert key not in shown
    assert embed.api_key is not None
    assert embed.api_key.get_secret_value() == key
    assert NebulaEmbedding.from_json(embed.to_json(), api_key=key).to_dict() == embed.to_dict()


def test_default_headers_are_sent_but_never_serialized(emu, make_embed):
    embed = make_embed(default_headers={"X-Gateway-Token": "gw_private_value"})

    embed.get_text_embedding("a passage")

    [request] = emu.embeddings_requests
    assert {k.lower(): v for k, v in request.headers.items()}["x-gateway-token"] == (
        "gw_private_value"
    )
    for shown in (embed.to_json(), repr(embed), str(embed)):
        assert "gw_private_value" not in shown
    assert pickle.loads(pickle.dumps(embed)).default_headers == {
        "X-Gateway-Token": "gw_private_value"
    }
