"""NebulaBlock embeddings for LlamaIndex: `from llama_index_nebula import NebulaEmbedding`.

Also importable as `from llama_index.embeddings.nebula import NebulaEmbedding`, the path
LlamaIndex integrations conventionally use.
"""

from llama_index_nebula.base import NebulaEmbedding

__all__ = ["NebulaEmbedding"]
