"""`warden calibrate`: fit the calibration map and choose band thresholds for one decision
type on labelled outcomes, and evaluate the result on a held-out half.

Labelled outcomes come from two sources:

* ground truth from the synthetic generator (for decision types it generates:
  `payment_fraud`), on a fresh seeded stream the model was not trained on, scored by the
  decide gate's own code (`warden.gates.decide.evaluate`) with the loaded model;
* reviewer labels from the audit log: every final `review` entry with a `label`
  (`positive`: the risk was real) joined to its decision record's raw score.

The labelled rows are split in half: the first half fits the calibration map (isotonic; Platt
scaling when a class has fewer than 50 rows) and chooses the
thresholds, the second (held out) gives the figures — PR-AUC, expected calibration error
before and after calibration, and the expected cost of the chosen thresholds against two
naive baselines: the policy's fixed static bands on the raw score, and the best single
threshold (no review band)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from warden.audit.entry import final_record
from warden.audit.store import AuditStore
from warden.errors import RequestError
from warden.gates.decide import combine, evaluate
from warden.models.calibration import (
    BandCost,
    CalibrationMap,
    Costs,
    apply_many,
    band_cost,
    best_single_threshold,
    choose_thresholds,
    expected_calibration_error,
    fit_calibration,
)
from warden.models.loaded import LoadedModel
from warden.models.thresholds import thresholds_document
from warden.policy.compiled import CompiledDecisionType
from warden.policy.loader import LoadedPolicy


def _payment_generator(rows: int, seed: int) -> Iterator[tuple[dict[str, Any], str | None, int]]:
    from warden.demo.stream import StreamConfig, payment_requests

    for request in payment_requests(rows, StreamConfig(seed=seed)):
        yield request["inputs"], request.get("jurisdiction"), int(request["_truth"]["fraud"])


#: decision types the synthetic generator produces labelled rows for
GENERATORS: dict[str, Callable[[int, int], Iterator[tuple[dict[str, Any], str | None, int]]]] = {
    "payment_fraud": _payment_generator
}


@dataclass
class Labelled:
    scores: list[float] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    source: list[str] = field(default_factory=list)


def generator_outcomes(
    compiled: CompiledDecisionType, model: LoadedModel | None, rows: int, seed: int
) -> Labelled:
    """Generated rows scored exactly as the decide gate scores them: the rules one row at a
    time, the model in one batch (LightGBM gives each row the same value either way; a test
    checks these scores against `evaluate`)."""
    out = Labelled()
    make = GENERATORS.get(compiled.name)
    if make is None or rows <= 0:
        return out
    rules: list[float] = []
    features: list[list[float]] = []
    for inputs, jurisdiction, label in make(rows, seed):
        if not jurisdiction:  # refused at the door: never banded
            continue
        validated = compiled.validate_inputs(inputs)
        rules.append(float(evaluate(compiled, validated, jurisdiction, None)["score"]))
        if model is not None:
            features.append(model.features.values(validated))
        out.labels.append(label)
        out.source.append("generator")
    if model is None:
        out.scores = rules
    else:
        probs = model.booster.predict(np.array(features, dtype=np.float64), num_threads=1)
        out.scores = [combine(r, float(p)) for r, p in zip(rules, probs, strict=True)]
    return out


def reviewer_outcomes(
    store: AuditStore, decision_type: str, fitted_for: dict[str, Any]
) -> Labelled:
    """Reviewer labels on decisions scored by the same model and rules."""
    out = Labelled()
    for entry in store.entries_of_kind("review"):
        body = entry.body()
        label = body.get("label")
        if label not in ("positive", "negative") or entry.decision_id is None:
            continue
        decision = final_record(store.entries_for(entry.decision_id)).body()
        if decision.get("decision_type") != decision_type:
            continue
        decide = next((g["result"] for g in decision["gates"] if g["gate"] == "decide"), None)
        if decide is None:
            continue
        model = decide.get("model") or {}
        if model.get("sha256") != fitted_for["model_sha256"]:
            continue
        if decide.get("rules_version") != fitted_for["rules_version"]:
            continue
        out.scores.append(float(decide["score"]))
        out.labels.append(1 if label == "positive" else 0)
        out.source.append("reviewer")
    return out


@dataclass
class CalibrationResult:
    document: dict[str, Any]
    summary: dict[str, Any]
    calibration: CalibrationMap
    chosen: BandCost
    # held-out arrays, for the report's plots
    raw: np.ndarray
    calibrated: np.ndarray
    labels: np.ndarray
    costs: Costs


def _cost_dict(c: BandCost) -> dict[str, Any]:
    return {
        "approve_at_or_below": round(c.approve_at_or_below, 6),
        "decline_at_or_above": round(c.decline_at_or_above, 6),
        "cost_per_decision": round(c.cost_per_decision, 4),
        "approve_share": round(c.approve_share, 5),
        "review_share": round(c.review_share, 5),
        "decline_share": round(c.decline_share, 5),
        "false_approves": c.false_approves,
        "false_declines": c.false_declines,
    }


def calibrate(
    policy: LoadedPolicy,
    models: dict[str, LoadedModel],
    store: AuditStore,
    decision_type: str,
    *,
    generator_rows: int = 40_000,
    seed: int = 424_242,
    review_capacity: float | None = None,
) -> CalibrationResult:
    from sklearn.metrics import average_precision_score

    compiled = policy.decision_type(decision_type)
    if compiled is None:
        known = ", ".join(sorted(policy.decision_types))
        raise RequestError(
            f"decision_type: unknown decision type {decision_type!r} (known: {known})",
            field="decision_type",
        )
    spec = compiled.spec
    if spec.costs is None:
        raise RequestError(
            f"decision_types.{decision_type}.costs: the policy names no costs to calibrate on",
            field="costs",
        )
    costs = Costs(spec.costs.false_approve, spec.costs.false_decline, spec.costs.review)
    model = models.get(spec.model) if spec.model else None
    fitted_for = {
        "model_name": model.name if model else None,
        "model_version": model.version if model else None,
        "model_sha256": model.sha256 if model else None,
        "rules_version": compiled.rules_version,
    }
    generated = generator_outcomes(compiled, model, generator_rows, seed)
    reviewed = reviewer_outcomes(store, decision_type, fitted_for)
    scores = np.array(generated.scores + reviewed.scores, dtype=np.float64)
    labels = np.array(generated.labels + reviewed.labels, dtype=np.float64)
    if len(scores) < 200 or labels.sum() < 10:
        raise RequestError(  # the generated rows are the caller's to raise
            f"rows: {len(generated.scores)} generated + {len(reviewed.scores)} reviewed "
            f"outcomes of {decision_type} ({int(labels.sum())} positive) are too few to "
            "calibrate on "
            "(need 200, 10 positive): ask for more rows",
            field="rows",
        )
    # interleave the two halves so both sources are in both
    fit_idx = np.arange(len(scores)) % 2 == 0
    test_idx = ~fit_idx
    capacity = review_capacity if review_capacity is not None else spec.review_capacity
    cal = fit_calibration(scores[fit_idx], labels[fit_idx])
    chosen = choose_thresholds(apply_many(cal, scores[fit_idx]), labels[fit_idx], costs, capacity)
    # the review share the monitor expects: on representative (generated) traffic if any
    gen_mask = np.array([True] * len(generated.scores) + [False] * len(reviewed.scores))
    base = apply_many(cal, scores[gen_mask] if gen_mask.any() else scores)
    expected_review = float(
        ((base > chosen.approve_at_or_below) & (base < chosen.decline_at_or_above)).mean()
    )
    document = thresholds_document(
        decision_type,
        cal,
        chosen.approve_at_or_below,
        chosen.decline_at_or_above,
        fitted_for=fitted_for,
        costs={
            "false_approve": costs.false_approve,
            "false_decline": costs.false_decline,
            "review": costs.review,
        },
        review_capacity=capacity,
        fitted_on={
            "generator_rows": len(generated.scores),
            "generator_seed": seed if generated.scores else None,
            "reviewer_labels": len(reviewed.scores),
            "rows_fitted": int(fit_idx.sum()),
            "positives_fitted": int(labels[fit_idx].sum()),
            "review_share": round(expected_review, 6),
        },
    )
    raw_test, y_test = scores[test_idx], labels[test_idx]
    cal_test = apply_many(cal, raw_test)
    held_out_chosen = band_cost(
        cal_test, y_test, chosen.approve_at_or_below, chosen.decline_at_or_above, costs
    )
    static = band_cost(
        raw_test, y_test, compiled.bands["approve_at_or_below"],
        compiled.bands["decline_at_or_above"], costs,
    )  # fmt: skip
    single_fit = best_single_threshold(apply_many(cal, scores[fit_idx]), labels[fit_idx], costs)
    single = band_cost(
        cal_test, y_test, single_fit.decline_at_or_above, single_fit.decline_at_or_above, costs
    )
    summary = {
        "decision_type": decision_type,
        "held_out_rows": int(test_idx.sum()),
        "held_out_positives": int(y_test.sum()),
        "pr_auc": round(float(average_precision_score(y_test, raw_test)), 4),
        "ece_raw": round(expected_calibration_error(raw_test, y_test), 4),
        "ece_calibrated": round(expected_calibration_error(cal_test, y_test), 4),
        "chosen": _cost_dict(held_out_chosen),
        "baseline_static_bands": _cost_dict(static),
        "baseline_single_threshold": _cost_dict(single),
        "review_capacity": capacity,
        "sources": {"generator": len(generated.scores), "reviewer": len(reviewed.scores)},
    }
    return CalibrationResult(
        document, summary, cal, held_out_chosen, raw_test, cal_test, y_test, costs
    )
