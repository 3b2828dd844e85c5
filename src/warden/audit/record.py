"""Build audit entry bodies from a finished DecisionContext (and for reviews/policies).

A decision record holds everything needed to reproduce the decision: caller, type,
jurisdiction, policy version, inputs verbatim, every gate's result in run order, the stop
reason if any, and the outcome."""

from __future__ import annotations

import time
from typing import Any

from warden.audit.sqlite_store import utc_now
from warden.pipeline.context import DecisionContext

#: 2: the outputs gate's result holds `length` (the answer length the output guard saw)
#: 3: the residency gate refuses a data class the policy does not know, for every decision
#:    type (before, only the LLM gate did, for the types that call a model)
RECORD_FORMAT = 3
#: fields each format added to a gate's result, by format: a reproduction of a record of an
#: older format leaves them out, so an old record still reproduces as identical
ADDED_IN_FORMAT: dict[int, list[tuple[str, str]]] = {2: [("outputs", "length")]}


def is_exercise(record: dict[str, Any]) -> bool:
    """A red-team exercise: decided for a `redteam` key (`warden.auth`). Recorded like any
    decision, never queued for review, left out of the monitors and statistics."""
    return record.get("exercise") is True


def gate_results(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A record's gate results by gate name (the record lists them in run order)."""
    return {g["gate"]: g["result"] for g in record.get("gates", [])}


def drop_newer_fields(results: dict[str, dict[str, Any]], record_format: int) -> None:
    """Remove from reproduced gate results the fields formats after `record_format` added."""
    for version, fields in ADDED_IN_FORMAT.items():
        if record_format < version:
            for gate, key in fields:
                results.get(gate, {}).pop(key, None)


def decision_body(ctx: DecisionContext) -> dict[str, Any]:
    request = ctx.request
    bands = ctx.results.get("bands", {})
    stop = ctx.stop
    body = {
        "record_format": RECORD_FORMAT,
        "decision_id": ctx.decision_id,
        "received_at": ctx.received_at,
        "decided_at": utc_now(),
        "caller": ctx.caller.as_record(),
        "decision_type": request.decision_type,
        "jurisdiction": request.jurisdiction,
        "policy": {"name": ctx.policy.policy.name, "version": ctx.policy.version},
        "request": {
            "inputs": request.inputs if ctx.recorded_inputs is None else ctx.recorded_inputs,
            "tool_calls": request.tool_calls,
            "idempotency_key": request.idempotency_key,
            "request_hash": request.request_hash,
            "data_class": request.data_class,
            "context": request.context,
        },
        "gates": [{"gate": name, "result": result} for name, result in ctx.results.items()],
        "stop": None
        if stop is None
        else {
            "gate": stop.gate,
            "code": stop.code,
            "disposition": stop.disposition,
            "message": stop.message,
            "field": stop.field,
        },
        "outcome": ctx.outcome(),
        "output": ctx.results.get("outputs", {}).get("text"),
        "score": bands.get("score"),
        "thresholds_version": bands.get("thresholds_version"),
        "processing_us": (time.perf_counter_ns() - ctx.started_ns) // 1000,
    }
    if ctx.caller.exercise:  # only then: every other record keeps its exact old form
        body["exercise"] = True
    return body


def review_body(
    decision_id: str,
    decision_seq: int,
    decision_leaf: bytes,
    reviewer: dict[str, str],
    outcome: str,
    rationale: str,
    *,
    label: str,
    stage: str = "final",
    four_eyes: dict[str, Any] | None = None,
    first_review: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A reviewer's decision. `label` is "positive" (the risk the score estimates was real,
    e.g. fraud) or "negative"; calibration and retraining read it. `stage` is "first" for a
    four-eyes first review (pending, kind `review_first`) and "final" for the review that
    finalises the case (kind `review`), which links the first one."""
    return {
        "record_format": RECORD_FORMAT,
        "decision_id": decision_id,
        "reviews_entry": {"seq": decision_seq, "leaf_hash": decision_leaf.hex()},
        "reviewer": reviewer,
        "outcome": outcome,
        "label": label,
        "rationale": rationale,
        "stage": stage,
        "four_eyes": four_eyes,
        "first_review": first_review,
        "reviewed_at": utc_now(),
    }
