"""`NebulaEmbedding`: LlamaIndex's `BaseEmbedding` over `nebula_core.NebulaClient`.

Only framework glue lives here: field mapping, the `_get_*` hooks, and one override of the
batch entry points so that LlamaIndex's batches run concurrently instead of one after another.
Batching, concurrency, retries, ordering, validation and query instructions are the core's,
shared with the LangChain adapter.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

try:
    import llama_index.core.instrumentation as instrument
    from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
    from llama_index.core.bridge.pydantic import (
        ConfigDict,
        Field,
        PrivateAttr,
        SecretStr,
        model_validator,
    )
    from llama_index.core.callbacks.base import EventContext
    from llama_index.core.callbacks.schema import CBEventType, EventPayload
    from llama_index.core.instrumentation.events.embedding import (
        EmbeddingEndEvent,
        EmbeddingStartEvent,
    )
except ImportError as error:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "llama_index_nebula needs llama-index-core, which is not installed: "
        "pip install 'nebulablock-embeddings[llama-index]'"
    ) from error
from typing_extensions import Self

from nebula_core._adapters import BoundClient, client_options
from nebula_core._codec import EncodingFormat
from nebula_core._job import ProgressCallback
from nebula_core._migration import LLAMA_INDEX_NAMES, add_openai_attributes, from_openai_names
from nebula_core._progress import progress_bar
from nebula_core.client import NebulaClient
from nebula_core.models import DEFAULT_MODEL, with_query_instruction

__all__ = ["NebulaEmbedding"]

# llama-index-core re-exports get_dispatcher without `__all__`, hence the ignore.
dispatcher = instrument.get_dispatcher(__name__)  # type: ignore[attr-defined]

# `_get_text_embeddings(texts)` has a fixed signature; the batch entry points hand it their
# progress callback through this call-scoped variable (safe across threads and tasks).
_ON_PROGRESS: ContextVar[ProgressCallback | None] = ContextVar(
    "nebula_llama_index_progress", default=None
)


class NebulaEmbedding(BaseEmbedding):
    """NebulaBlock embedding models for LlamaIndex.

    Documents (nodes) are sent as they are; queries get the retrieval instruction the model
    card asks for. `get_text_embedding_batch` and `aget_text_embedding_batch` send their
    `embed_batch_size` batches concurrently (`max_concurrency` in flight), every request is
    retried on throttling and transient failures, and each vector is placed by the index the
    service returns. The API key never appears in `to_dict()`, `to_json()`, `repr` or
    instrumentation events, yet travels with the object when it is pickled (for
    `IngestionPipeline(num_workers=...)`, multiprocessing or Ray).

    Setup:
        ```bash
        pip install -U 'nebulablock-embeddings[llama-index]'
        export NEBULA_API_KEY="ak_..."
        ```
        No key yet? `nebula_core.testing.NebulaEmulator` runs a local stand-in of the service;
        pass its `base_url` and `api_key`.

    Example:
        ```python
        from llama_index.core import Settings, VectorStoreIndex, Document
        from llama_index.embeddings.nebula import NebulaEmbedding

        Settings.embed_model = NebulaEmbedding()        # WhereIsAI/UAE-Large-V1, 1024 dims
        index = VectorStoreIndex.from_documents([Document(text="Tokens expire after 2 hours.")])
        index.as_retriever().retrieve("When does my token expire?")
        ```

    Connection settings (`api_key`, `base_url`, `timeout`, `max_retries`, `max_concurrency`,
    `default_headers`, `requests_per_minute`, `tokens_per_minute`, `rate_limit_share`,
    `deadline`, `encoding_format`) may be reassigned; the shared client is rebuilt on the next
    call.

    Migrating from llama-index's `OpenAIEmbedding`: its `api_base`, `model`, `num_workers`
    (LlamaIndex's async fan-out, which becomes `max_concurrency`: batches in flight, sync and
    async alike) are accepted; its arguments that NebulaBlock cannot honour, and unknown
    ones, raise with the replacement. The table is in docs/migration.md.
    """

    # Unknown arguments fail instead of vanishing (BaseEmbedding ignores them).
    model_config = ConfigDict(extra="forbid")

    model_name: str = Field(
        default=DEFAULT_MODEL,
        description="NebulaBlock model id; unknown ids work, dims come from the first response.",
    )
    api_key: SecretStr | None = Field(
        default=None,
        exclude=True,
        repr=False,
        description="API key; NEBULA_API_KEY when not given. Never serialized or printed.",
    )
    base_url: str | None = Field(
        default=None,
        description="API root; NEBULA_BASE_URL, else https://inference.nebulablock.com/v1.",
    )
    embed_batch_size: int = Field(
        default=64, gt=0, le=2048, description="Most texts sent in one request."
    )
    max_concurrency: int = Field(
        default=8, description="Requests in flight at once within one call, sync or async."
    )
    max_retries: int = Field(
        default=6, description="Retries per request on 429, 5xx, timeouts, dropped connections."
    )
    timeout: float = Field(default=60.0, description="Seconds to wait for one response.")
    query_instruction: str | None = Field(
        default=None,
        description="Query prefix: None uses the model's own, '' none, other strings replace it.",
    )
    default_headers: dict[str, str] | None = Field(
        default=None,
        exclude=True,
        repr=False,
        # Gateways put credentials in custom headers too, so these are kept out of the
        # serialized form like the key (they still travel through pickling).
        description="Extra HTTP headers for every request (not Authorization: use api_key).",
    )
    requests_per_minute: float | None = Field(
        default=None, description="Client-side request pacing for the account tier's limit."
    )
    tokens_per_minute: float | None = Field(
        default=None, description="Client-side token pacing for the account tier's limit."
    )
    deadline: float | None = Field(
        default=None, description="Overall seconds one embed call may take, retries included."
    )
    on_long_input: Literal["truncate", "average", "error"] = Field(
        default="truncate", description="Over-long inputs: cut, average pieces, or raise."
    )
    max_input_tokens: int | None = Field(default=None, description="Token limit per input.")
    max_tokens_per_request: int | None = Field(default=None, description="Tokens per batch.")
    dimensions: int | None = Field(default=None, description="Matryoshka: first N values.")
    encoding_format: EncodingFormat = Field(
        default="auto",
        description="Wire encoding: 'auto' asks for base64 and falls back to floats for good if "
        "refused; 'float' sends exactly the documented body. Vectors are lists either way.",
    )
    rate_limit_share: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="This process's part of the account's rate limits (1 / processes sharing "
        "the key, e.g. with IngestionPipeline(num_workers=N)).",
    )

    _bound: BoundClient | None = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "NebulaEmbedding"

    @model_validator(mode="before")
    @classmethod
    def _openai_names(cls, data: Any) -> Any:
        # OpenAIEmbedding's names (api_base, num_workers, ...) become ours; the ones we cannot
        # honour raise with the replacement. See docs/migration.md.
        return from_openai_names(data, LLAMA_INDEX_NAMES, cls.__name__, "OpenAIEmbedding")

    @model_validator(mode="after")
    def _build_client(self) -> Self:
        self._connect()
        return self

    def _connect(self) -> NebulaClient:
        """Build the client from the fields; the core validates them and resolves the env.

        The resolved key and URL are written back to the fields: LlamaIndex's `__setstate__`
        re-runs `__init__` with the fields, so an unpickled copy (another process, a Ray
        worker) keeps the very same key and URL without any environment variable.
        """
        client = NebulaClient(api_key=self._key(), **client_options(self))
        self.api_key = SecretStr(client.config.api_key.reveal())
        self.base_url = client.base_url
        # Bound to the settings as written back, so the next call sees no change.
        self._bound = BoundClient(client, self._key(), client_options(self))
        return client

    def _key(self) -> str | None:
        key = self.api_key
        return key.get_secret_value() if isinstance(key, SecretStr) else key

    @property
    def client(self) -> NebulaClient:
        """The shared core client; rebuilt if a connection setting was reassigned or changed
        by `model_copy(update=...)`."""
        bound = self._bound
        if bound is None or not bound.matches(self._key(), client_options(self)):
            return self._connect()
        return bound.client

    # -- LlamaIndex hooks: one line each over the core ---------------------------------------

    def _queries(self, query: str) -> list[str]:
        return with_query_instruction(self.model_name, [query], self.query_instruction)

    def _get_query_embedding(self, query: str) -> Embedding:
        return self.client.embed(self._queries(query), self.model_name).embeddings[0]

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return (await self.client.aembed(self._queries(query), self.model_name)).embeddings[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self.client.embed([text], self.model_name).embeddings[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await self.client.aembed([text], self.model_name)).embeddings[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self.client.embed(
            texts, self.model_name, self.embed_batch_size, on_progress=_ON_PROGRESS.get()
        ).embeddings

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        result = await self.client.aembed(
            texts, self.model_name, self.embed_batch_size, on_progress=_ON_PROGRESS.get()
        )
        return result.embeddings

    # -- batch entry points: every batch in flight at once, LlamaIndex's events kept ----------

    def get_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[Embedding]:
        """Embed `texts` with up to `max_concurrency` batches in flight.

        LlamaIndex's own loop sends its `embed_batch_size` slices one after another. Here all
        slices go to the client in one call, which runs them concurrently; the per-slice
        instrumentation events, callback-manager events, `embeddings_cache` and `rate_limiter`
        behave as in LlamaIndex, and `show_progress` shows a bar over texts.
        """
        with self._batch_events(texts) as finish, self._progress(len(texts), show_progress):
            if self.rate_limiter is not None:
                for _ in range(self._slice_count(texts)):
                    self.rate_limiter.acquire()
            if self.embeddings_cache is None:
                embeddings = self._get_text_embeddings(texts)
            else:
                embeddings = self._get_text_embeddings_cached(texts)
            finish(embeddings)
        return embeddings

    async def aget_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[Embedding]:
        """`get_text_embedding_batch` without blocking the event loop.

        One client call for all slices, so a failure cancels the batches not yet sent (with
        LlamaIndex's per-slice `gather`, the others kept running after the first error).
        """
        with self._batch_events(texts) as finish, self._progress(len(texts), show_progress):
            if self.rate_limiter is not None:
                for _ in range(self._slice_count(texts)):
                    await self.rate_limiter.async_acquire()
            if self.embeddings_cache is None:
                embeddings = await self._aget_text_embeddings(texts)
            else:
                embeddings = await self._aget_text_embeddings_cached(texts)
            finish(embeddings)
        return embeddings

    def _slice_count(self, texts: list[str]) -> int:
        return -(-len(texts) // self.embed_batch_size)

    @contextmanager
    def _batch_events(self, texts: list[str]) -> Iterator[Callable[[list[Embedding]], None]]:
        """Start one embedding event per `embed_batch_size` slice; yield `finish(vectors)`.

        The same instrumentation and callback events, with the same payloads, as LlamaIndex's
        own batch methods (its async one also opens them all before sending). If the call
        fails, every open callback event ends with the exception.
        """
        size = self.embed_batch_size
        slices = [texts[start : start + size] for start in range(0, len(texts), size)]
        model_dict = self.to_payload()
        events: list[EventContext] = []
        for _ in slices:
            dispatcher.event(EmbeddingStartEvent(model_dict=model_dict))
            event = EventContext(self.callback_manager, CBEventType.EMBEDDING)
            event.on_start(payload={EventPayload.SERIALIZED: model_dict})
            events.append(event)

        def finish(embeddings: list[Embedding]) -> None:
            for number, (chunk, event) in enumerate(zip(slices, events, strict=True)):
                vectors = embeddings[number * size : number * size + len(chunk)]
                event.on_end(payload={EventPayload.CHUNKS: chunk, EventPayload.EMBEDDINGS: vectors})
                # model_construct: validating the event would copy every float of the batch
                # (about a third of this adapter's CPU); the vectors are checked already.
                dispatcher.event(
                    EmbeddingEndEvent.model_construct(chunks=chunk, embeddings=vectors)
                )

        try:
            yield finish
        except BaseException as error:
            for event in events:
                event.on_end(payload={EventPayload.EXCEPTION: error})  # no-op once ended
            raise

    @staticmethod
    @contextmanager
    def _progress(total: int, enabled: bool) -> Iterator[None]:
        """A bar over texts, advanced as requests finish; cache hits are counted at the end."""
        with progress_bar(total, enabled, "Generating embeddings") as advance:
            if advance is None:
                yield
                return
            lock, done = threading.Lock(), [0]

            def count(finished: int) -> None:
                with lock:
                    done[0] += finished
                advance(finished)

            token = _ON_PROGRESS.set(count)
            try:
                yield
            finally:
                _ON_PROGRESS.reset(token)
            advance(total - done[0])


# `embeddings.api_base` and the other plain renames read and write our fields.
add_openai_attributes(NebulaEmbedding, LLAMA_INDEX_NAMES)
