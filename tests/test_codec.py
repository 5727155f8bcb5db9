"""Decoding answers over real HTTP: base64 and float items, `output="numpy"`, and every body
that must be refused (bools, NaN, bad base64, a 2xx error object)."""

from __future__ import annotations

import math
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import orjson
import pytest
from codec_servers import API_KEY, DIMS, CodecServer, b64, float32, success_body, vector

from nebula_core import NebulaClient, ResponseFormatError

TEXTS = [f"passage {i} on topic {i % 5}" for i in range(40)]


def client_for(server: CodecServer, **kwargs: object) -> NebulaClient:
    return NebulaClient(api_key=API_KEY, base_url=server.base_url, **kwargs)  # type: ignore[arg-type]


def test_base64_answers_decode_to_the_float32_vectors_in_input_order():
    with CodecServer("base64") as server, client_for(server) as client:
        result = client.embed(TEXTS, batch_size=16)

    assert result.embeddings == [float32(vector(t)) for t in TEXTS]
    # float32 rounding is visible: these are not the doubles a float answer would carry.
    assert result.embeddings[0] != vector(TEXTS[0])
    assert server.base64_requests() == 3
    assert result.requests == 3


def test_float_answers_to_a_base64_request_are_taken_as_they_are():
    with CodecServer("ignore") as server, client_for(server) as client:
        result = client.embed(TEXTS, batch_size=16)

    assert result.embeddings == [vector(t) for t in TEXTS]
    assert server.base64_requests() == 3  # asked for base64, got floats: fine


def test_one_answer_may_mix_base64_and_float_items():
    mixed = success_body([b64([1.5, -2.25]), [0.1, 0.2]])
    with CodecServer("ignore", script=[(200, mixed)]) as server, client_for(server) as client:
        lists = client.embed(["a", "b"]).embeddings
    with CodecServer("ignore", script=[(200, mixed)]) as server, client_for(server) as client:
        array = client.embed(["a", "b"], output="numpy").embeddings

    assert lists == [[1.5, -2.25], [0.1, 0.2]]
    assert array.dtype == np.float32
    assert array.tolist() == [[1.5, -2.25], float32([0.1, 0.2])]


@pytest.mark.parametrize("mode", ["base64", "ignore"])
def test_numpy_output_is_one_float32_array_in_input_order(mode):
    with CodecServer(mode) as server, client_for(server, max_concurrency=3) as client:
        array = client.embed(TEXTS, batch_size=7, output="numpy").embeddings

    assert type(array) is np.ndarray
    assert array.dtype == np.float32
    assert array.shape == (len(TEXTS), DIMS)
    assert array.flags.c_contiguous and array.flags.writeable
    assert array.tolist() == [float32(vector(t)) for t in TEXTS]


async def test_aembed_numpy_output_matches_embed():
    with CodecServer("base64") as server, client_for(server) as client:
        result = await client.aembed(TEXTS, batch_size=8, output="numpy")
        listed = await client.aembed(TEXTS, batch_size=8)

    assert result.embeddings.tolist() == listed.embeddings
    assert result.usage == listed.usage
    assert result.usage.prompt_tokens == sum(len(t.split()) for t in TEXTS)


def test_numpy_output_of_nothing_has_the_model_width_and_sends_nothing():
    with CodecServer("base64") as server, client_for(server) as client:
        array = client.embed([], output="numpy").embeddings
        unknown = client.embed([], model="someone/unknown-model", output="numpy").embeddings

    assert array.shape == (0, 1024) and array.dtype == np.float32
    assert unknown.shape == (0, 0)
    assert server.bodies == []


def test_an_unknown_output_is_refused_before_any_request():
    with (
        CodecServer("base64") as server,
        client_for(server) as client,
        pytest.raises(ValueError, match="output must be 'list' or 'numpy', got 'arrow'"),
    ):
        client.embed(["a"], output="arrow")  # type: ignore[call-overload]
    assert server.bodies == []


def _refused(body: bytes) -> ResponseFormatError:
    with (
        CodecServer("base64", script=[(200, body)]) as server,
        client_for(server) as client,
        pytest.raises(ResponseFormatError) as caught,
    ):
        client.embed(["a", "b"])
    assert len(server.bodies) == 1  # a body that cannot be trusted is not retried
    return caught.value


@pytest.mark.parametrize(
    "vectors",
    [
        [[True, False], [1.0, 0.0]],  # the shape a broken server sends
        [[1.0, 0.0], [0.5, True]],  # one bool among floats
        [[1.0, 0.0], [0.5, False]],
    ],
)
@pytest.mark.parametrize("with_usage", [True, False])
def test_booleans_are_not_a_vector(vectors, with_usage):
    body = success_body(vectors)
    if not with_usage:
        body = orjson.dumps({k: v for k, v in orjson.loads(body).items() if k != "usage"})
    error = _refused(body)
    assert "has non-numeric values" in str(error)


def test_the_words_true_and_false_elsewhere_in_a_body_do_not_refuse_it():
    body = success_body([[1.0, 0.0], [0.5, 1]]).replace(b'"model":"m"', b'"model":"true-false"')
    with CodecServer("ignore", script=[(200, body)]) as server, client_for(server) as client:
        assert client.embed(["a", "b"]).embeddings == [[1.0, 0.0], [0.5, 1]]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_base64_nan_or_infinity_is_refused(bad):
    error = _refused(success_body([b64([0.5, bad]), b64([0.5, 0.5])]))
    assert "a base64 embedding holds NaN or infinity" in str(error)


def test_base64_of_a_partial_float_is_refused():
    six_bytes = "AAAAAAAA"  # 6 bytes: one float and a half
    error = _refused(success_body([six_bytes, b64([0.5, 0.5])]))
    assert "is 6 bytes, not a whole number of float32 values" in str(error)


def test_invalid_base64_characters_are_refused_not_skipped():
    # A lax decoder would drop the '!' and return a shifted vector.
    error = _refused(success_body([b64([0.5, 0.5])[:-4] + "!AAA", b64([0.5, 0.5])]))
    assert "is not valid base64" in str(error)


def test_base64_vectors_of_different_widths_are_refused():
    # success_body sends data in reverse: the 3-wide vector arrives first.
    error = _refused(success_body([b64([0.5, 0.5]), b64([0.5, 0.5, 0.5])]))
    assert "embeddings have different lengths (3 and 2)" in str(error)


def test_a_2xx_error_object_keeps_the_servers_message():
    body = b'{"error": {"message": "model overloaded, try later", "type": "server_error"}}'
    error = _refused(body)

    assert error.server_message == "model overloaded, try later"
    assert "an error object instead of embeddings (model overloaded, try later)" in str(error)


def test_without_numpy_lists_still_decode_and_numpy_output_names_the_extra():
    """In a process where numpy cannot be imported: the stdlib decoder gives the same floats,
    still refuses NaN, and output="numpy" fails before any request with the extra's name."""
    script = textwrap.dedent(
        """
        import math, sys
        sys.modules["numpy"] = None  # import numpy -> ImportError
        from codec_servers import API_KEY, CodecServer, b64, float32, success_body, vector
        from nebula_core import NebulaClient, ResponseFormatError
        with CodecServer("base64") as server:
            client = NebulaClient(api_key=API_KEY, base_url=server.base_url)
            texts = ["x", "yy", "zzz"]
            assert client.embed(texts).embeddings == [float32(vector(t)) for t in texts]
            try:
                client.embed(texts, output="numpy")
            except ImportError as error:
                print("IMPORT:", error)
            sent = len(server.bodies)
        nan = success_body([b64([0.5, math.nan])])
        with CodecServer("base64", script=[(200, nan)]) as server:
            client = NebulaClient(api_key=API_KEY, base_url=server.base_url)
            try:
                client.embed(["a"])
            except ResponseFormatError as error:
                print("NAN:", "NaN or infinity" in str(error))
        print("SENT:", sent, "NUMPY LOADED:", sys.modules["numpy"] is not None)
        """
    )
    tests_dir = Path(__file__).parent
    path = os.pathsep.join([str(tests_dir), str(tests_dir.parent)])
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": path},
        timeout=120,
    )
    assert done.stdout.splitlines() == [
        "IMPORT: output='numpy' needs numpy, which is not installed: "
        "pip install 'nebulablock-embeddings[numpy]'",
        "NAN: True",
        "SENT: 1 NUMPY LOADED: False",
    ]


def test_float32_helper_really_rounds():
    # Guards the tests above: if vector() produced float32-exact values they would prove nothing.
    assert float32(vector("x")) != vector("x")
    assert struct.calcsize("<f") == 4
