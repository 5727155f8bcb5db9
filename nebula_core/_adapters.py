"""What the LangChain and LlamaIndex adapters share beyond the client itself."""

from __future__ import annotations

from typing import Any

from nebula_core.models import check_dimensions

__all__ = ["CLIENT_OPTIONS", "client_options"]

#: `NebulaClient` arguments that both adapters expose as fields under the same names.
CLIENT_OPTIONS = (
    "base_url",
    "timeout",
    "max_retries",
    "max_concurrency",
    "default_headers",
    "deadline",
    "requests_per_minute",
    "tokens_per_minute",
    "on_long_input",
    "max_input_tokens",
    "max_tokens_per_request",
    "dimensions",
)


def client_options(adapter: object) -> dict[str, Any]:
    """The client arguments an adapter's fields hold (the key is passed separately)."""
    options = {name: getattr(adapter, name) for name in CLIENT_OPTIONS}
    # An empty NEBULA_BASE_URL means unset, as in the core.
    options["base_url"] = options["base_url"] or None
    # The client learns the model per call; the adapter knows it now, so refuse a bad
    # `dimensions` at construction rather than at the first embed.
    model = getattr(adapter, "model", None) or getattr(adapter, "model_name", None)
    check_dimensions(model, options["dimensions"])
    return options
