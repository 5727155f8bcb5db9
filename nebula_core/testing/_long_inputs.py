"""Per-input token limits per model, answered the way different servers answer them.

`long_input=None` keeps the emulator's own 400; `"tei"` (alias `"reject"`) answers as
text-embeddings-inference does (413, `Input validation error: ...`); `"vllm"` as vLLM's
OpenAI-compatible server (400, `This model's maximum context length is ...`); `"truncate"`
silently embeds the first N tokens, as servers with truncation on do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from nebula_core.models import MODELS
from nebula_core.testing._bodies import tei_too_long_reply, vllm_too_long_reply
from nebula_core.testing._tokens import default_tokenizer
from nebula_core.testing._wire import Reply, error_reply

__all__ = ["LONG_INPUT_MODES", "LongInputMode", "LongInputPolicy", "Prepared"]

LongInputMode = Literal["reject", "tei", "vllm", "truncate"]
LONG_INPUT_MODES: tuple[LongInputMode, ...] = get_args(LongInputMode)

#: Context length assumed for model ids the catalogue does not know.
UNKNOWN_MODEL_CONTEXT_TOKENS = 8192


@dataclass(frozen=True)
class Prepared:
    """The texts to embed (truncated where the policy says so) and their token counts,
    or the refusal to send instead."""

    texts: list[str]
    tokens: list[int]
    refusal: Reply | None = None


class LongInputPolicy:
    """How many tokens one input of each model may have, and what happens above that."""

    def __init__(
        self,
        *,
        max_input_tokens: int | Mapping[str, int] | None = None,
        long_input: LongInputMode | None = None,
    ) -> None:
        if long_input is not None and long_input not in LONG_INPUT_MODES:
            raise ValueError(
                f"long_input must be None or one of {LONG_INPUT_MODES}, got {long_input!r}"
            )
        limits = (
            max_input_tokens.values()
            if isinstance(max_input_tokens, Mapping)
            else [max_input_tokens]
        )
        for limit in limits:
            if limit is not None and not (isinstance(limit, int) and limit >= 1):
                raise ValueError(f"max_input_tokens must be ints >= 1, got {limit!r}")
        self.max_input_tokens = max_input_tokens
        self.long_input: LongInputMode | None = long_input

    def limit(self, model: str) -> int:
        """The token limit of one input of `model`: configured, else the model's context."""
        configured = self.max_input_tokens
        if isinstance(configured, Mapping):
            configured = configured.get(model)
        if configured is not None:
            return configured
        info = MODELS.get(model)
        return (info.context_tokens if info else None) or UNKNOWN_MODEL_CONTEXT_TOKENS

    def prepare(self, model: str, texts: Sequence[str]) -> Prepared:
        """Count tokens and apply the limit to one request's inputs."""
        tokenizer = default_tokenizer(model)
        tokens = [tokenizer.count(text) for text in texts]
        limit = self.limit(model)
        too_long = [i for i, count in enumerate(tokens) if count > limit]
        if not too_long:
            return Prepared(list(texts), tokens)
        mode = self.long_input
        if mode == "truncate":
            cut = list(texts)
            for i in too_long:
                cut[i] = tokenizer.truncate(texts[i], limit)
                tokens[i] = tokenizer.count(cut[i])
            return Prepared(cut, tokens)
        if mode in ("tei", "reject"):
            return Prepared(list(texts), tokens, tei_too_long_reply(limit))
        if mode == "vllm":
            return Prepared(list(texts), tokens, vllm_too_long_reply(limit, max(tokens)))
        where = (
            f"Input at index {too_long[0]} is"
            if len(too_long) == 1
            else f"Inputs at indices {', '.join(map(str, too_long[:10]))} are"
        )
        message = (
            f"{where} too long for {model}: {max(tokens)} tokens, "
            f"but the context length is {limit} tokens."
        )
        return Prepared(list(texts), tokens, error_reply(400, message))
