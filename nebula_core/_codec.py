"""The wire codec: request bodies out, embeddings in (float JSON or base64); every body checked.

Success bodies are parsed once by orjson and placed by `data[i].index`; anything that could put a
vector next to the wrong text raises `ResponseFormatError` instead. Each item's `embedding` may
be a list of numbers or a base64 string of little-endian float32 (what OpenAI-compatible servers
send for `encoding_format: "base64"`), whatever was asked: servers that ignore the field answer
with floats.
"""

from __future__ import annotations

import array
import base64
import logging
import math
import re
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson

from nebula_core._response import server_message
from nebula_core.errors import BadRequestError, ResponseFormatError

if TYPE_CHECKING:
    import numpy
    import numpy.typing

    FloatArray = numpy.typing.NDArray[numpy.float32]

__all__ = [
    "DecodedBatch",
    "EncodingChoice",
    "EncodingFormat",
    "Output",
    "Usage",
    "decode_embeddings",
    "encode_request",
    "require_numpy",
]

logger = logging.getLogger("nebula_core")

EncodingFormat = Literal["auto", "base64", "float"]
"""What to ask the service for: `auto` asks for base64 and falls back to floats if refused."""

Output = Literal["list", "numpy"]
"""What `embed` returns: lists of Python floats, or one float32 `numpy.ndarray` of shape (N, D)."""

ENCODING_FORMATS: tuple[str, ...] = ("auto", "base64", "float")
OUTPUTS: tuple[str, ...] = ("list", "numpy")
_NUMPY_EXTRA = "pip install 'nebulablock-embeddings[numpy]'"

_BIG_ENDIAN = sys.byteorder == "big"

_fast_b64decode: Callable[..., bytes] | None
try:  # pybase64 (in the [numpy] extra) decodes ~7x faster than the standard library.
    from pybase64 import b64decode as _fast_b64decode
except ImportError:  # pragma: no cover - exercised where pybase64 is absent
    _fast_b64decode = None


def _b64decode(text: str) -> bytes:
    # validate=True: the standard decoder would otherwise skip stray characters and hand back
    # a vector shifted by whatever it dropped.
    if _fast_b64decode is not None:
        return _fast_b64decode(text, validate=True)
    return base64.b64decode(text, validate=True)


def encode_request(
    model: str, inputs: Sequence[str], encoding_format: Literal["base64", "float"] = "float"
) -> bytes:
    """The request body: exactly the documented `{"model", "input"}` for floats."""
    if encoding_format == "base64":
        return orjson.dumps({"model": model, "input": list(inputs), "encoding_format": "base64"})
    return orjson.dumps({"model": model, "input": list(inputs)})


def require_numpy() -> Any:
    """The numpy module, or an ImportError that says which extra installs it."""
    try:
        import numpy  # noqa: PLC0415 - optional dependency, imported only when asked for
    except ImportError:
        raise ImportError(
            f"output='numpy' needs numpy, which is not installed: {_NUMPY_EXTRA}"
        ) from None
    return numpy


@dataclass(frozen=True)
class Usage:
    """Tokens the service counted, summed over every request of one call.

    Attributes:
        prompt_tokens: tokens of the inputs, as the service reports them.
        total_tokens: tokens billed, as the service reports them.
    """

    prompt_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens, self.total_tokens + other.total_tokens
        )


class EncodingChoice:
    """Which encoding one client asks for now; shared by all its threads and calls.

    `auto` asks for base64 until the service refuses the field once, then asks for floats for
    the rest of the client's life (a new process or an unpickled copy asks again). Requests
    already in flight when the refusal arrives are refused too and re-sent as floats, so the
    fallback costs at most one extra request per request in flight then (`max_concurrency`).
    """

    def __init__(self, configured: EncodingFormat) -> None:
        self.configured: EncodingFormat = configured
        self._refused = False
        self._lock = threading.Lock()

    def current(self) -> Literal["base64", "float"]:
        if self.configured == "float" or (self.configured == "auto" and self._refused):
            return "float"
        return "base64"

    def falls_back(self, sent: Literal["base64", "float"], error: BadRequestError) -> bool:
        """Whether `error` refused the base64 field of a request in `auto` mode; if so,
        every later request is sent as floats and this one should be re-sent as floats."""
        if sent != "base64" or not names_encoding_format(error):
            return False
        if self.configured != "auto":
            return False
        with self._lock:
            first, self._refused = not self._refused, True
        if first:
            logger.info(
                "The service refused encoding_format=base64 (HTTP %s: %s); this client asks "
                "for float JSON from now on.",
                error.status_code,
                error.server_message,
            )
        return True


#: How refusals of the field read: `encoding_format` (OpenAI/FastAPI), `encodingFormat`,
#: "encoding format", or OpenAI's "Invalid value: 'base64'" with `param` elsewhere.
_REFUSES_ENCODING = re.compile(
    r"encoding[ _]?format|invalid value:? '?base64|unsupported encoding", re.IGNORECASE
)


def names_encoding_format(error: BadRequestError) -> bool:
    """A 400/422 whose message names the `encoding_format` field or its base64 value: the
    service does not accept the field."""
    message = error.server_message or ""
    return error.status_code in (400, 422) and bool(_REFUSES_ENCODING.search(message))


def base64_refused_error(error: BadRequestError) -> BadRequestError:
    """The error for a refusal in explicit `base64` mode, saying how to get vectors anyway."""
    return BadRequestError(
        f"{error.message} The service does not accept encoding_format='base64'; use "
        "encoding_format='auto' (falls back to floats by itself) or 'float'.",
        status_code=error.status_code,
        server_message=error.server_message,
    )


class DecodedBatch:
    """The checked vectors of one response, in input order, each still in its wire form.

    Rows are either lists of numbers (float JSON) or raw little-endian float32 bytes (base64),
    so `to_numpy` can build its array straight from the bytes without Python floats.
    """

    __slots__ = ("_rows", "dimensions", "usage")

    def __init__(self, rows: list[Any], dimensions: int, usage: Usage) -> None:
        self._rows: list[list[float] | bytes] = rows
        self.dimensions = dimensions
        self.usage = usage

    def __len__(self) -> int:
        return len(self._rows)

    def to_lists(self) -> list[list[float]]:
        """Each vector as a list of Python floats (float32 values, widened, for base64)."""
        return [row if isinstance(row, list) else _floats(row) for row in self._rows]

    def to_numpy(self) -> FloatArray:
        """A new float32 array of shape (len, dimensions)."""
        np = require_numpy()
        out: FloatArray = np.empty((len(self._rows), self.dimensions), dtype=np.float32)
        self.fill(out)
        return out

    def fill(self, out: FloatArray) -> None:
        """Write the vectors into `out` (shape (len, dimensions)); base64 rows go from bytes to
        float32 without ever becoming Python floats."""
        np = require_numpy()
        rows = self._rows
        if all(type(row) is bytes for row in rows):
            flat = np.frombuffer(b"".join(rows), dtype="<f4")  # type: ignore[arg-type]
            # In place even when `out` is a strided view (reshape(-1) would copy then).
            out[...] = flat.reshape(out.shape)
            return
        for i, row in enumerate(rows):
            out[i] = np.frombuffer(row, dtype="<f4") if type(row) is bytes else row


def _float32s(raw: bytes) -> array.array[float]:
    """Little-endian float32 bytes as an array of native floats."""
    values = array.array("f", raw)
    if _BIG_ENDIAN:  # pragma: no cover - no big-endian CI machine
        values.byteswap()
    return values


def _floats(raw: bytes) -> list[float]:
    return _float32s(raw).tolist()


def _format_error(what: str) -> ResponseFormatError:
    return ResponseFormatError(
        f"The service returned a 2xx response that cannot be trusted: {what}. No vectors were "
        "used from it. If this persists, report it to NebulaBlock with the model name."
    )


_NUMBERS = frozenset({float, int})


def decode_embeddings(body: bytes, expected: int) -> DecodedBatch:
    """The vectors of one success body in input order, plus its usage; raise on anything that
    could misalign or corrupt them."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        # orjson also refuses NaN, Infinity and numbers that overflow a double, so every float
        # that gets past this line is finite.
        raise _format_error(f"the body is not JSON ({len(body)} bytes)") from None
    if not isinstance(payload, dict):
        raise _format_error(f"the body is a JSON {type(payload).__name__}, not an object")
    data = payload.get("data")
    if data is None and "error" in payload:
        # Some gateways answer 200 with an error object; its message is the only clue.
        said = server_message(body) or "no message"
        error = _format_error(f"it is an error object instead of embeddings ({said})")
        error.server_message = said
        raise error
    if not isinstance(data, list):
        raise _format_error("'data' is missing or not a list")
    if len(data) != expected:
        raise _format_error(f"sent {expected} inputs but got {len(data)} embeddings")

    rows: list[Any] = [None] * expected
    dimensions = -1
    may_hold_bools = _may_hold_bools(body)
    base64_rows: list[bytes] = []
    for item in data:
        if not isinstance(item, dict):
            raise _format_error("an item of 'data' is not an object")
        index = item.get("index")
        # bool is an int subclass; a JSON true is not a position.
        if type(index) is not int:
            raise _format_error(f"an item has index {index!r}; indices must be integers")
        if not 0 <= index < expected:
            raise _format_error(f"index {index} is outside 0..{expected - 1}")
        if rows[index] is not None:
            raise _format_error(f"index {index} appears more than once")
        vector = item.get("embedding")
        if type(vector) is list:
            width = len(vector)
            if not _numeric(vector, may_hold_bools):
                raise _format_error(f"the embedding at index {index} has non-numeric values")
        elif type(vector) is str:
            try:
                vector = _b64decode(vector)
            except ValueError:  # binascii.Error is a ValueError
                raise _format_error(f"the embedding at index {index} is not valid base64") from None
            if len(vector) % 4:
                raise _format_error(
                    f"the base64 embedding at index {index} is {len(vector)} bytes, not a "
                    "whole number of float32 values"
                )
            width = len(vector) // 4
            base64_rows.append(vector)
        else:
            raise _format_error(f"the embedding at index {index} is missing or not a list")
        if width == 0:
            raise _format_error(f"the embedding at index {index} is empty")
        if dimensions != width:
            if dimensions != -1:
                raise _format_error(f"embeddings have different lengths ({dimensions} and {width})")
            dimensions = width
        rows[index] = vector
    if base64_rows and not _all_finite(base64_rows):
        raise _format_error("a base64 embedding holds NaN or infinity")
    # With `expected` items, in-range and unique indices, every slot is filled.
    return DecodedBatch(rows, dimensions, _usage(payload.get("usage")))


def _may_hold_bools(body: bytes) -> bool:
    """Whether a JSON `true`/`false` can be in `body`; False lets floats skip a type walk.

    Conservative and cheap (two single-byte scans run at memory speed; a 4-byte search or a
    per-value type check would cost half as much as parsing): every `false` holds an `f` and
    every `true` a `u`, and a float body has no `f` and no `u` outside its `"usage"` key.
    """
    if b"f" in body:
        return True
    first = body.find(b"u")
    if first == -1:
        return False
    return body[first - 1 : first + 6] != b'"usage"' or body.find(b"u", first + 1) != -1


def _numeric(vector: list[Any], may_hold_bools: bool) -> bool:
    """Whether every value is an int or float; bool is an int subclass but not a number here."""
    if may_hold_bools:
        return _NUMBERS.issuperset(map(type, vector))
    try:
        # sum() walks the values in C and raises TypeError on str, None, lists or objects.
        sum(vector)
    except TypeError:
        return False
    return True


def _all_finite(raws: list[bytes]) -> bool:
    """Whether no float32 in `raws` is NaN or infinite (an exponent of all ones)."""
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        # Already imported (by the caller or output='numpy'): one vectorized pass.
        return bool(numpy.isfinite(numpy.frombuffer(b"".join(raws), dtype="<f4")).all())
    # A sum of float32 values cannot overflow a double, so it is finite iff every value is.
    return all(math.isfinite(sum(_float32s(raw))) for raw in raws)


def _usage(raw: object) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    prompt = raw.get("prompt_tokens")
    total = raw.get("total_tokens")
    prompt = prompt if type(prompt) is int else 0
    total = total if type(total) is int else prompt
    return Usage(prompt, total)
