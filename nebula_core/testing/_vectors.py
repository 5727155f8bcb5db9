"""Deterministic stand-in embeddings, cheap enough that the emulator is never the bottleneck.

A vector is a sparse bag of hashed features (each lower-cased word, plus a crude stem of it so
that "retry", "retries" and "retrying" overlap) laid over a dense per-text background, so every
coordinate is non-zero like a real embedding. Texts that share words share coordinates, which
makes retrieval demos on real English passages rank sensibly.

Speed: the dense background is a window into a long per-model array whose energy and JSON
text are computed once, and the word features are scaled so that the sum is exactly unit
length. Only the coordinates the words touch are computed (in C-level loops) and spliced into
the background's JSON; the finished bytes are cached, and responses are assembled from them
without serializing a float again.
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
import threading
from array import array
from collections import OrderedDict, deque
from functools import lru_cache
from itertools import accumulate, chain, repeat
from operator import add, mul, truediv

import orjson

from nebula_core.models import DEFAULT_MODEL
from nebula_core.testing._tokens import default_tokenizer

__all__ = ["count_tokens", "vector_json"]

_WORDS = re.compile(r"\w+")

#: Function words that would otherwise make every English sentence look alike.
# fmt: off
_STOPWORDS = frozenset((
    "a", "about", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "could", "did",
    "do", "does", "for", "from", "had", "has", "have", "how", "i", "if", "in", "into", "is", "it",
    "its", "me", "my", "no", "not", "of", "on", "or", "our", "so", "than", "that", "the", "their",
    "them", "then", "there", "these", "they", "this", "to", "was", "we", "were", "what", "when",
    "where", "which", "who", "why", "will", "with", "would", "you", "your",
))
# fmt: on

_DECIMALS = 7
_TINY = 1e-7  # stands in for a coordinate that rounds to zero: real embeddings have none
_WORD_WEIGHT = 1.0
_STEM_WEIGHT = 0.7  # related forms of a word get about a third of an exact match
# Longest first; stripped up to twice: "retrying" -> "retry" -> "retr".
# fmt: off
_SUFFIXES = (
    "ations", "ation", "ings", "ing", "ies", "ied", "ers", "er", "ed", "es", "ly", "s", "y", "e",
)
# fmt: on
_SCALE = 10**_DECIMALS
_DENSE_NORM = 0.22  # the background carries ~5% of a vector's energy
_DENSE_SPAN = 4  # the background array is this many vectors long; windows slide inside it
_INT16_RMS = 32768 / math.sqrt(3)  # RMS of uniformly distributed int16 values
_MAX_CACHED_WORDS = 200_000


def count_tokens(text: str) -> int:
    """Emulator tokens: words and punctuation marks, plus the two special tokens a BERT adds."""
    return default_tokenizer(DEFAULT_MODEL).count(text)


def _encode(text: str) -> bytes:
    # JSON can carry lone surrogates; they must hash, not crash.
    return text.encode("utf-8", "surrogatepass")


class VectorSpace:
    """The embedding function of one (model, dimensions) pair."""

    def __init__(self, model: str, dimensions: int) -> None:
        self.dimensions = dimensions
        self._key = hashlib.blake2b(_encode(f"{model}\x00{dimensions}"), digest_size=32).digest()
        self._words: dict[str, tuple[tuple[int, ...], tuple[float, ...]]] = {}

        span = _DENSE_SPAN * dimensions
        raw = array("h")
        raw.frombytes(hashlib.shake_128(self._key).digest(2 * span))
        if sys.byteorder == "big":  # the same vectors on every platform
            raw.byteswap()
        scale = _DENSE_NORM / (_INT16_RMS * math.sqrt(dimensions))
        self._background = [round(value * scale, _DECIMALS) or _TINY for value in raw]
        self._energy = list(accumulate(map(mul, self._background, self._background), initial=0.0))
        rendered = [orjson.dumps(value) for value in self._background]
        self._background_json = b",".join(rendered)
        # Where each coordinate's text starts and stops in the joined JSON (1: the comma).
        self._starts = list(accumulate((len(text) + 1 for text in rendered), initial=0))
        self._stops = [
            start + len(text) for start, text in zip(self._starts, rendered, strict=False)
        ]

    def vector_json(self, text: str) -> bytes:
        """The JSON array (as bytes) of the unit-length vector for `text`."""
        dims = self.dimensions
        digest = hashlib.blake2b(_encode(text), key=self._key, digest_size=8).digest()
        offset = int.from_bytes(digest, "little") % (len(self._background) - dims + 1)
        slots, weights = self._features(text)

        # Sum the features per coordinate. The lazy maps run one element at a time, so each
        # read sees the previous writes and repeated slots accumulate; all loops stay in C.
        sparse = dict.fromkeys(slots, 0.0)
        deque(map(sparse.__setitem__, slots, map(add, map(sparse.__getitem__, slots), weights)), 0)
        touched = sorted(sparse)
        values = list(map(sparse.__getitem__, touched))
        positions = list(map(add, touched, repeat(offset)))
        dense = list(map(self._background.__getitem__, positions))

        # Scale the features by `beta` so that |background + beta * features| == 1 exactly.
        a = sum(map(mul, values, values))
        b = 2.0 * sum(map(mul, dense, values))
        c = self._energy[offset + dims] - self._energy[offset] - 1.0
        beta = (-b + math.sqrt(b * b - 4.0 * a * c)) / (2.0 * a) if a > 0.0 else 0.0
        mixed = map(add, dense, map(mul, values, repeat(beta)))
        # round(x, 7) is slow; this gives the same short decimals in a fifth of the time.
        rounded = list(map(truediv, map(round, map(mul, mixed, repeat(_SCALE))), repeat(_SCALE)))
        if 0.0 in rounded:
            rounded = [value or _TINY for value in rounded]

        # Splice: the background's pre-rendered JSON between the touched coordinates, and the
        # touched coordinates freshly rendered.
        cut_from = [self._starts[offset], *map(self._stops.__getitem__, positions)]
        cut_to = [*map(self._starts.__getitem__, positions), self._stops[offset + dims - 1]]
        kept = map(self._background_json.__getitem__, map(slice, cut_from, cut_to))
        fresh = [*orjson.dumps(rounded)[1:-1].split(b","), b"]"] if rounded else [b"]"]
        return b"[" + b"".join(chain.from_iterable(zip(kept, fresh, strict=True)))

    def _features(self, text: str) -> tuple[list[int], list[float]]:
        """Parallel lists of (coordinate, signed weight) for every feature of `text`."""
        words = _WORDS.findall(text.lower())
        content = [word for word in words if word not in _STOPWORDS] or words
        if not content:  # punctuation or symbols only: the text itself is the one feature
            content = [text.strip() or text]
        features = [self._words.get(word) or self._word_features(word) for word in content]
        slots = list(chain.from_iterable(feature[0] for feature in features))
        weights = list(chain.from_iterable(feature[1] for feature in features))
        return slots, weights

    def _word_features(self, word: str) -> tuple[tuple[int, ...], tuple[float, ...]]:
        # Each feature is hashed to one signed coordinate, as in a hashing vectorizer.
        slots: list[int] = []
        weights: list[float] = []
        for feature, weight in (
            (f"w\x00{word}", _WORD_WEIGHT),
            (f"s\x00{_stem(word)}", _STEM_WEIGHT),
        ):
            digest = hashlib.blake2b(_encode(feature), key=self._key, digest_size=4).digest()
            bits = int.from_bytes(digest, "little")
            slots.append(bits % self.dimensions)
            weights.append(weight if bits & 0x80000000 else -weight)
        result = (tuple(slots), tuple(weights))
        if len(self._words) >= _MAX_CACHED_WORDS:
            self._words.clear()
        self._words[word] = result
        return result


def _stem(word: str) -> str:
    """A crude English stem: enough for "limit", "limits" and "limited" to share a feature."""
    for _ in range(2):
        for suffix in _SUFFIXES:
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                word = word[: -len(suffix)]
                break
    return word[:6]


@lru_cache(maxsize=32)
def vector_space(model: str, dimensions: int) -> VectorSpace:
    """One shared space per (model, dimensions): building one costs a few milliseconds."""
    return VectorSpace(model, dimensions)


class _VectorCache:
    """A thread-safe LRU of serialized vectors, bounded by entries and by bytes."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self._entries: OrderedDict[tuple[str, int, str], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int, str]) -> bytes | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: tuple[str, int, str], value: bytes) -> None:
        size = len(value) + len(key[2])
        if size > self._max_bytes:
            return
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = value
            self._bytes += size
            while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
                (_, _, text), old = self._entries.popitem(last=False)
                self._bytes -= len(old) + len(text)


# 64 MiB holds e.g. 2,048 cached texts x 4,096 dims or 6,000 x 1,024.
_CACHE = _VectorCache(max_entries=20_000, max_bytes=64 * 1024 * 1024)


def vector_json(model: str, dimensions: int, text: str) -> bytes:
    """The serialized vector the emulator returns for `text` (cached)."""
    key = (model, dimensions, text)
    cached = _CACHE.get(key)
    if cached is None:
        cached = vector_space(model, dimensions).vector_json(text)
        _CACHE.put(key, cached)
    return cached
