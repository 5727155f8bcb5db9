"""LangChain integration for NebulaBlock embeddings: `NebulaEmbeddings`.

Install with `pip install 'nebulablock-embeddings[langchain]'`; the HTTP work is done by
`nebula_core.NebulaClient`, this package only maps LangChain's `Embeddings` interface onto it.
"""

try:
    import langchain_core.embeddings  # noqa: F401 - only to fail early with a useful message
except ImportError as error:
    raise ImportError(
        "langchain_nebula needs LangChain, which is not installed: "
        "pip install 'nebulablock-embeddings[langchain]'"
    ) from error

from langchain_nebula.embeddings import NebulaEmbeddings

__all__ = ["NebulaEmbeddings"]
