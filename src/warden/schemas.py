"""Request and response bodies shared by the HTTP API, the CLI and the Python API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ToolCallBody(BaseModel):
    """A tool call an LLM or agent proposes; verified against the policy, never run here."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    arguments: dict[str, Any]


class DecisionRequestBody(BaseModel):
    """POST /v1/decisions. `jurisdiction` is optional in the schema only so that an
    unlabeled request reaches the residency gate, which refuses and counts it."""

    model_config = ConfigDict(extra="forbid")

    decision_type: str = Field(min_length=1, max_length=64, examples=["payment_fraud"])
    jurisdiction: str | None = Field(default=None, max_length=8, examples=["EU"])
    inputs: dict[str, Any]
    tool_calls: list[ToolCallBody] | None = Field(
        default=None,
        max_length=16,
        description="Tool calls proposed upstream, checked on the tool_args surface.",
    )
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Same key and body returns the first decision; a different body is a 409. "
        "The Idempotency-Key header is an alternative.",
    )
    data_class: str | None = Field(
        default=None,
        max_length=64,
        description="Data class for residency routing (default: the decision type's).",
    )
    context: list[str] | None = Field(
        default=None,
        max_length=20,
        description="Retrieved context passages for the prompt template.",
    )


class DecisionResponse(BaseModel):
    decision_id: str
    decision_type: str
    jurisdiction: str | None
    outcome: str
    score: float | None
    reasons: list[str]
    policy_version: str
    thresholds_version: str | None
    audit_seq: int
    replayed: bool = False
    stopped_by: dict[str, str] | None = Field(
        default=None, description="The gate and reason code that forced review, if any."
    )
    proposal: dict[str, Any] | None = Field(
        default=None, description="A model's structured proposal, after the gate checked it."
    )


class ReviewRequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Literal["approve", "decline"]
    rationale: str = Field(
        min_length=1,
        max_length=5000,
        description="Why. Mandatory: at least `review.min_rationale_chars` characters "
        "(policy; 10 in the example).",
    )
    label: Literal["positive", "negative"] = Field(
        description="positive: the risk the score estimates was real (e.g. fraud); "
        "negative: it was not. Calibration and retraining read it."
    )


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None
    decision_id: str | None = None


class ErrorResponse(BaseModel):
    """Every error the API answers: `{"error": {...}}`, with the same fields on every route."""

    error: ErrorBody
