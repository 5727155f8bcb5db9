"""Token counting seam: how many tokens the emulator bills and checks, and where it truncates.

One function, `default_tokenizer(model)`, so an exact tokenizer (WordPiece for the BERT-family
models, byte-level BPE for Qwen3) can be plugged in later without touching the emulator.
Today it is a deterministic estimate: every word and every punctuation mark is one token, plus
the two special tokens ([CLS], [SEP]) a BERT-family model adds to each input.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SPECIAL_TOKENS", "Tokenizer", "default_tokenizer"]

_TOKENS = re.compile(r"\w+|[^\w\s]")

#: Tokens a model adds to every input whatever its text.
SPECIAL_TOKENS = 2


@dataclass(frozen=True)
class Tokenizer:
    """`count(text)` tokens; `truncate(text, n)` the longest prefix of `text` that counts <= n."""

    count: Callable[[str], int]
    truncate: Callable[[str, int], str]


def _count(text: str) -> int:
    return len(_TOKENS.findall(text)) + SPECIAL_TOKENS


def _truncate(text: str, max_tokens: int) -> str:
    keep = max(0, max_tokens - SPECIAL_TOKENS)
    if keep == 0:
        return ""
    for seen, match in enumerate(_TOKENS.finditer(text), start=1):
        if seen == keep:
            return text[: match.end()]
    return text


_ESTIMATE = Tokenizer(count=_count, truncate=_truncate)


def default_tokenizer(model: str) -> Tokenizer:
    """The tokenizer the emulator uses for `model` (today the same estimate for every model)."""
    del model  # the seam: an exact per-model tokenizer plugs in here
    return _ESTIMATE
