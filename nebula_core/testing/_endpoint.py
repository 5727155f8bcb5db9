"""POST /embeddings end to end: the proxy, scripted faults, the service, its limits and its GPU.

The order is the order of a real deployment: a proxy checks the body size; a load balancer may
fail (scripted faults); the service checks the key, parses and validates the body, applies the
token limit per input and the rate limits of the key, computes (capacity and time per token),
then answers in the encoding asked for. Rate-limit headers go on every answer behind the key.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass

from nebula_core.testing._bodies import RateLimitBody, body_too_large_reply, rate_limit_reply
from nebula_core.testing._compute import ComputeModel
from nebula_core.testing._encoding import ExtraFields, VectorStyle, requested_encoding
from nebula_core.testing._faults import Fault, FaultSchedule
from nebula_core.testing._long_inputs import LongInputPolicy
from nebula_core.testing._ratelimit import Admission, RateLimiter, format_duration
from nebula_core.testing._server import Request
from nebula_core.testing._service import EmbeddingsService
from nebula_core.testing._stats import StatsCounter
from nebula_core.testing._wire import Reply

__all__ = ["EmbeddingsEndpoint", "Outcome"]


@dataclass(frozen=True)
class Outcome:
    """The reply to send, and what to record about the request."""

    reply: Reply
    model: str | None
    inputs: list[str] | None
    fault: Fault | None


class EmbeddingsEndpoint:
    """The components of one emulator, wired in deployment order; options are attributes."""

    def __init__(
        self,
        service: EmbeddingsService,
        faults: FaultSchedule,
        compute: ComputeModel,
        rate_limits: RateLimiter,
        long_inputs: LongInputPolicy,
        stats: StatsCounter,
    ) -> None:
        self.service = service
        self.faults = faults
        self.compute = compute
        self.rate_limits = rate_limits
        self.long_inputs = long_inputs
        self.stats = stats
        self.latency = 0.0
        self.max_body_bytes: int | None = None
        self.rate_limit_headers = False
        self.rate_limit_body: RateLimitBody = "openai"
        self.honour_encoding_format = False
        self.extra_fields: ExtraFields = "allow"
        self.vectors: VectorStyle = "unit"

    def handle(self, request: Request, stopping: threading.Event) -> Outcome:
        limit = self.max_body_bytes
        if limit is not None and len(request.body) > limit:
            self.stats.count(413)
            return Outcome(body_too_large_reply(), None, None, None)
        fault = self.faults.next()
        call = self.service.parse(request.body)
        wait = self.latency + (fault.seconds if fault else 0.0)
        if wait:
            stopping.wait(wait)  # stop() cuts a long delay short

        reply = fault.replacement() if fault else None
        rate_limited = False
        tokens = 0
        if reply is None:
            reply, tokens, rate_limited = self._serve(
                request, call.model, call.inputs, call.fields, call.problem, stopping
            )
            if fault:
                reply = fault.mangle(reply)
        self.stats.count(
            reply.status, tokens=tokens, inputs=len(call.inputs or ()), rate_limited=rate_limited
        )
        return Outcome(reply, call.model, call.inputs, fault)

    def _serve(
        self,
        request: Request,
        model: str | None,
        inputs: list[str] | None,
        fields: dict[str, object] | None,
        problem: Reply | None,
        stopping: threading.Event,
    ) -> tuple[Reply, int, bool]:
        """(reply, tokens billed, refused by the rate limits) from the service itself."""
        authorization = request.headers.get("Authorization")
        refusal = self.service.authenticate(authorization)
        if refusal is not None:
            return refusal, 0, False
        key = (authorization or "").partition(" ")[2].strip()
        reply, tokens, admission = self._answer(key, model, inputs, fields, problem, stopping)
        if admission is None and self.rate_limit_headers and self.rate_limits.active:
            admission = self.rate_limits.admit(key, 0, count=False)
        if admission is not None and self.rate_limit_headers:
            headers = (*reply.headers, *_rate_limit_headers(admission))
            reply = dataclasses.replace(reply, headers=headers)
        rate_limited = admission is not None and not admission.allowed
        return reply, tokens, rate_limited

    def _answer(
        self,
        key: str,
        model: str | None,
        inputs: list[str] | None,
        fields: dict[str, object] | None,
        problem: Reply | None,
        stopping: threading.Event,
    ) -> tuple[Reply, int, Admission | None]:
        if problem is not None:
            return problem, 0, None
        assert model is not None and inputs is not None and fields is not None
        encoding, refusal = requested_encoding(
            fields, honour=self.honour_encoding_format, extra_fields=self.extra_fields
        )
        refusal = refusal or self.service.check(inputs)
        if refusal is not None:
            return refusal, 0, None
        prepared = self.long_inputs.prepare(model, inputs)
        if prepared.refusal is not None:
            return prepared.refusal, 0, None
        tokens = sum(prepared.tokens)
        admission = None
        if self.rate_limits.active:
            admission = self.rate_limits.admit(key, tokens)
            if not admission.allowed:
                return self._too_many(model, admission), 0, admission
        self.compute.run(len(inputs), tokens, stopping)
        reply = self.service.answer(
            model, prepared.texts, tokens, encoding=encoding, vectors=self.vectors
        )
        return reply, tokens, admission

    def _too_many(self, model: str, admission: Admission) -> Reply:
        wait = admission.retry_after
        if self.rate_limits.time_scale == 1.0:
            retry_after = str(max(1, math.ceil(wait)))  # HTTP's delta-seconds are whole
        else:
            retry_after = f"{wait:.3f}"  # a compressed clock needs sub-second waits
        headers = [("Retry-After", retry_after), ("retry-after-ms", str(math.ceil(wait * 1000)))]
        limit = (
            admission.limit_tokens if admission.exceeded == "tokens" else admission.limit_requests
        )
        return rate_limit_reply(
            self.rate_limit_body,
            model=model,
            exceeded=admission.exceeded,
            limit=limit,
            retry_after=wait,
            headers=headers,
        )


def _rate_limit_headers(admission: Admission) -> list[tuple[str, str]]:
    """OpenAI's `x-ratelimit-*` headers for the limits that are set."""
    headers = []
    for kind, limit, remaining, reset in (
        (
            "requests",
            admission.limit_requests,
            admission.remaining_requests,
            admission.reset_requests,
        ),
        ("tokens", admission.limit_tokens, admission.remaining_tokens, admission.reset_tokens),
    ):
        if limit is not None:
            headers += [
                (f"x-ratelimit-limit-{kind}", str(limit)),
                (f"x-ratelimit-remaining-{kind}", str(remaining)),
                (f"x-ratelimit-reset-{kind}", format_duration(reset)),
            ]
    return headers
