"""The wire codec: request bodies out, embeddings in; every success body is checked first.

Success bodies are parsed once by orjson and placed by `data[i].index`; anything that could put a
vector next to the wrong text raises `ResponseFormatError` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from nebula_core.errors import ResponseFormatError

__all__ = ["Usage", "encode_request", "unpack_embeddings"]


def encode_request(model: str, inputs: Sequence[str]) -> bytes:
    """The documented request body, exactly `{"model", "input"}`."""
    return orjson.dumps({"model": model, "input": list(inputs)})


@dataclass(frozen=True)
class Usage:
    """Tokens the service counted, summed over every request of one call."""

    prompt_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens, self.total_tokens + other.total_tokens
        )


def _format_error(what: str) -> ResponseFormatError:
    return ResponseFormatError(
        f"The service returned a 2xx response that cannot be trusted: {what}. No vectors were "
        "used from it. If this persists, report it to NebulaBlock with the model name."
    )


def unpack_embeddings(body: bytes, expected: int) -> tuple[list[list[float]], Usage]:
    """Vectors in input order from one success body, plus its usage; raise on any inconsistency."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _format_error(f"the body is not JSON ({len(body)} bytes)") from None
    if not isinstance(payload, dict):
        raise _format_error(f"the body is a JSON {type(payload).__name__}, not an object")
    data = payload.get("data")
    if not isinstance(data, list):
        raise _format_error("'data' is missing or not a list")
    if len(data) != expected:
        raise _format_error(f"sent {expected} inputs but got {len(data)} embeddings")

    slots: list[Any] = [None] * expected
    dimensions = -1
    for item in data:
        if not isinstance(item, dict):
            raise _format_error("an item of 'data' is not an object")
        index = item.get("index")
        # bool is an int subclass; a JSON true is not a position.
        if type(index) is not int:
            raise _format_error(f"an item has index {index!r}; indices must be integers")
        if not 0 <= index < expected:
            raise _format_error(f"index {index} is outside 0..{expected - 1}")
        if slots[index] is not None:
            raise _format_error(f"index {index} appears more than once")
        vector = item.get("embedding")
        if type(vector) is not list or not vector:
            raise _format_error(f"the embedding at index {index} is missing or not a list")
        if dimensions != len(vector):
            if dimensions != -1:
                raise _format_error(
                    f"embeddings have different lengths ({dimensions} and {len(vector)})"
                )
            dimensions = len(vector)
        try:
            # sum() walks the floats in C and raises TypeError on str, None, lists or objects.
            sum(vector)
        except TypeError:
            raise _format_error(f"the embedding at index {index} has non-numeric values") from None
        slots[index] = vector
    # With `expected` items, in-range and unique indices, every slot is filled.
    return slots, _usage(payload.get("usage"))


def _usage(raw: object) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    prompt = raw.get("prompt_tokens")
    total = raw.get("total_tokens")
    prompt = prompt if type(prompt) is int else 0
    total = total if type(total) is int else prompt
    return Usage(prompt, total)
