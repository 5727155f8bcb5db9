"""How vectors go on the wire: the value style (unit or raw half-precision) and the encoding
(JSON floats, or base64 of little-endian float32 as OpenAI-compatible servers send it), and
which body fields a request may carry.

`vectors="raw"` gives what a server without normalization returns (NebulaBlock's documented
example looks like this): the unit vector scaled by a per-text norm between 8 and 18, every
value exactly representable in float16.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import sys
from array import array
from typing import Literal, get_args

import orjson

from nebula_core.testing._bodies import extra_fields_reply
from nebula_core.testing._vectors import vector_json
from nebula_core.testing._wire import Reply, error_reply

__all__ = [
    "ENCODINGS",
    "EXTRA_FIELDS",
    "VECTOR_STYLES",
    "Encoding",
    "ExtraFields",
    "VectorStyle",
    "base64_json",
    "requested_encoding",
    "styled_vector_json",
]

VectorStyle = Literal["unit", "raw"]
VECTOR_STYLES: tuple[VectorStyle, ...] = get_args(VectorStyle)
Encoding = Literal["float", "base64"]
ENCODINGS: tuple[Encoding, ...] = get_args(Encoding)
ExtraFields = Literal["allow", "forbid"]
EXTRA_FIELDS: tuple[ExtraFields, ...] = get_args(ExtraFields)

_DOCUMENTED_FIELDS = ("model", "input")


def styled_vector_json(model: str, dimensions: int, text: str, style: VectorStyle) -> bytes:
    """The JSON array of the vector for `text` in `style`."""
    unit = vector_json(model, dimensions, text)
    if style == "unit":
        return unit
    values: list[float] = orjson.loads(unit)
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=4).digest()
    norm = 8.0 + int.from_bytes(digest, "little") % 1001 / 100.0
    half = struct.unpack(
        f"<{len(values)}e", struct.pack(f"<{len(values)}e", *(v * norm for v in values))
    )
    return orjson.dumps(list(half))


def base64_json(vector: bytes) -> bytes:
    """A JSON vector re-encoded as the JSON string of its little-endian float32 bytes."""
    packed = array("f", orjson.loads(vector))
    if sys.byteorder == "big":
        packed.byteswap()
    return b'"' + base64.b64encode(packed.tobytes()) + b'"'


def requested_encoding(
    request: dict[str, object], *, honour: bool, extra_fields: ExtraFields
) -> tuple[Encoding, Reply | None]:
    """The encoding to answer in, or the refusal a strict or honouring server sends."""
    if extra_fields == "forbid":
        extra = [name for name in request if name not in _DOCUMENTED_FIELDS]
        if extra:
            return "float", extra_fields_reply(request, extra)
    asked = request.get("encoding_format")
    if not honour or asked is None:
        return "float", None
    if asked not in ENCODINGS:
        message = f'"encoding_format" must be "float" or "base64", got {asked!r}.'
        return "float", error_reply(400, message)
    return ("base64" if asked == "base64" else "float"), None
