"""The service itself: authentication, request validation, embeddings and the model catalogues."""

from __future__ import annotations

import hmac
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from nebula_core.models import MODELS
from nebula_core.testing._encoding import Encoding, VectorStyle, base64_json, styled_vector_json
from nebula_core.testing._wire import Reply, embeddings_body, error_reply, inputs_at

__all__ = ["EmbeddingsCall", "EmbeddingsService"]

#: A chat model in the platform catalogue, so clients must filter on `model_type`.
_TEXT_MODEL = {
    "model_name": "meta-llama/Llama-3.3-70B-Instruct",
    "model_type": "Text",
    "context_length": 131072,
}


@dataclass(frozen=True)
class EmbeddingsCall:
    """What a POST /embeddings asked for, as far as the body could be understood."""

    model: str | None
    inputs: list[str] | None
    problem: Reply | None  # the 400 to send when the body is not a valid request
    fields: dict[str, object] | None = None  # the body's JSON object, when it was one


class EmbeddingsService:
    """Answers embeddings and catalogue requests the way NebulaBlock's service does."""

    def __init__(
        self,
        *,
        api_key: str,
        max_inputs_per_request: int,
        shuffle: bool,
        seed: int,
        unknown_model_dimensions: int,
    ) -> None:
        self._api_key = api_key.encode()
        self.max_inputs_per_request = max_inputs_per_request
        self.shuffle = shuffle
        self.seed = seed
        self.unknown_model_dimensions = unknown_model_dimensions
        self._calls = itertools.count()

    def restart_order(self) -> None:
        """Shuffle the next responses as a fresh emulator with the same seed would."""
        self._calls = itertools.count()

    def dimensions(self, model: str) -> int:
        info = MODELS.get(model)
        return info.dimensions if info else self.unknown_model_dimensions

    def authenticate(self, authorization: str | None) -> Reply | None:
        """None if the Bearer key is right, else the 401 to send."""
        if not authorization:
            return error_reply(401, "Missing API key: send 'Authorization: Bearer <key>'.")
        scheme, _, key = authorization.partition(" ")
        valid = hmac.compare_digest(key.strip().encode(), self._api_key)
        if scheme.lower() != "bearer" or not valid:
            return error_reply(401)
        return None

    def parse(self, body: bytes) -> EmbeddingsCall:
        """Read an embeddings request body, naming the first thing wrong with it."""
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _bad(None, None, f"Request body is not valid JSON: {exc}.")
        if not isinstance(request, dict):
            message = 'Request body must be a JSON object {"model": ..., "input": [...]}.'
            return _bad(None, None, message)
        model = request.get("model")
        raw_inputs = request.get("input")
        inputs = [raw_inputs] if isinstance(raw_inputs, str) else raw_inputs
        if isinstance(inputs, list) and all(isinstance(text, str) for text in inputs):
            known_inputs: list[str] | None = inputs
        else:
            known_inputs = None
        known_model = model if isinstance(model, str) else None

        if "model" not in request:
            return _bad(None, known_inputs, 'Missing required field "model".')
        if not known_model:
            return _bad(None, known_inputs, f'"model" must be a non-empty string, got {model!r}.')
        if "input" not in request:
            return _bad(known_model, None, 'Missing required field "input".')
        if not isinstance(inputs, list):
            kind = type(raw_inputs).__name__
            return _bad(known_model, None, f'"input" must be a list of strings, got {kind}.')
        if known_inputs is None:
            wrong = [i for i, text in enumerate(inputs) if not isinstance(text, str)]
            where = inputs_at(wrong)
            message = f'"input" must be a list of strings; {where} not a string.'
            return _bad(known_model, None, message)
        return EmbeddingsCall(known_model, known_inputs, None, request)

    def check(self, inputs: Sequence[str]) -> Reply | None:
        """The service's refusal of a parsed request (400/413 on count or blanks), or None."""
        if not inputs:
            return error_reply(400, '"input" must not be empty.')
        cap = self.max_inputs_per_request
        if len(inputs) > cap:
            message = (
                f"Too many inputs: {len(inputs)} in one request, "
                f"but at most {cap} inputs per request are allowed."
            )
            return error_reply(413, message)
        blank = [i for i, text in enumerate(inputs) if not text.strip()]
        if blank:
            return error_reply(400, f"{inputs_at(blank)} empty or whitespace-only.")
        return None

    def answer(
        self,
        model: str,
        texts: Sequence[str],
        prompt_tokens: int,
        *,
        encoding: Encoding = "float",
        vectors: VectorStyle = "unit",
    ) -> Reply:
        """The 200 for checked, possibly truncated `texts`, in shuffled order."""
        dims = self.dimensions(model)
        order = list(range(len(texts)))
        if self.shuffle:
            # The service does not keep input order; a seeded shuffle makes that reproducible.
            random.Random(self.seed * 1_000_003 + next(self._calls)).shuffle(order)  # noqa: S311
        items = [(i, styled_vector_json(model, dims, texts[i], vectors)) for i in order]
        if encoding == "base64":
            items = [(i, base64_json(vector)) for i, vector in items]
        return Reply(200, embeddings_body(model, items, prompt_tokens))

    @staticmethod
    def models() -> Reply:
        """GET /v1/models, OpenAI style."""
        data = [
            {"id": model_id, "object": "model", "created": 0, "owned_by": "nebulablock"}
            for model_id in MODELS
        ]
        return Reply(200, orjson.dumps({"object": "list", "data": data}))

    @staticmethod
    def catalogue() -> Reply:
        """GET /api/v1/serverless/models, in the platform's own envelope."""
        models = [
            {
                "model_name": info.id,
                "model_type": "Embedding",
                "context_length": info.context_tokens,
                "dimensions": info.dimensions,
            }
            for info in MODELS.values()
        ]
        body = {
            "data": {"models": [*models, _TEXT_MODEL]},
            "status": "success",
            "message": "Models retrieved successfully.",
        }
        return Reply(200, orjson.dumps(body))


def _bad(model: str | None, inputs: list[str] | None, message: str) -> EmbeddingsCall:
    return EmbeddingsCall(model, inputs, error_reply(400, message))
