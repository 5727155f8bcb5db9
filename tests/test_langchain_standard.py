"""LangChain's own standard test suites for `NebulaEmbeddings`.

The unit suite runs with sockets disabled (as LangChain's partner packages run theirs) to prove
that constructing the class never touches the network; the integration suite talks to a
class-scoped emulator over real HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from langchain_nebula import NebulaEmbeddings
from nebula_core.testing import NebulaEmulator


@pytest.mark.disable_socket
class TestNebulaEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[NebulaEmbeddings]:
        return NebulaEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": "BAAI/bge-large-en-v1.5", "api_key": "ak_unit_test_key"}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return (
            {"NEBULA_API_KEY": "ak_from_env", "NEBULA_BASE_URL": "https://proxy.example.com/v1"},
            {"model": "Qwen/Qwen3-Embedding-8B"},
            {
                "api_key": "ak_from_env",
                "base_url": "https://proxy.example.com/v1",
                "model": "Qwen/Qwen3-Embedding-8B",
            },
        )


class TestNebulaEmbeddingsIntegration(EmbeddingsIntegrationTests):
    emulator: NebulaEmulator

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _emulator(cls) -> Iterator[None]:
        with NebulaEmulator() as emu:
            cls.emulator = emu
            yield

    @property
    def embeddings_class(self) -> type[NebulaEmbeddings]:
        return NebulaEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"api_key": self.emulator.api_key, "base_url": self.emulator.base_url}
