"""Inputs over a model's token limit: cut them, average their pieces, or refuse them up front.

`plan_long_inputs` turns a call's texts into the texts actually sent (the same list when none
is too long) and remembers how to turn the answers back into one vector per input. The limit
comes from the caller, the catalogue, or what the service said when it refused an input
(`limit_from_message`).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from nebula_core._tokens import (
    SPECIAL_TOKENS,
    count_tokens_many,
    count_tokens_up_to,
    is_exact,
    too_short_to_exceed,
)
from nebula_core._tokens import split_to_tokens as _split
from nebula_core._tokens import truncate_to_tokens as _truncate
from nebula_core.errors import InputTooLongError
from nebula_core.models import MODELS

__all__ = [
    "LongInputPlan",
    "LongInputPolicy",
    "LongInputSettings",
    "Overlong",
    "check_policy",
    "effective_limit",
    "limit_from_message",
    "over_limit",
    "plan_long_inputs",
    "token_ranges",
    "too_long_error",
]

LongInputPolicy = Literal["truncate", "average", "error"]

#: The number a server names when it refuses an over-long input: TEI ("inputs must have less
#: than 512 tokens"), vLLM / OpenAI ("maximum context length is 512 tokens") and our emulator
#: ("the context length is 512 tokens").
_LIMIT_MESSAGES = (
    re.compile(r"must have less than (\d+) tokens", re.IGNORECASE),
    re.compile(r"context length is (\d+) tokens", re.IGNORECASE),
)

#: At most this many positions are spelled out in one warning or error message.
_NAMED = 10


def check_policy(policy: str) -> LongInputPolicy:
    """`policy` if it is one of the three, else a ValueError naming them."""
    choices: tuple[LongInputPolicy, ...] = get_args(LongInputPolicy)
    for choice in choices:
        if policy == choice:
            return choice
    raise ValueError(f"on_long_input must be one of {', '.join(choices)}; got {policy!r}.")


def _optional_count(name: str, value: int | None, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum} or None, got {value!r}.")
    return value


@dataclass(frozen=True)
class LongInputSettings:
    """A client's long-input, token-batching and Matryoshka options, checked once."""

    on_long_input: LongInputPolicy = "truncate"
    max_input_tokens: int | None = None
    max_tokens_per_request: int | None = None
    dimensions: int | None = None

    @classmethod
    def build(
        cls,
        on_long_input: str,
        max_input_tokens: int | None,
        max_tokens_per_request: int | None,
        dimensions: int | None,
    ) -> LongInputSettings:
        return cls(
            check_policy(on_long_input),
            _optional_count("max_input_tokens", max_input_tokens, SPECIAL_TOKENS + 1),
            _optional_count("max_tokens_per_request", max_tokens_per_request, 1),
            _optional_count("dimensions", dimensions, 1),
        )


def limit_from_message(message: str | None) -> int | None:
    """The token limit named in a server's "input too long" message, or None if it names none."""
    if not message:
        return None
    for pattern in _LIMIT_MESSAGES:
        match = pattern.search(message)
        if match:
            limit = int(match.group(1))
            return limit if limit > SPECIAL_TOKENS else None
    return None


def effective_limit(model: str, max_input_tokens: int | None, learned: int | None) -> int | None:
    """The limit to plan with: the caller's or else the catalogue's, lowered by a learned one."""
    limit = max_input_tokens
    if limit is None:
        info = MODELS.get(model)
        limit = info.context_tokens if info is not None else None
    if learned is not None:
        limit = learned if limit is None else min(limit, learned)
    return limit


def token_ranges(
    counts: Sequence[int], batch_size: int, max_tokens: int | None
) -> list[tuple[int, int]]:
    """Batches of at most `batch_size` inputs and `max_tokens` tokens (an input over the token
    budget on its own still goes, alone)."""
    ranges: list[tuple[int, int]] = []
    start, spent = 0, 0
    for position, count in enumerate(counts):
        full = position - start >= batch_size
        over = max_tokens is not None and position > start and spent + count > max_tokens
        if full or over:
            ranges.append((start, position))
            start, spent = position, 0
        spent += count
    if start < len(counts):
        ranges.append((start, len(counts)))
    return ranges


Overlong = tuple[int, int, bool]
"""(position, tokens, exact): an input over the limit; exact=False means "more than tokens"."""


def _positions_text(items: Sequence[Overlong], unit: str) -> str:
    named = ", ".join(
        f"{position} ({'' if exact else 'more than '}{tokens:,} {unit})"
        for position, tokens, exact in items[:_NAMED]
    )
    more = len(items) - _NAMED
    return named + (f" and {more} more" if more > 0 else "")


@dataclass
class LongInputPlan:
    """The texts to send for one call, and how their vectors map back to its inputs.

    `owners[i]` is the input that sent text `i` belongs to and `weights[i]` its token count
    (both None when nothing was split). `cuts` holds (position, tokens before cutting) for
    every truncated input, including those cut later on the service's word.
    """

    model: str
    policy: LongInputPolicy
    limit: int | None
    texts: list[str]
    owners: list[int] | None = None
    weights: list[int] | None = None
    cuts: list[Overlong] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def owner(self, index: int) -> int:
        """The input position that sent text `index` belongs to."""
        return index if self.owners is None else self.owners[index]

    def note_cuts(self, cuts: Sequence[Overlong], limit: int) -> None:
        """Record truncations made after planning (a limit learned mid-call)."""
        with self._lock:
            self.cuts.extend(cuts)
            self.limit = limit if self.limit is None else min(self.limit, limit)

    @property
    def merges(self) -> bool:
        """Do some inputs have several pieces whose vectors `combine` must average?"""
        owners = self.owners
        return owners is not None and len(set(owners)) != len(owners)

    def warning(self) -> str | None:
        """The one WARNING line a call logs about the inputs it cut, or None if it cut none."""
        with self._lock:
            cuts = sorted(self.cuts)
        if not cuts:
            return None
        unit = "tokens" if is_exact(self.model) else "tokens, estimated"
        return (
            f"Truncated {len(cuts)} input(s) to the {self.limit}-token limit of {self.model}; "
            f"the text past the limit was not embedded. Position ({unit} before cutting): "
            f"{_positions_text(cuts, 'tokens')}. Pass "
            'on_long_input="average" to embed all of each text, or "error" to refuse them.'
        )

    def combine(self, vectors: list[list[float]]) -> list[list[float]]:
        """One vector per input; a split one gets its pieces' token-weighted mean, normalized."""
        if self.owners is None or self.weights is None:
            return vectors
        combined: list[list[float]] = []
        index = 0
        total = len(vectors)
        while index < total:
            owner = self.owners[index]
            end = index + 1
            while end < total and self.owners[end] == owner:
                end += 1
            if end - index == 1:
                combined.append(vectors[index])
            else:
                combined.append(_weighted_mean(vectors[index:end], self.weights[index:end]))
            index = end
        return combined


def _weighted_mean(vectors: Sequence[list[float]], weights: Sequence[int]) -> list[float]:
    mean = [0.0] * len(vectors[0])
    for vector, weight in zip(vectors, weights, strict=True):
        for i, value in enumerate(vector):
            mean[i] += weight * value
    norm = math.sqrt(math.fsum(x * x for x in mean))
    return [x / norm for x in mean] if norm > 0 else mean


def over_limit(model: str, texts: Sequence[str], limit: int) -> list[Overlong]:
    """(index, tokens, exact) of the texts over `limit`; only texts long enough to exceed it
    are counted, and a huge one only as far as needed."""
    candidates = [i for i, text in enumerate(texts) if not too_short_to_exceed(text, limit)]
    if not candidates:
        return []
    huge = 16 * limit  # characters: past this, count a head instead of the whole text
    small = [i for i in candidates if len(texts[i]) <= huge]
    counts = dict(zip(small, count_tokens_many(model, [texts[i] for i in small]), strict=True))
    found: list[Overlong] = []
    for i in candidates:
        tokens, exact = (
            (counts[i], True) if i in counts else count_tokens_up_to(model, texts[i], limit)
        )
        if tokens > limit:
            found.append((i, tokens, exact))
    return found


def too_long_error(
    model: str,
    offenders: Sequence[Overlong],
    limit: int,
    *,
    status_code: int | None = None,
    server_message: str | None = None,
) -> InputTooLongError:
    """The error for `on_long_input="error"`, naming every offending position."""
    unit = "tokens" if is_exact(model) else "tokens, estimated"
    return InputTooLongError(
        f"{len(offenders)} input(s) exceed the {limit}-token limit of {model}: position "
        f"({unit}) {_positions_text(offenders, 'tokens')}. Shorten or split them, or pass "
        'on_long_input="truncate" or "average".',
        positions=[position for position, _, _ in offenders],
        limit=limit,
        status_code=status_code,
        server_message=server_message,
    )


def plan_long_inputs(
    texts: list[str],
    model: str,
    policy: LongInputPolicy,
    limit: int | None,
    positions: Sequence[int] | None = None,
) -> LongInputPlan:
    """What to send for `texts` under `policy`; raises `InputTooLongError` for "error".

    `positions` are the call's positions of `texts` (default: 0, 1, ...), used in messages
    and in `owners`, so a part of a call can be re-planned once the service names a limit.
    """
    if limit is None:
        plan = LongInputPlan(model, policy, limit, texts)
        if positions is not None:
            plan.owners, plan.weights = list(positions), [1] * len(texts)
        return plan
    long_inputs = over_limit(model, texts, limit)
    where = list(range(len(texts))) if positions is None else list(positions)
    if not long_inputs:
        plan = LongInputPlan(model, policy, limit, texts)
        if positions is not None:
            plan.owners, plan.weights = where, [1] * len(texts)
        return plan
    if policy == "error":
        raise too_long_error(model, [(where[i], n, exact) for i, n, exact in long_inputs], limit)
    if policy == "truncate":
        sent = list(texts)
        for i, _, _ in long_inputs:
            sent[i] = _truncate(model, texts[i], limit)
        plan = LongInputPlan(model, policy, limit, sent)
        plan.cuts = [(where[i], n, exact) for i, n, exact in long_inputs]
        if positions is not None:
            plan.owners, plan.weights = where, [1] * len(texts)
        return plan
    splits = {i: _split(model, texts[i], limit) for i, _, _ in long_inputs}
    sent, owners, weights = [], [], []
    for i, text in enumerate(texts):
        pieces = splits.get(i, [text])
        piece_weights = (
            [max(1, count - SPECIAL_TOKENS) for count in count_tokens_many(model, pieces)]
            if len(pieces) > 1
            else [1]
        )
        sent.extend(pieces)
        owners.extend([where[i]] * len(pieces))
        weights.extend(piece_weights)
    return LongInputPlan(model, policy, limit, sent, owners, weights)
