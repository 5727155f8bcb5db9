"""Adapter copies get clients for their own settings, and gateway headers stay out of dumps.

`model_copy(update=...)` skips validation and shares private attributes with the original, so
a copy pointed at another server used to keep talking to the first one. Both adapters are
checked against two emulators: requests must land where each object's settings say.
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Iterator
from typing import Any

import pytest

from langchain_nebula import NebulaEmbeddings
from llama_index_nebula import NebulaEmbedding
from nebula_core.testing import NebulaEmulator

KEY = "ak_copy_test_5e21"
GATEWAY = "gw_private_value_9c07"
HEADERS = {"X-Gateway-Token": GATEWAY}


@pytest.fixture
def two_emulators() -> Iterator[tuple[NebulaEmulator, NebulaEmulator]]:
    with NebulaEmulator(api_key=KEY) as first, NebulaEmulator(api_key=KEY) as second:
        yield first, second


def _langchain(base_url: str) -> NebulaEmbeddings:
    return NebulaEmbeddings(api_key=KEY, base_url=base_url, default_headers=HEADERS)


def _llama_index(base_url: str) -> NebulaEmbedding:
    return NebulaEmbedding(api_key=KEY, base_url=base_url, default_headers=HEADERS)


def _embed(adapter: Any, text: str) -> list[float]:
    if isinstance(adapter, NebulaEmbeddings):
        return adapter.embed_documents([text])[0]
    return adapter.get_text_embedding(text)


async def _aembed(adapter: Any, text: str) -> list[float]:
    if isinstance(adapter, NebulaEmbeddings):
        return (await adapter.aembed_documents([text]))[0]
    return await adapter.aget_text_embedding(text)


def _gateway_header(emu: NebulaEmulator) -> list[str]:
    return [
        {k.lower(): v for k, v in request.headers.items()}.get("x-gateway-token", "")
        for request in emu.embeddings_requests
    ]


@pytest.mark.parametrize("make", [_langchain, _llama_index], ids=["langchain", "llama-index"])
def test_a_copy_with_new_settings_talks_to_its_own_server(two_emulators, make):
    first, second = two_emulators
    original = make(first.base_url)

    copy = original.model_copy(update={"base_url": second.base_url, "timeout": 7.0})

    assert _embed(copy, "to the copy") == second.embedding("to the copy")
    assert _embed(original, "to the original") == first.embedding("to the original")
    assert asyncio.run(_aembed(copy, "async copy")) == second.embedding("async copy")
    assert [r.inputs for r in second.embeddings_requests] == [["to the copy"], ["async copy"]]
    assert [r.inputs for r in first.embeddings_requests] == [["to the original"]]
    assert (copy.client.base_url, copy.client.config.timeout) == (second.base_url, 7.0)
    assert (original.client.base_url, original.client.config.timeout) == (first.base_url, 60.0)
    # The copy keeps the gateway header it was not asked to change.
    assert _gateway_header(second) == [GATEWAY, GATEWAY]


@pytest.mark.parametrize("make", [_langchain, _llama_index], ids=["langchain", "llama-index"])
def test_a_copy_without_new_settings_shares_the_client(two_emulators, make):
    first, _ = two_emulators
    original = make(first.base_url)

    copy = original.model_copy(update={"query_instruction": ""})

    assert copy.client is original.client  # one pool, as before the copy


def test_langchain_keeps_default_headers_out_of_repr_and_dumps(two_emulators):
    first, _ = two_emulators
    embeddings = _langchain(first.base_url)

    embeddings.embed_query("a query")

    assert _gateway_header(first) == [GATEWAY]  # sent...
    shown = [
        repr(embeddings),
        str(embeddings),
        str(embeddings.model_dump()),
        embeddings.model_dump_json(),
        repr(embeddings.client),
        repr(embeddings.client.config),
    ]
    for text in shown:  # ...but never shown
        assert GATEWAY not in text
        assert KEY not in text
    assert pickle.loads(pickle.dumps(embeddings)).default_headers == HEADERS


def test_llama_index_keeps_default_headers_out_of_repr_and_dumps(two_emulators):
    first, _ = two_emulators
    embed = _llama_index(first.base_url)

    embed.get_query_embedding("a query")

    assert _gateway_header(first) == [GATEWAY]
    shown = [
        repr(embed),
        str(embed),
        str(embed.model_dump()),
        embed.model_dump_json(),
        embed.to_json(),
        str(embed.to_dict()),
        repr(embed.client.config),
    ]
    for text in shown:
        assert GATEWAY not in text
        assert KEY not in text
