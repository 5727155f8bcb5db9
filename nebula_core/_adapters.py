"""What the LangChain and LlamaIndex adapters share beyond the client itself."""

from __future__ import annotations

from typing import Any

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
    "encoding_format",
)


def client_options(adapter: object) -> dict[str, Any]:
    """The client arguments an adapter's fields hold (the key is passed separately)."""
    options = {name: getattr(adapter, name) for name in CLIENT_OPTIONS}
    # An empty NEBULA_BASE_URL means unset, as in the core.
    options["base_url"] = options["base_url"] or None
    return options
