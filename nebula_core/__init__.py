"""Shared core of nebulablock-embeddings: the NebulaBlock embeddings client and its errors.

The LangChain and LlamaIndex adapters are thin layers over `NebulaClient`; the local emulator
of the service lives in `nebula_core.testing`.
"""

from nebula_core._codec import Usage
from nebula_core._config import DEFAULT_BASE_URL, Secret
from nebula_core._streaming import EmbeddingBatch
from nebula_core._version import __version__
from nebula_core.client import ClientStats, EmbeddingResult, NebulaClient, ProgressCallback
from nebula_core.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    DeadlineExceededError,
    InputTooLongError,
    NebulaError,
    QuotaExceededError,
    RateLimitError,
    ResponseFormatError,
    ServerError,
)
from nebula_core.models import DEFAULT_MODEL, MODELS, ModelInfo, model_info, with_query_instruction

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "MODELS",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ClientStats",
    "ConfigurationError",
    "DeadlineExceededError",
    "EmbeddingBatch",
    "EmbeddingResult",
    "InputTooLongError",
    "ModelInfo",
    "NebulaClient",
    "NebulaError",
    "ProgressCallback",
    "QuotaExceededError",
    "RateLimitError",
    "ResponseFormatError",
    "Secret",
    "ServerError",
    "Usage",
    "__version__",
    "model_info",
    "with_query_instruction",
]
