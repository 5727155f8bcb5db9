"""What goes on the wire: base64 `encoding_format`, strict bodies, raw vectors, recorded bodies."""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

import orjson
import pytest
import requests

from nebula_core.models import DEFAULT_MODEL
from nebula_core.testing import NebulaEmulator

TEXTS = ["first text", "second text, longer", "third"]


def post(emu: NebulaEmulator, inputs: list[str] = TEXTS, **extra: Any) -> requests.Response:
    return requests.post(
        f"{emu.base_url}/embeddings",
        data=orjson.dumps({"model": DEFAULT_MODEL, "input": inputs, **extra}),
        headers={"Authorization": f"Bearer {emu.api_key}"},
        timeout=30,
    )


def by_index(answer: requests.Response) -> list[Any]:
    return [item["embedding"] for item in sorted(answer.json()["data"], key=lambda d: d["index"])]


def decode(text: str) -> list[float]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


# -- encoding_format -------------------------------------------------------------------------


def test_base64_is_little_endian_float32_when_honoured() -> None:
    with NebulaEmulator(honour_encoding_format=True) as emu:
        encoded = by_index(post(emu, encoding_format="base64"))
        assert all(isinstance(vector, str) for vector in encoded)
        for text, vector in zip(TEXTS, encoded, strict=True):
            assert decode(vector) == emu.embedding(text, dtype="float32")
            assert len(base64.b64decode(vector)) == 4 * 1024
        assert by_index(post(emu, encoding_format="float")) == [emu.embedding(t) for t in TEXTS]


def test_float32_vectors_are_the_json_vectors_rounded_to_float32() -> None:
    emu = NebulaEmulator()
    json_vector = emu.embedding("first text")
    float32 = emu.embedding("first text", dtype="float32")
    assert float32 != json_vector  # 7 decimals are not all float32-exact
    assert float32 == [struct.unpack("f", struct.pack("f", v))[0] for v in json_vector]
    with pytest.raises(ValueError):
        emu.embedding("x", dtype="float16")  # type: ignore[arg-type]


def test_by_default_encoding_format_is_ignored_and_floats_come_back() -> None:
    with NebulaEmulator() as emu:
        answer = post(emu, encoding_format="base64")
        assert answer.status_code == 200
        assert by_index(answer) == [emu.embedding(text) for text in TEXTS]


def test_an_unknown_encoding_format_is_a_400_when_honoured() -> None:
    with NebulaEmulator(honour_encoding_format=True) as emu:
        answer = post(emu, encoding_format="int8")
        assert answer.status_code == 400
        assert answer.json()["error"]["message"] == (
            '"encoding_format" must be "float" or "base64", got \'int8\'.'
        )


def test_strict_mode_rejects_any_field_but_model_and_input_like_fastapi() -> None:
    with NebulaEmulator(extra_fields="forbid", honour_encoding_format=True) as emu:
        answer = post(emu, encoding_format="base64", user="me")
        assert answer.status_code == 422
        assert answer.json() == {
            "detail": [
                {
                    "type": "extra_forbidden",
                    "loc": ["body", "encoding_format"],
                    "msg": "Extra inputs are not permitted",
                    "input": "base64",
                },
                {
                    "type": "extra_forbidden",
                    "loc": ["body", "user"],
                    "msg": "Extra inputs are not permitted",
                    "input": "me",
                },
            ]
        }
        assert post(emu).status_code == 200  # the documented body passes


def test_encoding_options_are_checked_and_changeable_while_running() -> None:
    with pytest.raises(ValueError):
        NebulaEmulator(extra_fields="ignore")  # type: ignore[arg-type]
    with NebulaEmulator() as emu:
        emu.endpoint.extra_fields = "forbid"
        assert post(emu, dimensions=256).status_code == 422


# -- vectors ---------------------------------------------------------------------------------


def test_raw_vectors_are_float16_values_and_not_unit_length() -> None:
    with NebulaEmulator(vectors="raw") as emu:
        vectors = by_index(post(emu))
        for text, vector in zip(TEXTS, vectors, strict=True):
            assert vector == emu.embedding(text)
            assert all(struct.unpack("e", struct.pack("e", v))[0] == v for v in vector)
            assert 7.5 < math.sqrt(sum(v * v for v in vector)) < 18.5
        norms = {round(math.sqrt(sum(v * v for v in vector)), 3) for vector in vectors}
        assert len(norms) == 3  # each text has its own norm


def test_raw_vectors_point_where_the_unit_vectors_point() -> None:
    unit, raw = NebulaEmulator(), NebulaEmulator(vectors="raw")
    u, r = unit.embedding("first text"), raw.embedding("first text")
    cosine = sum(a * b for a, b in zip(u, r)) / math.sqrt(sum(b * b for b in r))
    assert cosine > 0.999  # only float16 rounding separates the directions


def test_default_vectors_stay_unit_length() -> None:
    with NebulaEmulator() as emu:
        for vector in by_index(post(emu)):
            assert math.sqrt(sum(v * v for v in vector)) == pytest.approx(1.0, abs=1e-5)


def test_raw_base64_vectors_decode_to_the_float16_values() -> None:
    with NebulaEmulator(vectors="raw", honour_encoding_format=True) as emu:
        [vector] = by_index(post(emu, ["third"], encoding_format="base64"))
        assert decode(vector) == emu.embedding("third") == emu.embedding("third", dtype="float32")


# -- recorded bodies -------------------------------------------------------------------------


def test_every_request_keeps_its_raw_body() -> None:
    body = b'{"model": "WhereIsAI/UAE-Large-V1",  "input": ["spaced"], "encoding_format": "base64"}'
    with NebulaEmulator() as emu:
        requests.post(
            f"{emu.base_url}/embeddings",
            data=body,
            headers={"Authorization": f"Bearer {emu.api_key}"},
            timeout=10,
        )
        requests.post(f"{emu.base_url}/embeddings", data=b"not json", timeout=10)
        first, second = emu.embeddings_requests
        assert first.body == body  # byte for byte, spacing and all
        assert second.body == b"not json"
        assert "body" not in repr(first)  # bodies can be megabytes: kept out of repr


@pytest.mark.nebula_emulator(honour_encoding_format=True, vectors="raw")
def test_the_marker_sets_encoding_and_vectors(nebula_emulator: NebulaEmulator) -> None:
    [vector] = by_index(post(nebula_emulator, ["x"], encoding_format="base64"))
    assert decode(vector) == nebula_emulator.embedding("x")
