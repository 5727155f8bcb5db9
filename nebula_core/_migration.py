"""The OpenAI integrations' argument names, mapped onto ours or refused with the replacement.

Code written for LangChain's `OpenAIEmbeddings` or llama-index's `OpenAIEmbedding` should work
after changing only the class name. Each adapter runs `from_openai_names` on its constructor
arguments: a renamed argument becomes our field (one canonical field, so `model_dump`,
`to_dict` and pickling see only our names), and an argument that asks for something NebulaBlock
cannot do raises `ConfigurationError` naming what to use instead. Nothing is silently ignored:
the only arguments dropped are values that ask for exactly what we do anyway (the defaults).
Messages name arguments, never their values, which may hold credentials.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nebula_core.errors import ConfigurationError

__all__ = [
    "LANGCHAIN_NAMES",
    "LLAMA_INDEX_NAMES",
    "Refused",
    "Renamed",
    "add_openai_attributes",
    "from_openai_names",
]


@dataclass(frozen=True)
class Renamed:
    """An OpenAI argument that is ours under another name (and perhaps another value)."""

    ours: str
    convert: Callable[[Any], Any] | None = None
    #: Our arguments this one implies when they are not given (OpenAI's defaults around it).
    implies: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Refused:
    """An OpenAI argument we cannot honour; `harmless` values ask for what we do anyway."""

    why: str
    harmless: tuple[Any, ...] = (None,)


def _ctx_check(check: object) -> str:
    # OpenAIEmbeddings' check (its default) splits long texts by tokens and averages the
    # pieces' vectors; without it the text goes out as is and OpenAI answers 400 when it is
    # too long. "error" refuses the same inputs, before any request and naming them.
    return "average" if check else "error"


_AZURE = "it is for Azure OpenAI; NebulaBlock has no API versions or deployments"
_HTTP_CLIENT = (
    "the client keeps its own connection pool; for a proxy set HTTPS_PROXY in the "
    "environment, for extra headers pass default_headers="
)
_BODY = (
    "its entries go into OpenAI's request body, and NebulaBlock's takes only model and input "
    "(for shorter Matryoshka vectors pass dimensions=)"
)
_TOKENIZER = "token counts use the model's own tokenizer, never tiktoken"

#: `OpenAIEmbeddings` (langchain-openai) names. Same-named arguments (`model`, `dimensions`,
#: `max_retries`, `default_headers`, `api_key`, `base_url`, `timeout`) need no entry.
LANGCHAIN_NAMES: Mapping[str, Renamed | Refused] = {
    "chunk_size": Renamed("batch_size"),
    "show_progress_bar": Renamed("show_progress"),
    "request_timeout": Renamed("timeout"),
    "openai_api_key": Renamed("api_key"),
    "openai_api_base": Renamed("base_url"),
    "embedding_ctx_length": Renamed("max_input_tokens", implies={"on_long_input": "average"}),
    "check_embedding_ctx_length": Renamed("on_long_input", _ctx_check),
    "tiktoken_enabled": Refused(_TOKENIZER, harmless=(None, True, False)),
    "tiktoken_model_name": Refused(_TOKENIZER + "; remove it"),
    "allowed_special": Refused(_TOKENIZER + "; remove it"),
    "disallowed_special": Refused(_TOKENIZER + "; remove it"),
    "deployment": Refused(_AZURE + "; pass the NebulaBlock model id as model="),
    "openai_api_version": Refused(_AZURE),
    "api_version": Refused(_AZURE),
    "openai_api_type": Refused(_AZURE),
    "openai_organization": Refused("NebulaBlock has no organizations; the API key is enough"),
    "organization": Refused("NebulaBlock has no organizations; the API key is enough"),
    "openai_proxy": Refused("set HTTPS_PROXY in the environment; the client honours it"),
    "headers": Refused("pass default_headers="),
    "model_kwargs": Refused(_BODY, harmless=(None, {})),
    "default_query": Refused("NebulaBlock takes no query parameters", harmless=(None, {})),
    "skip_empty": Refused(
        "empty or whitespace-only texts raise ValueError naming their positions; "
        "drop them before embedding",
        harmless=(None, False),
    ),
    "retry_min_seconds": Refused(
        "retries back off exponentially with jitter and follow Retry-After; "
        "bound them with max_retries= and deadline="
    ),
    "retry_max_seconds": Refused(
        "retries back off exponentially with jitter and follow Retry-After; "
        "bound them with max_retries= and deadline="
    ),
    "http_client": Refused(_HTTP_CLIENT),
    "http_async_client": Refused(_HTTP_CLIENT),
    "client": Refused("it builds its own; read it as .client"),
    "async_client": Refused("it builds its own; read it as .client"),
}

#: llama-index `OpenAIEmbedding` names. Same-named arguments (`model_name`, `embed_batch_size`,
#: `dimensions`, `timeout`, `max_retries`, `default_headers`, `api_key`) need no entry.
LLAMA_INDEX_NAMES: Mapping[str, Renamed | Refused] = {
    "api_base": Renamed("base_url"),
    "model": Renamed("model_name"),
    # LlamaIndex's async fan-out: batches in flight at once, which is what max_concurrency
    # bounds here, in sync and async code alike.
    "num_workers": Renamed("max_concurrency"),
    "mode": Refused(
        "queries get the model's retrieval instruction; change it with query_instruction=",
        harmless=(None, "text_search"),
    ),
    "additional_kwargs": Refused(_BODY, harmless=(None, {})),
    "api_version": Refused(_AZURE, harmless=(None, "")),
    "reuse_client": Refused(
        "one client is always shared, safely across threads and event loops",
        harmless=(None, True),
    ),
    "http_client": Refused(_HTTP_CLIENT),
    "async_http_client": Refused(_HTTP_CLIENT),
}


def _is_harmless(value: object, harmless: tuple[Any, ...]) -> bool:
    # Compared by type too, so that 0 does not pass for False nor 1 for True.
    return any(value is h or (isinstance(value, type(h)) and value == h) for h in harmless)


def from_openai_names(
    data: object, names: Mapping[str, Renamed | Refused], owner: str, origin: str
) -> object:
    """`data` (constructor arguments) with OpenAI names renamed; refused ones raise.

    `None` counts as not given, as in the OpenAI classes (their fields default to None or
    read the environment). Giving an OpenAI name and ours with different values raises, so
    neither is silently dropped.
    """
    if not isinstance(data, dict) or not any(name in data for name in names):
        return data
    result = {name: value for name, value in data.items() if name not in names}
    implied: dict[str, Any] = {}
    for name, value in data.items():
        entry = names.get(name)
        if entry is None:
            continue
        if isinstance(entry, Refused):
            if not _is_harmless(value, entry.harmless):
                raise ConfigurationError(
                    f"{owner} does not take {name} (from {origin}): {entry.why}."
                )
            continue
        if value is None:
            continue
        ours = entry.convert(value) if entry.convert else value
        if result.get(entry.ours) is not None and result[entry.ours] != ours:
            raise ConfigurationError(
                f"{owner} got both {name} and {entry.ours} with different values; {origin} "
                f"calls {entry.ours} {name}: pass only one of them."
            )
        result[entry.ours] = ours
        implied.update(entry.implies)
    for name, value in implied.items():
        if result.get(name) is None:
            result[name] = value
    return result


def _alias(ours: str) -> property:
    def get(self: object) -> Any:
        return getattr(self, ours)

    def set_(self: object, value: Any) -> None:
        setattr(self, ours, value)  # validated and applied as an assignment to our field

    return property(get, set_, doc=f"The OpenAI integration's name for `{ours}`.")


def add_openai_attributes(cls: type, names: Mapping[str, Renamed | Refused]) -> None:
    """Let code that reads or sets `embeddings.chunk_size` keep working.

    Only plain renames get an attribute; a converted one (`check_embedding_ctx_length`) or
    one that implies other settings (`embedding_ctx_length`) would not read back as written,
    so those are constructor arguments only.
    """
    for name, entry in names.items():
        if isinstance(entry, Renamed) and entry.convert is None and not entry.implies:
            # Never over a field of the class (pydantic fields are not class attributes):
            # LlamaIndex's own `num_workers` field stays a field.
            fields = getattr(cls, "model_fields", {})
            if name not in fields and not hasattr(cls, name):
                setattr(cls, name, _alias(entry.ours))
