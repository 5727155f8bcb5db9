"""`encoding_format` on the wire: what each mode sends, and how `auto` falls back to floats
when a service refuses the field (once per client life, without failing or retrying)."""

from __future__ import annotations

import asyncio
import logging
import pickle
import threading

import orjson
import pytest
from codec_servers import API_KEY, FASTAPI_422, CodecServer, float32, vector

from langchain_nebula import NebulaEmbeddings
from llama_index_nebula import NebulaEmbedding
from nebula_core import BadRequestError, ConfigurationError, NebulaClient

TEXTS = [f"text number {i}" for i in range(24)]
MODEL = "WhereIsAI/UAE-Large-V1"


def client_for(server: CodecServer, **kwargs: object) -> NebulaClient:
    return NebulaClient(api_key=API_KEY, base_url=server.base_url, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["base64", "ignore", "strict422"])
def test_float_mode_sends_exactly_the_documented_body(mode):
    with CodecServer(mode) as server, client_for(server, encoding_format="float") as client:
        result = client.embed(TEXTS[:3])

    assert server.bodies == [orjson.dumps({"model": MODEL, "input": TEXTS[:3]})]
    assert result.embeddings == [vector(t) for t in TEXTS[:3]]


def test_auto_mode_asks_for_base64():
    with CodecServer("base64") as server, client_for(server) as client:
        client.embed(TEXTS[:2])

    assert server.requests() == [{"model": MODEL, "input": TEXTS[:2], "encoding_format": "base64"}]


@pytest.mark.parametrize("mode", ["strict422", "strict400"])
def test_auto_falls_back_to_floats_for_good_after_one_refusal(mode):
    with CodecServer(mode) as server, client_for(server, max_concurrency=1) as client:
        first = client.embed(TEXTS, batch_size=8)
        second = client.embed(TEXTS, batch_size=8)

    assert first.embeddings == second.embeddings == [vector(t) for t in TEXTS]
    sent = server.requests()
    # One refused base64 request, then floats only: 3 + 1 requests, then 3.
    assert [r.get("encoding_format") for r in sent] == ["base64"] + [None] * 6
    assert sent[1] == {"model": MODEL, "input": TEXTS[:8]}  # the refused batch, re-sent
    assert (first.requests, first.retries) == (4, 0)
    assert (second.requests, second.retries) == (3, 0)
    assert client.stats.requests == 7


def test_fallback_is_not_a_retry_even_with_max_retries_zero():
    with CodecServer("strict422") as server, client_for(server, max_retries=0) as client:
        result = client.embed(TEXTS[:4])

    assert result.embeddings == [vector(t) for t in TEXTS[:4]]
    assert len(server.bodies) == 2


def test_fallback_is_logged_once(caplog):
    with (
        caplog.at_level(logging.INFO, logger="nebula_core"),
        CodecServer("strict422") as server,
        client_for(server, max_concurrency=1) as client,
    ):
        client.embed(TEXTS, batch_size=8)
        client.embed(TEXTS, batch_size=8)

    said = [r.getMessage() for r in caplog.records if "encoding_format" in r.getMessage()]
    assert said == [
        "The service refused encoding_format=base64 (HTTP 422: body.encoding_format: Extra "
        "inputs are not permitted); this client asks for float JSON from now on."
    ]


def test_a_race_costs_at_most_one_extra_request_per_request_in_flight():
    """Four base64 requests are in flight when the first refusal arrives (the server holds its
    refusals until all four have come): each is re-sent once, every later one is float."""
    with (
        CodecServer("strict422", hold_refusals=4) as server,
        client_for(server, max_concurrency=4) as client,
    ):
        result = client.embed(TEXTS, batch_size=3)  # 8 batches

    assert result.embeddings == [vector(t) for t in TEXTS]
    assert server.base64_requests() == 4
    assert len(server.bodies) == 8 + 4
    assert (result.requests, result.retries) == (12, 0)


def test_concurrent_calls_share_one_fallback():
    with (
        CodecServer("strict422", hold_refusals=4) as server,
        client_for(server, max_concurrency=4) as client,
    ):
        results: list[list[list[float]]] = [[], [], []]

        def call(slot: int) -> None:
            results[slot] = client.embed(TEXTS[slot * 8 : slot * 8 + 8], batch_size=2).embeddings

        threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        later = client.embed(TEXTS, batch_size=24)

    assert [v for chunk in results for v in chunk] == [vector(t) for t in TEXTS]
    assert later.embeddings == [vector(t) for t in TEXTS]
    # 12 batches + 1, at most max_concurrency of them refused; exactly 4 here (held refusals).
    assert server.base64_requests() == 4
    assert len(server.bodies) == 12 + 4 + 1


async def test_aembed_falls_back_too():
    with CodecServer("strict400") as server, client_for(server, max_concurrency=1) as client:
        result = await client.aembed(TEXTS, batch_size=12)
        again = await asyncio.gather(client.aembed(["a"]), client.aembed(["b"]))

    assert result.embeddings == [vector(t) for t in TEXTS]
    assert [r.embeddings for r in again] == [[vector("a")], [vector("b")]]
    assert server.base64_requests() == 1
    assert len(server.bodies) == 2 + 1 + 2


def test_base64_mode_never_falls_back_and_says_what_to_do():
    with (
        CodecServer("strict422") as server,
        client_for(server, encoding_format="base64") as client,
        pytest.raises(BadRequestError) as caught,
    ):
        client.embed(TEXTS[:2])

    error = caught.value
    assert error.status_code == 422
    assert error.server_message == "body.encoding_format: Extra inputs are not permitted"
    assert "use encoding_format='auto' (falls back to floats by itself) or 'float'" in str(error)
    assert len(server.bodies) == 1


def test_base64_mode_against_a_server_that_honours_it():
    with CodecServer("base64") as server, client_for(server, encoding_format="base64") as client:
        assert client.embed(["q"]).embeddings == [float32(vector("q"))]


@pytest.mark.parametrize(
    "refusal",
    [
        # OpenAI's own format: the field is named only in `param`.
        b'{"error": {"message": "Invalid value: \'base64\'. Supported values are: \'float\'",'
        b' "type": "invalid_request_error", "param": "encoding_format"}}',
        b'{"error": "Unsupported encoding format: base64"}',
        b'{"message": "Invalid value for encodingFormat"}',
    ],
)
def test_other_phrasings_of_the_refusal_also_fall_back(refusal):
    with CodecServer("base64", script=[(400, refusal)]) as server, client_for(server) as client:
        assert client.embed(["q"]).embeddings == [vector("q")]
        assert client.embed(["r"]).embeddings == [vector("r")]
    assert [orjson.loads(body).get("encoding_format") for body in server.bodies] == [
        "base64",
        None,
        None,
    ]


def test_a_400_about_something_else_does_not_switch_encoding():
    unknown_model = (400, b'{"error": {"message": "The model nebula/none does not exist"}}')
    with (
        CodecServer("base64", script=[unknown_model]) as server,
        client_for(server) as client,
    ):
        with pytest.raises(BadRequestError, match="The model nebula/none does not exist"):
            client.embed(["a text"])
        assert client.embed(["q"]).embeddings == [float32(vector("q"))]

    assert len(server.bodies) == 2
    assert server.base64_requests() == 2


def test_a_pickled_client_keeps_the_setting_and_asks_again():
    with CodecServer("strict422") as server:
        client = client_for(server)
        client.embed(["a"])  # falls back
        copy = pickle.loads(pickle.dumps(client))
        copy.embed(["a"])  # a new life: asks for base64 once more, falls back again
        client.embed(["a"])  # the original stays on floats
        floats = pickle.loads(pickle.dumps(client_for(server, encoding_format="float")))
        floats.embed(["a"])

    assert copy.config.encoding_format == "auto"
    assert [r.get("encoding_format") for r in server.requests()] == [
        "base64",
        None,
        "base64",
        None,
        None,
        None,
    ]


def test_an_unknown_encoding_format_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="encoding_format must be one of auto, base64"):
        NebulaClient(api_key=API_KEY, encoding_format="binary")  # type: ignore[arg-type]


def test_fastapi_validation_details_keep_the_field_they_name():
    body = FASTAPI_422
    with (
        CodecServer("base64", script=[(422, body)]) as server,
        client_for(server, encoding_format="float") as client,
        pytest.raises(BadRequestError) as caught,
    ):
        client.embed(["a"])
    assert caught.value.server_message == "body.encoding_format: Extra inputs are not permitted"


def test_langchain_adapter_passes_encoding_format_through():
    with CodecServer("base64") as server:
        url = server.base_url
        floats = NebulaEmbeddings(api_key=API_KEY, base_url=url, encoding_format="float")
        auto = NebulaEmbeddings(api_key=API_KEY, base_url=url)
        assert floats.embed_documents(["a", "b"]) == [vector("a"), vector("b")]
        assert auto.embed_documents(["a", "b"]) == [float32(vector("a")), float32(vector("b"))]

    assert auto.encoding_format == "auto"
    assert [r.get("encoding_format") for r in server.requests()] == [None, "base64"]
    assert '"encoding_format":"float"' in floats.model_dump_json()


def test_llama_index_adapter_passes_encoding_format_through():
    with CodecServer("strict422") as server:
        url = server.base_url
        floats = NebulaEmbedding(api_key=API_KEY, base_url=url, encoding_format="float")
        auto = NebulaEmbedding(api_key=API_KEY, base_url=url)
        assert floats.get_text_embedding_batch(["a", "b"]) == [vector("a"), vector("b")]
        assert auto.get_text_embedding_batch(["a", "b"]) == [vector("a"), vector("b")]
        copy = pickle.loads(pickle.dumps(floats))

    assert copy.encoding_format == "float"
    assert floats.to_dict()["encoding_format"] == "float"
    # float: one plain request; auto: one refused base64 request and its float re-send.
    assert [r.get("encoding_format") for r in server.requests()] == [None, "base64", None]
