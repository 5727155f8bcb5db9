"""What the LangChain and LlamaIndex adapters share beyond the client itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nebula_core.client import NebulaClient
from nebula_core.models import check_dimensions

__all__ = ["CLIENT_OPTIONS", "BoundClient", "client_options"]

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
    "encoding_format",
    "rate_limit_share",
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


@dataclass(frozen=True)
class BoundClient:
    """A client together with the adapter settings it was built from.

    Immutable on purpose: pydantic's `model_copy` shares private attributes between the
    original and the copy, so an adapter never mutates its `BoundClient`; it replaces it with
    `bound.current(...)`, which builds a new client only when the settings differ. A copy with
    another `base_url` or `timeout` thus gets its own client, and the original keeps its own.
    """

    client: NebulaClient
    api_key: str | None = field(repr=False)
    options: dict[str, Any] = field(repr=False)

    @classmethod
    def build(cls, api_key: str | None, options: dict[str, Any]) -> BoundClient:
        """A new client for these settings; the core validates them and raises on bad ones."""
        return cls(NebulaClient(api_key=api_key, **options), api_key, dict(options))

    def matches(self, api_key: str | None, options: dict[str, Any]) -> bool:
        """Whether the client was built from exactly these settings."""
        return api_key == self.api_key and options == self.options

    def current(self, api_key: str | None, options: dict[str, Any]) -> BoundClient:
        """This binding if the settings are unchanged, else one with a client built for them."""
        return self if self.matches(api_key, options) else BoundClient.build(api_key, options)
