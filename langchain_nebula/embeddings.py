"""`NebulaEmbeddings`: LangChain's `Embeddings` interface over `nebula_core.NebulaClient`.

Only field mapping lives here. Batching, concurrency, retries, ordering, validation and the
query instructions are the core's, shared with the LlamaIndex adapter.
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.embeddings import Embeddings
from langchain_core.utils import from_env, secret_from_env
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, model_validator
from typing_extensions import Self

from nebula_core._adapters import BoundClient, client_options
from nebula_core._codec import EncodingFormat
from nebula_core._migration import LANGCHAIN_NAMES, add_openai_attributes, from_openai_names
from nebula_core._progress import progress_bar
from nebula_core.client import NebulaClient
from nebula_core.models import DEFAULT_MODEL, with_query_instruction

__all__ = ["NebulaEmbeddings"]


class NebulaEmbeddings(BaseModel, Embeddings):
    """NebulaBlock embedding models for LangChain.

    Documents are sent as they are; queries get the retrieval instruction the model card asks
    for, which is what makes UAE-Large-V1, bge-large-en-v1.5 and Qwen3-Embedding rank well.
    Large lists are split into batches that run concurrently, every batch is retried on
    throttling and transient failures, and each vector is placed by the index the service
    returns, so `vectors[i]` always belongs to `texts[i]`.

    Setup:
        Install the package with its LangChain extra and export your API key (create one in
        the NebulaBlock dashboard; keys usually start with `ak_`).

        ```bash
        pip install -U 'nebulablock-embeddings[langchain]'
        export NEBULA_API_KEY="ak_..."
        ```

        No key yet? `nebula_core.testing.NebulaEmulator` runs a local stand-in of the service;
        pass its `base_url` and `api_key` to try everything below offline.

    Key init args — embedding params:
        model: str
            Model id. Default `"WhereIsAI/UAE-Large-V1"` (1024 dimensions); also
            `"BAAI/bge-large-en-v1.5"` (1024) and `"Qwen/Qwen3-Embedding-8B"` (4096).
            Other ids work too; their dimensions come from the first response.
        query_instruction: str | None
            Prefix for queries. `None` (default) uses the model's own, `""` sends queries
            unchanged, any other string replaces the model's prefix.
        batch_size: int
            Most texts sent in one request. Default 64.
        show_progress: bool
            Show a tqdm bar over the texts of `embed_documents`. Default False.

    Key init args — client params:
        api_key: SecretStr | None
            Read from `NEBULA_API_KEY` when not given.
        base_url: str | None
            Read from `NEBULA_BASE_URL` when not given; otherwise
            `https://inference.nebulablock.com/v1`.
        max_concurrency: int
            Requests in flight at once for one call, sync or async. Default 4.
        max_retries: int
            Retries per request after a 429, a 5xx, a timeout or a broken connection.
            Default 6.
        timeout: float
            Seconds to wait for one response. Default 60.
        requests_per_minute / tokens_per_minute: float | None
            Client-side pacing to stay inside your account tier's limits.
        deadline: float | None
            Overall seconds one embed call may take, retries included.
        encoding_format: "auto" | "base64" | "float"
            Wire encoding of the vectors. Default "auto": base64, or floats if refused.
        rate_limit_share: float
            This process's part of the account's rate limits when several processes share the
            key (1 / number of processes). Default 1.

    Migrating from `OpenAIEmbeddings`:
        Its argument names work here too: `chunk_size` (`batch_size`), `show_progress_bar`,
        `request_timeout`, `openai_api_key`, `openai_api_base`, `embedding_ctx_length`
        (`max_input_tokens`) and `check_embedding_ctx_length` (`on_long_input`). Its
        arguments that NebulaBlock cannot honour raise `ConfigurationError` naming the
        replacement. The table is in docs/migration.md.

    Instantiate:
        ```python
        from langchain_nebula import NebulaEmbeddings

        embeddings = NebulaEmbeddings(
            model="WhereIsAI/UAE-Large-V1",
            # api_key="ak_...",        # or set NEBULA_API_KEY
            # max_concurrency=8,       # more requests in flight for big ingestion jobs
        )
        ```

    Embed single text:
        ```python
        vector = embeddings.embed_query("How do I rotate my API key?")
        print(len(vector))
        ```
        ```python
        1024
        ```

    Embed multiple texts:
        ```python
        vectors = embeddings.embed_documents(
            ["Keys are created in the dashboard.", "Tokens expire after two hours."]
        )
        print(len(vectors), len(vectors[0]))
        ```
        ```python
        2 1024
        ```

    Async:
        ```python
        vector = await embeddings.aembed_query("How do I rotate my API key?")
        vectors = await embeddings.aembed_documents(["first passage", "second passage"])
        ```
        The requests run in the client's worker threads, `max_concurrency` at a time; the
        event loop keeps running while they are in flight.

    Use in a vector store:
        ```python
        from langchain_core.vectorstores import InMemoryVectorStore

        store = InMemoryVectorStore.from_texts(
            ["Keys are created in the dashboard.", "Tokens expire after two hours."],
            embedding=embeddings,
        )
        print(store.similarity_search("when does my token expire?", k=1)[0].page_content)
        ```
        ```python
        Tokens expire after two hours.
        ```
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)

    model: str = DEFAULT_MODEL
    """Model id; the catalogue is in `nebula_core.models.MODELS`, other ids work too."""

    api_key: SecretStr | None = Field(
        default_factory=secret_from_env("NEBULA_API_KEY", default=None)
    )
    """NebulaBlock API key; read from `NEBULA_API_KEY` when not given. Never printed or dumped."""

    base_url: str | None = Field(default_factory=from_env("NEBULA_BASE_URL", default=None))
    """API root; read from `NEBULA_BASE_URL`, else `https://inference.nebulablock.com/v1`."""

    batch_size: int = Field(default=64, ge=1)
    """Most texts per request."""

    max_concurrency: int = 8
    """Requests in flight at once within one call (sync and async alike)."""

    max_retries: int = 6
    """Retries per request on 429, 5xx, timeouts and dropped connections."""

    timeout: float = 60.0
    """Seconds to wait for one response."""

    show_progress: bool = False
    """Show a tqdm progress bar over the texts of `embed_documents` / `aembed_documents`."""

    query_instruction: str | None = None
    """Query prefix: `None` uses the model's own, `""` none, any other string replaces it."""

    # Gateways put credentials in custom headers too: kept out of repr and dumps like the key.
    default_headers: dict[str, str] | None = Field(default=None, exclude=True, repr=False)
    """Extra HTTP headers for every request (not `Authorization`: use `api_key`). Never
    printed or dumped."""

    requests_per_minute: float | None = None
    """Client-side request pacing, to stay inside the account tier's limit."""

    tokens_per_minute: float | None = None
    """Client-side token pacing, to stay inside the account tier's limit."""

    deadline: float | None = None
    """Overall seconds one embed call may take, retries and backoff included."""

    on_long_input: Literal["truncate", "average", "error"] = "truncate"
    """Inputs over the model's token limit: cut (with a warning), average pieces, or raise."""
    max_input_tokens: int | None = None
    """Token limit per input; None uses the model catalogue's, or learns it from the service."""
    max_tokens_per_request: int | None = None
    """Cut batches by estimated tokens as well as by count."""
    dimensions: int | None = None
    """Matryoshka models only: keep the first `dimensions` values, re-normalized."""

    rate_limit_share: float = 1.0
    """This process's part of the account's rate limits (1 / processes sharing the key)."""

    _bound: BoundClient = PrivateAttr()
    encoding_format: EncodingFormat = "auto"
    """Wire encoding: `auto` asks for base64 float32 (4x smaller, cheaper to decode) and falls
    back to float JSON for good if the service refuses it; `float` sends exactly the documented
    body. Vectors are returned as lists of floats either way."""

    @model_validator(mode="before")
    @classmethod
    def _openai_names(cls, data: Any) -> Any:
        # OpenAIEmbeddings' names (chunk_size, request_timeout, ...) become ours; the ones we
        # cannot honour raise with the replacement. See docs/migration.md.
        return from_openai_names(data, LANGCHAIN_NAMES, cls.__name__, "OpenAIEmbeddings")

    @model_validator(mode="after")
    def _build_client(self) -> Self:
        # Built here so that bad settings fail at construction (and again on reassignment),
        # and shared by every call: one connection pool and worker pool per set of settings.
        try:
            bound: BoundClient | None = self._bound
        except AttributeError:
            bound = None
        self._bound = self._rebind(bound)
        return self

    def _rebind(self, bound: BoundClient | None) -> BoundClient:
        key = self.api_key.get_secret_value() if self.api_key is not None else None
        options = client_options(self)
        return bound.current(key, options) if bound else BoundClient.build(key, options)

    @property
    def client(self) -> NebulaClient:
        """The shared client: `embeddings.client.stats` tells what the calls so far cost.

        Rebuilt when a connection setting differs from the one it was built with, as after
        `model_copy(update={"base_url": ...})`, which skips validation.
        """
        self._bound = self._rebind(self._bound)
        return self._bound.client

    def _queries(self, texts: list[str]) -> list[str]:
        return with_query_instruction(self.model, texts, self.query_instruction)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages as they are, batched and concurrent; `result[i]` is `texts[i]`'s."""
        with progress_bar(len(texts), self.show_progress) as on_progress:
            return self.client.embed(
                texts, self.model, self.batch_size, on_progress=on_progress
            ).embeddings

    def embed_query(self, text: str) -> list[float]:
        """Embed a search query, prefixed with the query instruction."""
        return self.client.embed(self._queries([text]), self.model).embeddings[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """`embed_documents` without blocking the event loop."""
        with progress_bar(len(texts), self.show_progress) as on_progress:
            result = await self.client.aembed(
                texts, self.model, self.batch_size, on_progress=on_progress
            )
        return result.embeddings

    async def aembed_query(self, text: str) -> list[float]:
        """`embed_query` without blocking the event loop."""
        return (await self.client.aembed(self._queries([text]), self.model)).embeddings[0]


# `embeddings.chunk_size` and the other plain renames read and write our fields.
add_openai_attributes(NebulaEmbeddings, LANGCHAIN_NAMES)
