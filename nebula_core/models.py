"""The embedding models NebulaBlock serves: dimensions, context, tokenizer, query prefix.

Unknown model ids still work everywhere: their dimensions are learned from the first response
and their queries are sent without an instruction unless one is given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from nebula_core._validation import validate_texts

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "QWEN3_QUERY_INSTRUCTION",
    "RETRIEVAL_QUERY_INSTRUCTION",
    "ModelInfo",
    "check_dimensions",
    "model_info",
    "reduce_dimensions",
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
    """What we know about one model before asking the service.

    Attributes:
        id: the model id the service takes, e.g. "WhereIsAI/UAE-Large-V1".
        dimensions: the length of its vectors.
        context_tokens: the most tokens one input may have (specials included); None: unknown.
        query_instruction: the prefix its model card asks queries (not documents) to carry.
        tokenizer: the vocabulary it counts with ("bert-base-uncased" ships here, so counts
            are exact; "qwen3-bpe" does not, so they are estimated).
        matryoshka: whether any leading slice of a vector, re-normalized, is itself a valid
            smaller embedding (what `dimensions=` on the client needs).
    """

    id: str
    dimensions: int
    context_tokens: int | None
    query_instruction: str
    tokenizer: str | None = None
    matryoshka: bool = False

    @property
    def max_input_tokens(self) -> int | None:
        """The token limit of one input, under the name the client's option uses."""
        return self.context_tokens


MODELS: dict[str, ModelInfo] = {
    info.id: info
    for info in (
        ModelInfo(
            "WhereIsAI/UAE-Large-V1", 1024, 512, RETRIEVAL_QUERY_INSTRUCTION, "bert-base-uncased"
        ),
        ModelInfo(
            "BAAI/bge-large-en-v1.5", 1024, 512, RETRIEVAL_QUERY_INSTRUCTION, "bert-base-uncased"
        ),
        ModelInfo(
            "Qwen/Qwen3-Embedding-8B", 4096, 32768, QWEN3_QUERY_INSTRUCTION, "qwen3-bpe", True
        ),
    )
}


def model_info(model: str) -> ModelInfo | None:
    """The catalogue entry for `model`, or None for a model this package does not know.

    Args:
        model: a model id, e.g. "BAAI/bge-large-en-v1.5".
    """
    return MODELS.get(model)


def check_dimensions(model: str | None, dimensions: int | None) -> None:
    """Refuse a `dimensions` that cannot give valid embeddings, before any request.

    A known model must be Matryoshka-trained (a leading slice of another model's vector is not
    an embedding) and have at least that many dimensions; unknown models are trusted.

    Args:
        model: the model id (None or unknown: only `dimensions` itself is checked).
        dimensions: the requested vector length; None asks for none and always passes.

    Raises:
        ValueError: `dimensions` is not a positive int, the model is not Matryoshka-trained,
            or it has fewer dimensions.
    """
    if dimensions is None:
        return
    if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
        raise ValueError(f"dimensions must be an integer >= 1 or None, got {dimensions!r}.")
    info = MODELS.get(model) if model else None
    if info is None:
        return
    if not info.matryoshka:
        matryoshka = ", ".join(m.id for m in MODELS.values() if m.matryoshka)
        raise ValueError(
            f"{model} is not a Matryoshka model: the first {dimensions} of its "
            f"{info.dimensions} values are not a valid embedding. Leave dimensions=None, or "
            f"use a Matryoshka model ({matryoshka})."
        )
    if dimensions > info.dimensions:
        raise ValueError(
            f"dimensions={dimensions} exceeds the {info.dimensions} dimensions of {model}."
        )


def reduce_dimensions(vectors: list[list[float]], dimensions: int) -> list[list[float]]:
    """The first `dimensions` values of each vector, scaled back to unit length (Matryoshka).

    Args:
        vectors: full-length embeddings of a Matryoshka model.
        dimensions: how many leading values to keep.

    Returns:
        New lists; an all-zero head is returned as it is rather than divided by zero.
    """
    reduced = []
    for vector in vectors:
        head = vector[:dimensions]
        norm = math.sqrt(math.fsum(x * x for x in head))
        reduced.append([x / norm for x in head] if norm > 0 else head)
    return reduced


def with_query_instruction(
    model: str, queries: Sequence[str], instruction: str | None
) -> list[str]:
    """Prefix each query with the retrieval instruction the model expects.

    `instruction=None` uses the model's own (none for unknown models); `""` sends queries as
    they are; any other string replaces the model's prefix. Documents never go through here.

    Args:
        model: the model id whose instruction applies.
        queries: the search queries, as the user typed them.
        instruction: the prefix to use instead of the model's, or None for the model's own.

    Returns:
        The texts to embed, one per query, in order.

    Raises:
        TypeError: a query is not a `str`.
        ValueError: a query is empty or blank (it would embed the prefix alone).
    """
    # Check before prefixing: an empty query plus a prefix would embed the prefix alone.
    queries = validate_texts(queries)
    if instruction is None:
        info = MODELS.get(model)
        instruction = info.query_instruction if info else ""
    if not instruction:
        return list(queries)
    return [instruction + query for query in queries]
