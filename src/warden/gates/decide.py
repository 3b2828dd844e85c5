"""Decide: evaluate the policy's deterministic rules (CEL) over the validated inputs and,
when the decision type names a model (`model: fraud-lgbm@champion`), score the inputs' online
features with it.

Fired rules add their scores as a noisy-OR, `1 - Π(1 - s)`, so several weak signals add up
without the score ever leaving [0, 1]. The model's probability joins the same noisy-OR as
one more signal: `score = 1 - (1 - rules) · (1 - model)` (recorded as `combine`); the bands
gate calibrates that raw score. A rule that cannot be evaluated forces review: a broken rule
must never approve. The record names the model (name, version, artifact SHA-256, feature
set) and every feature with its value, so the decision can be reproduced.

The gate also runs after an earlier gate forced review (an injection hit, residency fail-
closed): the reviewer then sees the score beside the override reason."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from warden.models.loaded import LoadedModel
from warden.pipeline.context import DecisionContext
from warden.policy.compiled import CompiledDecisionType

_SEVERITY = {"none": 0, "review": 1, "decline": 2}
COMBINE = "noisy_or(rules, model)"


def evaluate(
    compiled: CompiledDecisionType,
    inputs: dict[str, Any],
    jurisdiction: str | None,
    model: LoadedModel | None,
) -> dict[str, Any]:
    """The decide gate's result for these inputs (used by the gate, calibration, reproduce)."""
    activation = {"inputs": inputs, "jurisdiction": jurisdiction, "decision_type": compiled.name}
    fired: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    keep = 1.0
    forced = "none"
    for outcome in compiled.evaluate_rules(activation):
        rule = outcome.rule
        if outcome.error is not None:
            errors.append({"rule": rule.id, "error": outcome.error})
            continue
        if not outcome.fired:
            continue
        fired.append(
            {"id": rule.id, "score": rule.score, "action": rule.action, "reason": rule.reason}
        )
        keep *= 1.0 - rule.score
        if _SEVERITY[rule.action] > _SEVERITY[forced]:
            forced = rule.action
    rules_score = round(1.0 - keep, 6)
    result: dict[str, Any] = {
        "method": "rules" if model is None else "rules+model",
        "rules_version": compiled.rules_version,
        "rules_evaluated": len(compiled.spec.rules),
        "rules_fired": fired,
        "rule_errors": errors,
        "score": rules_score,
        "forced_action": forced,
    }
    if model is not None:
        started = time.perf_counter_ns()
        model_score, values = model.score(inputs)
        result["model"] = {
            **model.as_record(),
            "score": round(model_score, 6),
            "latency_us": (time.perf_counter_ns() - started) // 1000,
        }
        result["features"] = model.features.as_record(values)
        result["rules_score"] = rules_score
        result["combine"] = COMBINE
        result["score"] = combine(rules_score, model_score)
    return result


def combine(rules_score: float, model_score: float) -> float:
    """The raw score of a decision with a model: noisy-OR of the rules' and the model's."""
    return round(1.0 - (1.0 - rules_score) * (1.0 - model_score), 6)


class DecideGate:
    name = "decide"
    runs_after_stop = False
    runs_after_review = True

    def __init__(self, models: Mapping[str, LoadedModel] | None = None) -> None:
        #: the policy's `model:` references, resolved and loaded at start-up
        self.models = dict(models or {})

    def run(self, ctx: DecisionContext) -> None:
        compiled = ctx.decision_type
        if compiled is None or ctx.inputs is None:  # stopped before admission validated
            return
        model = None
        if compiled.spec.model is not None:
            model = self.models.get(compiled.spec.model)
            if model is None:  # never approve without the model the policy asks for
                ctx.halt(
                    self.name,
                    "decide.model_unavailable",
                    "review",
                    f"model {compiled.spec.model} is not loaded; a person must decide",
                )
        result = evaluate(compiled, ctx.inputs, ctx.request.jurisdiction, model)
        ctx.add_result(self.name, result)
        if result["rule_errors"]:
            ctx.halt(
                self.name,
                "decide.rule_error",
                "review",
                f"{len(result['rule_errors'])} rule(s) could not be evaluated; "
                "a person must decide",
            )
