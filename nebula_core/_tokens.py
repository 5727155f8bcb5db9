"""Token counts offline: exact for the BERT-family models, a deliberately high estimate otherwise.

UAE-Large-V1 and bge-large-en-v1.5 use bert-base-uncased's WordPiece vocabulary, which ships
inside this package (`_data/`, Apache-2.0) and is read with the `tokenizers` library, so their
counts match the service's. Every other model (Qwen3's byte-level BPE, unknown ids) gets an
estimate that errs towards more tokens, so pieces cut by it are shorter than the limit rather
than longer. Nothing is ever downloaded. Counts include the two special tokens ([CLS], [SEP])
that encoders wrap around every input.
"""

from __future__ import annotations

import re
import threading
from bisect import bisect_right
from collections.abc import Sequence
from functools import cache
from itertools import accumulate
from pathlib import Path
from typing import Any

from nebula_core.models import MODELS

__all__ = [
    "SPECIAL_TOKENS",
    "count_tokens",
    "count_tokens_many",
    "count_tokens_up_to",
    "estimate_tokens",
    "fits",
    "is_exact",
    "split_to_tokens",
    "too_short_to_exceed",
    "truncate_to_tokens",
]

#: Tokens every input costs besides its text: [CLS] and [SEP] (or the BOS/EOS of BPE models).
SPECIAL_TOKENS = 2

#: The vocabularies that ship in `_data/`, by the catalogue's `tokenizer` name.
_VOCAB_FILES = {"bert-base-uncased": "bert-base-uncased-vocab.txt"}
_DATA = Path(__file__).with_name("_data")

# The estimate, one cost per character: a run of ASCII letters costs one token per 3 letters
# (rare words and identifiers split into short pieces); every digit, punctuation mark, CJK or
# other non-ASCII character costs one (BPE splits digits, WordPiece splits CJK per character);
# a line break or a run of 2+ blanks costs one (BPE keeps indentation as tokens); one blank is
# free; a Hangul syllable costs three (WordPiece decomposes it into its two or three jamo).
# The costs are placed on characters so that any prefix has its own exact estimate.
_SEGMENTS = re.compile(r"[A-Za-z]+|[ \t]+|.", re.DOTALL)
_LETTERS_PER_TOKEN = 3
_HANGUL_COST = 3


_HANGUL = re.compile("[\uac00-\ud7a3]")


def _is_hangul(char: str) -> bool:
    return "\uac00" <= char <= "\ud7a3"


_tokenizer_lock = threading.Lock()


@cache
def _load_tokenizer(kind: str) -> Any:
    """A `tokenizers.Tokenizer` for a shipped vocabulary, or None without the library."""
    try:
        from tokenizers import BertWordPieceTokenizer  # noqa: PLC0415  (optional, heavy)
    except ImportError:  # pragma: no cover - tokenizers is a declared dependency
        return None
    tokenizer = BertWordPieceTokenizer(str(_DATA / _VOCAB_FILES[kind]), lowercase=True)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def _tokenizer(model: str) -> Any:
    info = MODELS.get(model)
    kind = info.tokenizer if info is not None else None
    if kind is None or kind not in _VOCAB_FILES:
        return None
    with _tokenizer_lock:
        return _load_tokenizer(kind)


def is_exact(model: str) -> bool:
    """Whether counts for `model` are the service's own (its vocabulary ships here)."""
    return _tokenizer(model) is not None


def _char_costs(text: str) -> list[int]:
    costs = [0] * len(text)
    for match in _SEGMENTS.finditer(text):
        start, end = match.span()
        first = text[start]
        if first.isascii() and first.isalpha():
            for i in range(start, end, _LETTERS_PER_TOKEN):
                costs[i] = 1
        elif first in " \t":
            if end - start > 1:
                costs[start + 1] = 1
        else:
            costs[start] = _HANGUL_COST if _is_hangul(first) else 1
    return costs


def estimate_tokens(text: str) -> int:
    """A high guess of the tokens `text` costs under an unknown tokenizer (specials included)."""
    total = SPECIAL_TOKENS
    for match in _SEGMENTS.finditer(text):
        start, end = match.span()
        first = text[start]
        if first.isascii() and first.isalpha():
            total += -(-(end - start) // _LETTERS_PER_TOKEN)
        elif first in " \t":
            total += end - start > 1
        else:
            total += _HANGUL_COST if _is_hangul(first) else 1
    return total


def count_tokens(model: str, text: str) -> int:
    """Tokens `text` costs under `model`: exact where the vocabulary ships, else the estimate."""
    tokenizer = _tokenizer(model)
    if tokenizer is None:
        return estimate_tokens(text)
    return len(tokenizer.encode(text).ids)


def _head_encoding(tokenizer: Any, text: str, budget: int) -> tuple[Any, bool]:
    """The encoding (no specials) of `text`, or only of a head of it that ends at a blank and
    holds more than `budget` tokens; the flag says whether it is the whole text.

    WordPiece reads each blank-separated word on its own, so a head cut at a blank has exactly
    the leading tokens of the whole text; a megabyte input costs a window, not seconds.
    """
    window = max(256, budget * 8)
    while window < len(text):
        cut = max(text.rfind(" ", 0, window), text.rfind("\n", 0, window))
        if cut > 0:
            encoding = tokenizer.encode(text[:cut], add_special_tokens=False)
            if len(encoding.ids) > budget:
                return encoding, False
        window *= 4
    return tokenizer.encode(text, add_special_tokens=False), True


def _estimated_head(text: str, limit: int) -> str:
    """A head of `text` whose estimate exceeds `limit`, or all of it. Costs sit on characters
    and never depend on what follows, so the head's costs are those of the whole text."""
    window = max(256, limit * 4)
    while window < len(text):
        if estimate_tokens(text[:window]) > limit:
            return text[:window]
        window *= 4
    return text


def count_tokens_up_to(model: str, text: str, limit: int) -> tuple[int, bool]:
    """(tokens, exact): the exact count when it is within a few windows of `limit`, else a
    count of a head only, already over `limit` (exact=False: the text has more)."""
    tokenizer = _tokenizer(model)
    if tokenizer is None:
        # The estimate of a head is a lower bound of the whole text's estimate.
        head = _estimated_head(text, limit)
        return estimate_tokens(head), len(head) == len(text)
    encoding, whole = _head_encoding(tokenizer, text, limit)
    return len(encoding.ids) + SPECIAL_TOKENS, whole


def count_tokens_many(model: str, texts: Sequence[str]) -> list[int]:
    """`count_tokens` for many texts at once (the Rust tokenizer encodes them in parallel)."""
    tokenizer = _tokenizer(model)
    if tokenizer is None:
        return [estimate_tokens(text) for text in texts]
    return [len(encoding.ids) for encoding in tokenizer.encode_batch(list(texts))]


def too_short_to_exceed(text: str, limit: int) -> bool:
    """True when `text` certainly fits `limit` without counting: every token covers at least one
    character, except the jamo a Hangul syllable breaks into (at most three per syllable)."""
    size = len(text) + SPECIAL_TOKENS
    if size > limit:
        return False
    return 3 * len(text) + SPECIAL_TOKENS <= limit or not _HANGUL.search(text)


def fits(model: str, text: str, limit: int) -> bool:
    """Whether `text` is within `limit` tokens; cheap for texts too short to exceed it."""
    return too_short_to_exceed(text, limit) or count_tokens(model, text) <= limit


def _content_budget(limit: int) -> int:
    if limit <= SPECIAL_TOKENS:
        raise ValueError(f"a token limit must exceed {SPECIAL_TOKENS}, got {limit}")
    return limit - SPECIAL_TOKENS


def _cumulative_costs(text: str) -> list[int]:
    """cum[i] is the estimated content tokens of text[:i]."""
    return [0, *accumulate(_char_costs(text))]


def _estimated_prefix_end(text: str, cum: list[int], start: int, budget: int) -> int:
    """The end of the longest slice text[start:end] whose estimate fits `budget` content tokens,
    moved back to the last blank when there is one in its second half."""
    end = bisect_right(cum, cum[start] + budget, lo=start) - 1
    if end < len(text):
        blank = text.rfind(" ", start, end + 1)
        if blank > start + (end - start) // 2:
            end = blank
    return max(end, start + 1)


def _exact_boundaries(tokenizer: Any, text: str, budget: int) -> list[tuple[int, int]]:
    """Character spans of pieces of at most `budget` tokens, cut between words where possible."""
    encoding = tokenizer.encode(text, add_special_tokens=False)
    offsets: list[tuple[int, int]] = encoding.offsets
    words: list[int | None] = encoding.word_ids
    spans: list[tuple[int, int]] = []
    first = 0
    while first < len(offsets):
        last = min(first + budget, len(offsets))
        if last < len(offsets) and words[last] is not None and words[last] == words[last - 1]:
            # Do not start the next piece inside a word: a continuation piece read as a word
            # start may take more tokens. Only a word longer than the budget is cut inside.
            word_start = last
            while word_start > first and words[word_start - 1] == words[last]:
                word_start -= 1
            if word_start > first:
                last = word_start
        spans.append((offsets[first][0], offsets[last - 1][1]))
        first = last
    return spans


def truncate_to_tokens(model: str, text: str, limit: int) -> str:
    """The longest prefix of `text` within `limit` tokens, cut on a token boundary."""
    if too_short_to_exceed(text, limit):
        return text
    budget = _content_budget(limit)
    tokenizer = _tokenizer(model)
    if tokenizer is None:
        head = _estimated_head(text, limit)
        if len(head) == len(text) and estimate_tokens(text) <= limit:
            return text
        return text[: _estimated_prefix_end(head, _cumulative_costs(head), 0, budget)]
    encoding, _ = _head_encoding(tokenizer, text, budget)
    if len(encoding.ids) <= budget:
        return text
    prefix = text[: encoding.offsets[budget - 1][1]]
    while count_tokens(model, prefix) > limit and budget > 1:  # pragma: no cover - defensive
        budget -= 1
        prefix = text[: encoding.offsets[budget - 1][1]]
    return prefix


def split_to_tokens(model: str, text: str, limit: int) -> list[str]:
    """`text` cut into consecutive pieces of at most `limit` tokens each (one if it fits)."""
    if fits(model, text, limit):
        return [text]
    budget = _content_budget(limit)
    tokenizer = _tokenizer(model)
    pieces: list[str] = []
    if tokenizer is None:
        cum = _cumulative_costs(text)
        start = 0
        while start < len(text):
            end = _estimated_prefix_end(text, cum, start, budget)
            piece = text[start:end]
            if piece.strip():
                pieces.append(piece)
            start = end
        return pieces
    for begin, end in _exact_boundaries(tokenizer, text, budget):
        piece = text[begin:end]
        if count_tokens(model, piece) <= limit:
            pieces.append(piece)
        else:  # pragma: no cover - a piece re-read differently; cut it again, smaller
            pieces.extend(split_to_tokens(model, piece, max(SPECIAL_TOKENS + 1, limit - 1)))
    return pieces
