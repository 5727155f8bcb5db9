"""Embed this project's own docs with LangChain and LlamaIndex, then ask them questions.

Run it with `make demo`. With `NEBULA_API_KEY` set it calls the real NebulaBlock API
(`NEBULA_BASE_URL` overrides the address); without it, it starts the bundled local emulator of
the service by itself and says so on its first line. Nothing has to be started by hand.

What it shows, in order: each framework's own Markdown splitters chunking README.md and
docs/*.md, the chunks embedded through `langchain_nebula.NebulaEmbeddings` into an
`InMemoryVectorStore` and through `llama_index_nebula.NebulaEmbedding` into a
`VectorStoreIndex` (with a progress bar), a few questions answered by both, and what the
whole run cost as the service counted it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

try:
    from langchain_core.documents import Document
    from langchain_core.vectorstores import InMemoryVectorStore
    from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter
    from llama_index.core import Document as LlamaDocument
    from llama_index.core import VectorStoreIndex
    from llama_index.core.node_parser import MarkdownNodeParser, SentenceSplitter
    from pydantic import SecretStr
    from tqdm.contrib.logging import logging_redirect_tqdm

    from langchain_nebula import NebulaEmbeddings
    from llama_index_nebula import NebulaEmbedding
    from nebula_core import NebulaClient, NebulaError
    from nebula_core.testing import NebulaEmulator
except ImportError as missing:  # pragma: no cover - only outside the project's .venv
    sys.exit(f"error: {missing}. Run `make demo`: it installs everything into .venv first.")

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "How do I run the tests?",
    "What happens when the server returns 429 Too Many Requests?",
    "How do I use the emulator in my own tests?",
    "Which environment variables configure the API key and base URL?",
    "Which error is raised for an empty string input?",
]
TOP_K = 2
SNIPPET = 80


@dataclass
class UsageMeter:
    """What the service reported for every embed call of the clients it watches.

    Read from each adapter's shared client (`client.stats`): the requests it sent and the
    `usage` each response carried, so the figures are the same against the real API as
    against the emulator.
    """

    clients: list[NebulaClient] = field(default_factory=list)

    def watch(self, client: NebulaClient) -> None:
        self.clients.append(client)

    @property
    def requests(self) -> int:
        return sum(client.stats.requests for client in self.clients)

    @property
    def retries(self) -> int:
        return sum(client.stats.retries for client in self.clients)

    @property
    def tokens(self) -> int:
        return sum(client.stats.total_tokens for client in self.clients)


@dataclass(frozen=True)
class Connection:
    """Where the adapters send requests; None means "read it from the environment"."""

    api_key: SecretStr | None = None
    base_url: str | None = None


@dataclass(frozen=True)
class Hit:
    """One retrieved passage, the same shape whichever framework found it."""

    framework: str
    score: float
    source: str
    section: str
    text: str


# -- where the vectors come from --------------------------------------------------------------


@contextlib.contextmanager
def nebula_service() -> Iterator[Connection]:
    """The real API when NEBULA_API_KEY is set, else a local emulator started right here."""
    if os.environ.get("NEBULA_API_KEY", "").strip():
        base_url = os.environ.get("NEBULA_BASE_URL") or "https://inference.nebulablock.com/v1"
        print(f"Using the NebulaBlock API at {base_url} (NEBULA_API_KEY is set).", flush=True)
        yield Connection()  # the adapters read NEBULA_API_KEY / NEBULA_BASE_URL themselves
        return
    with NebulaEmulator() as emulator:
        print(
            f"No NEBULA_API_KEY set: using the local NebulaBlock emulator at {emulator.base_url}"
            " (lexical stand-in vectors, not a real model).\n"
            "Export NEBULA_API_KEY=ak_... to use the real NebulaBlock API instead.",
            flush=True,
        )
        yield Connection(SecretStr(emulator.api_key), emulator.base_url)


# -- the corpus: this project's own Markdown docs ---------------------------------------------


def corpus() -> list[tuple[str, str]]:
    """(relative path, text) of README.md and every docs/*.md page."""
    paths = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [(path.relative_to(ROOT).as_posix(), path.read_text("utf-8")) for path in paths]


def snippet(text: str) -> str:
    """The passage on one line: heading markup and code fences dropped, whitespace collapsed."""
    lines = [line for line in text.splitlines() if not line.startswith(("#", "```", "| --"))]
    flat = re.sub(r"\s+", " ", " ".join(lines)).strip()
    return flat if len(flat) <= SNIPPET else flat[: SNIPPET - 3].rstrip() + "..."


# -- LangChain ---------------------------------------------------------------------------------


def langchain_pipeline(
    docs: list[tuple[str, str]], connection: Connection, meter: UsageMeter
) -> tuple[int, Callable[[str], list[Hit]]]:
    """Split with LangChain's Markdown splitters, embed into an InMemoryVectorStore."""
    by_heading = MarkdownHeaderTextSplitter([("#", "h1"), ("##", "h2"), ("###", "h3")])
    by_size = RecursiveCharacterTextSplitter(chunk_size=800, chunk_overlap=100)
    chunks: list[Document] = []
    for source, text in docs:
        for section in by_heading.split_text(text):
            headings = [section.metadata[h] for h in ("h1", "h2", "h3") if h in section.metadata]
            path = " > ".join(headings)
            for chunk in by_size.split_text(section.page_content):
                # Each chunk starts with its section's heading path, so a passage deep in a
                # section still says what it is about.
                content = f"{path}\n\n{chunk}"
                chunks.append(Document(content, metadata={"source": source, "section": path}))

    embeddings = NebulaEmbeddings(
        api_key=connection.api_key, base_url=connection.base_url, show_progress=True
    )
    # LangChain's Embeddings interface returns only vectors; the shared client keeps the cost.
    meter.watch(embeddings.client)
    print(f"LangChain:  {len(chunks)} chunks -> InMemoryVectorStore", flush=True)
    store = InMemoryVectorStore(embedding=embeddings)
    store.add_documents(chunks)

    def ask(question: str) -> list[Hit]:
        return [
            Hit(
                "LangChain",
                score,
                doc.metadata["source"],
                doc.metadata["section"],
                doc.page_content.removeprefix(doc.metadata["section"] + "\n\n"),
            )
            for doc, score in store.similarity_search_with_score(question, k=TOP_K)
        ]

    return len(chunks), ask


# -- LlamaIndex --------------------------------------------------------------------------------


def llama_index_pipeline(
    docs: list[tuple[str, str]], connection: Connection, meter: UsageMeter
) -> tuple[int, Callable[[str], list[Hit]]]:
    """Split with LlamaIndex's node parsers, embed into a VectorStoreIndex."""
    sections = MarkdownNodeParser().get_nodes_from_documents(
        [LlamaDocument(text=text, metadata={"source": source}) for source, text in docs]
    )
    for node in sections:
        # MarkdownNodeParser keeps the parents in `header_path`; the section's own heading is
        # its first line.
        parents = [part for part in node.metadata.pop("header_path", "").split("/") if part]
        first = node.get_content().lstrip().split("\n", 1)[0]
        own = [first.lstrip("#").strip()] if first.startswith("#") else []
        node.metadata["section"] = " > ".join(parents + own)
    chunks = SentenceSplitter(chunk_size=256, chunk_overlap=32)(sections)

    embed_model = NebulaEmbedding(api_key=connection.api_key, base_url=connection.base_url)
    meter.watch(embed_model.client)
    print(f"LlamaIndex: {len(chunks)} chunks -> VectorStoreIndex", flush=True)
    index = VectorStoreIndex(chunks, embed_model=embed_model, show_progress=True)
    retriever = index.as_retriever(similarity_top_k=TOP_K)

    def ask(question: str) -> list[Hit]:
        return [
            Hit(
                "LlamaIndex",
                hit.score or 0.0,
                hit.node.metadata["source"],
                hit.node.metadata["section"],
                hit.node.get_content(),
            )
            for hit in retriever.retrieve(question)
        ]

    return len(chunks), ask


# -- the run -----------------------------------------------------------------------------------


def run() -> None:
    meter = UsageMeter()
    with nebula_service() as connection:
        docs = corpus()
        size = sum(len(text) for _, text in docs)
        print(f"Corpus: {len(docs)} Markdown files ({size:,} characters): README.md, docs/*.md")
        started = time.perf_counter()
        lc_chunks, lc_ask = langchain_pipeline(docs, connection, meter)
        li_chunks, li_ask = llama_index_pipeline(docs, connection, meter)

        for number, question in enumerate(QUESTIONS, 1):
            print(f"\n{number}. {question}")
            for hit in lc_ask(question) + li_ask(question):
                # The page's title is its file; show the headings below it.
                heading = hit.section.split(" > ", 1)[-1]
                print(f"   {hit.framework:<10}  {hit.score:.3f}  {hit.source} > {heading}")
                print(f"   {'':<10}         {snippet(hit.text)}")
        seconds = time.perf_counter() - started

    retries = f" (retries: {meter.retries})" if meter.retries else ""
    print(
        f"\nSummary: {lc_chunks} LangChain + {li_chunks} LlamaIndex chunks and "
        f"{len(QUESTIONS)} questions embedded in {meter.requests} requests{retries}, "
        f"{meter.tokens:,} tokens, {seconds:.1f} s."
    )


def main() -> int:
    """Run the demo; turn failures into one line a person can act on, and a non-zero exit."""
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    try:
        # Retry warnings go above the progress bar instead of through it.
        with logging_redirect_tqdm():
            run()
    except NebulaError as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
