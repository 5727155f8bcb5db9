"""Smoke test run INSIDE a fresh venv that holds only the built wheel and one extra.

Usage: python installed_smoke.py core|langchain|llama-index

Starts the emulator shipped in the wheel, embeds documents and a query through the adapter
of that extra, and checks the vectors' count and width. It also checks that the code came
from the venv (not from a checkout on sys.path), that the other framework is not installed,
and that importing the adapter did not import it. Prints one JSON line on success; any
failure is an uncaught exception (non-zero exit, traceback on stderr).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys

DOCS = ["API keys are created in the dashboard.", "Tokens expire two hours after login."]
QUERY = "when do tokens expire?"
FRAMEWORKS = {"langchain": "langchain_core", "llama-index": "llama_index.core"}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def _from_venv(module: str) -> str:
    path = str(importlib.import_module(module).__file__)
    assert path.startswith(sys.prefix), f"{module} imported from {path}, not from {sys.prefix}"
    return path


def main(extra: str) -> dict[str, object]:
    from nebula_core.testing import NebulaEmulator  # noqa: PLC0415

    _from_venv("nebula_core")
    others = [module for name, module in FRAMEWORKS.items() if name != extra]
    for module in others:
        assert not _installed(module), f"[{extra}] installed {module}, the other framework"

    with NebulaEmulator() as emu:
        if extra == "core":
            from nebula_core import NebulaClient  # noqa: PLC0415

            for adapter, needs in [
                ("langchain_nebula", "langchain"),
                ("llama_index_nebula", "llama-index"),
            ]:
                try:
                    importlib.import_module(adapter)
                except ImportError as error:  # it must say what to install
                    assert f"pip install 'nebulablock-embeddings[{needs}]'" in str(error), error
                else:
                    raise AssertionError(f"{adapter} imported without its framework")
            client = NebulaClient(api_key=emu.api_key, base_url=emu.base_url)
            vectors = client.embed([*DOCS, QUERY]).embeddings
            docs, query = vectors[:-1], vectors[-1]
            client.close()
        elif extra == "langchain":
            from langchain_nebula import NebulaEmbeddings  # noqa: PLC0415

            _from_venv("langchain_nebula")
            lc = NebulaEmbeddings(api_key=emu.api_key, base_url=emu.base_url)
            docs, query = lc.embed_documents(DOCS), lc.embed_query(QUERY)
        elif extra == "llama-index":
            from llama_index.embeddings.nebula import NebulaEmbedding  # noqa: PLC0415
            from llama_index_nebula import NebulaEmbedding as Same  # noqa: PLC0415

            assert NebulaEmbedding is Same
            _from_venv("llama_index.embeddings.nebula")
            li = NebulaEmbedding(api_key=emu.api_key, base_url=emu.base_url)
            docs, query = li.get_text_embedding_batch(DOCS), li.get_query_embedding(QUERY)
        else:
            raise SystemExit(f"unknown extra {extra!r}")
        assert docs == [emu.embedding(text) for text in DOCS], "document vectors differ"
        requests = len(emu.embeddings_requests)

    for module in others:
        assert module not in sys.modules, f"the adapter imported {module}"
    return {
        "extra": extra,
        "documents": len(docs),
        "width": len(docs[0]),
        "query_width": len(query),
        "requests": requests,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
