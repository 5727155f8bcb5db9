"""The embedding models NebulaBlock serves: dimensions, context length and query instruction.

Unknown model ids still work everywhere: their dimensions are learned from the first response
and their queries are sent without an instruction unless one is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nebula_core._validation import validate_texts

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "QWEN3_QUERY_INSTRUCTION",
    "RETRIEVAL_QUERY_INSTRUCTION",
    "ModelInfo",
    "model_info",
    "with_query_instruction",
]

DEFAULT_MODEL = "WhereIsAI/UAE-Large-V1"

#: From the UAE-Large-V1 and bge-large-en-v1.5 model cards: queries (not documents) retrieve
#: best with this prefix.
RETRIEVAL_QUERY_INSTRUCTION = "Represent this sentence for searching relevant passages: "

#: From the Qwen3-Embedding model card: `Instruct: <task>\nQuery: <query>` for queries.
QWEN3_QUERY_INSTRUCTION = (
    "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery: "
)


@dataclass(frozen=True)
class ModelInfo:
    """What we know about one model before asking the service."""

    id: str
    dimensions: int
    context_tokens: int | None
    query_instruction: str


MODELS: dict[str, ModelInfo] = {
    info.id: info
    for info in (
        ModelInfo("WhereIsAI/UAE-Large-V1", 1024, 512, RETRIEVAL_QUERY_INSTRUCTION),
        ModelInfo("BAAI/bge-large-en-v1.5", 1024, 512, RETRIEVAL_QUERY_INSTRUCTION),
        ModelInfo("Qwen/Qwen3-Embedding-8B", 4096, 32768, QWEN3_QUERY_INSTRUCTION),
    )
}


def model_info(model: str) -> ModelInfo | None:
    """The catalogue entry for `model`, or None for a model this package does not know."""
    return MODELS.get(model)


def with_query_instruction(
    model: str, queries: Sequence[str], instruction: str | None
) -> list[str]:
    """Prefix each query with the retrieval instruction the model expects.

    `instruction=None` uses the model's own (none for unknown models); `""` sends queries as
    they are; any other string replaces the model's prefix. Documents never go through here.
    """
    # Check before prefixing: an empty query plus a prefix would embed the prefix alone.
    queries = validate_texts(queries)
    if instruction is None:
        info = MODELS.get(model)
        instruction = info.query_instruction if info else ""
    if not instruction:
        return list(queries)
    return [instruction + query for query in queries]
