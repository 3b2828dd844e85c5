"""The DecisionContext: the one object that flows through every gate.

Each gate adds its own result under its own name and never rewrites another gate's; a gate
may stop the flow with a reason code (refuse the request, or force human review)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from warden.auth import Principal
from warden.policy.compiled import CompiledDecisionType
from warden.policy.loader import LoadedPolicy

Disposition = Literal["refuse", "review"]


@dataclass(frozen=True)
class DecisionRequest:
    """What a caller asked for, as received (before any gate looked at it)."""

    decision_type: str
    jurisdiction: str | None
    inputs: Any
    idempotency_key: str | None = None
    request_hash: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    #: what kind of data the request carries (residency routing); default per decision type
    data_class: str | None = None
    #: retrieved context passages a prompt template may use
    context: list[str] | None = None
    #: the OpenAI-compatible front door's chat body (messages and parameters), if any
    chat: dict[str, Any] | None = None


@dataclass(frozen=True)
class Stop:
    gate: str
    code: str
    disposition: Disposition
    message: str
    field: str | None = None
    http_status: int = 422


@dataclass
class DecisionContext:
    decision_id: str
    request: DecisionRequest
    caller: Principal
    policy: LoadedPolicy
    received_at: str
    started_ns: int = field(default_factory=time.perf_counter_ns)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    stop: Stop | None = None
    decision_type: CompiledDecisionType | None = None
    inputs: dict[str, Any] | None = None  # validated inputs (set by admission)
    #: content the commit gate stores content-addressed with the record (kind, bytes)
    blobs: list[tuple[str, bytes]] = field(default_factory=list)
    #: inputs as the record shows them: documents replaced by their content address
    recorded_inputs: Any = None
    #: text the decision sends outward (a model's answer); the outputs gate filters it
    output_text: str | None = None
    #: per-request canary token for the system prompt of any model call
    canary: str | None = None
    #: a model's structured answer, parsed and schema-checked (the proposal gate checks it)
    proposal: dict[str, Any] | None = None
    #: the model endpoint's response body, parsed (the front door returns it)
    llm_response: dict[str, Any] | None = None

    def add_result(self, gate: str, result: dict[str, Any]) -> None:
        if gate in self.results:
            raise RuntimeError(f"gate {gate!r} wrote its result twice")
        self.results[gate] = result

    def halt(
        self,
        gate: str,
        code: str,
        disposition: Disposition,
        message: str,
        *,
        field: str | None = None,
        http_status: int = 422,
    ) -> None:
        if self.stop is None:
            self.stop = Stop(gate, code, disposition, message, field, http_status)

    @property
    def stopped(self) -> bool:
        return self.stop is not None

    def outcome(self) -> str:
        """Final outcome: the band, `review` when a gate forced it, `refused` otherwise."""
        if self.stop is not None:
            return "refused" if self.stop.disposition == "refuse" else "review"
        band = self.results.get("bands", {}).get("band")
        return str(band) if band is not None else "refused"
