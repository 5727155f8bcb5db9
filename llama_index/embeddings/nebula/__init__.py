"""`from llama_index.embeddings.nebula import NebulaEmbedding`, LlamaIndex's conventional path.

`llama_index` and `llama_index.embeddings` are namespace packages shared with llama-index-core
and other integrations, so this directory is the only one of ours with an `__init__.py`.
"""

from llama_index_nebula import NebulaEmbedding

__all__ = ["NebulaEmbedding"]
