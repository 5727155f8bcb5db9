"""The clients compared by `compare.py`, each built the way its users would build it.

Every contender gets the same server, model, inputs and batch size, and exposes one sync and
(where the library has one) one async call that returns the vectors of a list of texts.
Imports happen inside the factories, so a fresh process that measures one contender's memory
loads only that contender's libraries.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

Vectors = list[list[float]]


@dataclass
class Contender:
    """One client under test: how to call it, and what it was configured with."""

    key: str
    label: str
    embed: Callable[[list[str]], Vectors]
    aembed: Callable[[list[str]], Awaitable[Vectors]] | None
    settings: str
    close: Callable[[], None] = field(default=lambda: None)


@dataclass(frozen=True)
class Setup:
    """What every contender is pointed at."""

    base_url: str
    api_key: str
    model: str
    batch_size: int | None  # None: the library's default
    concurrency: int | None  # None: the library's default
    output: str = "list"  # ours only: "numpy" returns float32 arrays (base64 on the wire)

    def knobs(self, batch: str, concurrency: str | None = None) -> dict[str, int]:
        """The keyword arguments that differ from a library's defaults."""
        given = {batch: self.batch_size}
        if concurrency is not None:
            given[concurrency] = self.concurrency
        return {name: value for name, value in given.items() if value is not None}

    def describe(self, batch: str, concurrency: str | None = None) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.knobs(batch, concurrency).items()) or (
            "defaults"
        )


def bare(s: Setup) -> Contender:
    """The floor: `client_overhead.bare_loop`, one session, orjson, one request at a time."""
    from client_overhead import bare_loop  # noqa: PLC0415 - load only this contender's libraries

    def embed(texts: list[str]) -> Vectors:
        return bare_loop(s.base_url, s.api_key, texts, batch_size=s.batch_size or 64, model=s.model)

    return Contender(
        "bare", "bare requests+orjson loop", embed, None, "sequential, vectors placed by index"
    )


def core(s: Setup) -> Contender:
    """`nebula_core.NebulaClient` itself, without a framework around it."""
    from nebula_core import NebulaClient  # noqa: PLC0415 - load only this contender's libraries

    client = NebulaClient(api_key=s.api_key, base_url=s.base_url, **s.knobs("max_concurrency"))
    batch = s.knobs("batch_size")
    output: Any = s.output

    def embed(texts: list[str]) -> Vectors:
        return client.embed(texts, model=s.model, output=output, **batch).embeddings  # type: ignore[no-any-return]

    async def aembed(texts: list[str]) -> Vectors:
        result = await client.aembed(texts, model=s.model, output=output, **batch)
        return result.embeddings  # type: ignore[no-any-return]

    return Contender(
        "core",
        "NebulaClient",
        embed,
        aembed,
        s.describe("batch_size", "max_concurrency") + f", output={s.output!r}",
        client.close,
    )


def nebula_langchain(s: Setup) -> Contender:
    """This project's LangChain adapter."""
    from langchain_nebula import NebulaEmbeddings  # noqa: PLC0415 - load only this contender's libraries

    emb = NebulaEmbeddings(
        model=s.model,
        api_key=s.api_key,  # type: ignore[arg-type]
        base_url=s.base_url,
        **s.knobs("batch_size", "max_concurrency"),
    )
    return Contender(
        "nebula_lc",
        "NebulaEmbeddings (LangChain)",
        emb.embed_documents,
        emb.aembed_documents,
        s.describe("batch_size", "max_concurrency"),
    )


def nebula_llamaindex(s: Setup) -> Contender:
    """This project's LlamaIndex adapter."""
    from llama_index_nebula import NebulaEmbedding  # noqa: PLC0415 - load only this contender's libraries

    emb = NebulaEmbedding(
        model_name=s.model,
        api_key=s.api_key,  # type: ignore[arg-type]
        base_url=s.base_url,
        **s.knobs("embed_batch_size", "max_concurrency"),
    )
    return Contender(
        "nebula_li",
        "NebulaEmbedding (LlamaIndex)",
        emb.get_text_embedding_batch,
        emb.aget_text_embedding_batch,
        s.describe("embed_batch_size", "max_concurrency"),
    )


def openai_langchain(s: Setup) -> Contender:
    """What a LangChain user points at an OpenAI-compatible server today.

    `OpenAIEmbeddings` has no concurrency setting: both `embed_documents` and
    `aembed_documents` send their chunks one after another. Its default
    `check_embedding_ctx_length=True` tokenizes with tiktoken, whose encodings are downloaded
    from the internet on first use (impossible here, and it would send token ids that an
    OpenAI-compatible server for another model cannot read), so it is set to False.
    """
    from langchain_openai import OpenAIEmbeddings  # noqa: PLC0415 - load only this contender's libraries

    emb = OpenAIEmbeddings(
        model=s.model,
        api_key=s.api_key,  # type: ignore[arg-type]
        base_url=s.base_url,
        check_embedding_ctx_length=False,  # send text, not tiktoken ids
        **s.knobs("chunk_size"),
    )
    return Contender(
        "openai_lc",
        "OpenAIEmbeddings (langchain-openai)",
        emb.embed_documents,
        emb.aembed_documents,
        f"chunk_size={emb.chunk_size}, check_embedding_ctx_length=False; "
        "no concurrency setting (sequential, sync and async)",
    )


def openai_llamaindex(s: Setup) -> Contender:
    """What a LlamaIndex user points at an OpenAI-compatible server today.

    `model=` only accepts OpenAI's own model names; `model_name=` is the documented way to
    send any other id. `num_workers` bounds LlamaIndex's async fan-out; the sync path is
    sequential whatever it is set to.
    """
    from llama_index.embeddings.openai import OpenAIEmbedding  # noqa: PLC0415 - load only this contender's libraries

    emb = OpenAIEmbedding(
        model_name=s.model,
        api_key=s.api_key,
        api_base=s.base_url,
        **s.knobs("embed_batch_size", "num_workers"),
    )
    return Contender(
        "openai_li",
        "OpenAIEmbedding (llama-index-embeddings-openai)",
        emb.get_text_embedding_batch,
        emb.aget_text_embedding_batch,
        f"model_name=..., embed_batch_size={emb.embed_batch_size}, "
        f"num_workers={emb.num_workers} (async fan-out; sync is sequential)",
    )


FACTORIES: dict[str, Callable[[Setup], Contender]] = {
    "bare": bare,
    "core": core,
    "nebula_lc": nebula_langchain,
    "nebula_li": nebula_llamaindex,
    "openai_lc": openai_langchain,
    "openai_li": openai_llamaindex,
}

LABELS = {
    "bare": "bare requests+orjson loop",
    "core": "NebulaClient",
    "nebula_lc": "NebulaEmbeddings (LangChain)",
    "nebula_li": "NebulaEmbedding (LlamaIndex)",
    "openai_lc": "OpenAIEmbeddings (langchain-openai)",
    "openai_li": "OpenAIEmbedding (llama-index)",
}

OURS = ("core", "nebula_lc", "nebula_li")
PEERS = ("openai_lc", "openai_li")


def build(key: str, setup: Setup) -> Contender:
    return FACTORIES[key](setup)
