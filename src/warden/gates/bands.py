"""Bands: map the risk score to auto_approve / review / auto_decline.

With an active thresholds version for the decision type (calibrated by `warden calibrate`,
activated by a second admin) the raw score is first calibrated with the version's map and
banded with its thresholds; otherwise the policy's static bands apply to the raw score. A
rule's forced action can only move a decision to a stricter band, and a review forced by an
earlier gate (injection, residency fail-closed, a rule error, ...) overrides the score: the
record keeps both the band the score alone would give and the override's reason."""

from __future__ import annotations

from collections.abc import Mapping

from warden.models.thresholds import ThresholdsVersion
from warden.pipeline.context import DecisionContext

_ORDER = ("auto_approve", "review", "auto_decline")
_FORCED = {"none": "auto_approve", "review": "review", "decline": "auto_decline"}


def band_for(score: float, approve_at_or_below: float, decline_at_or_above: float) -> str:
    if score >= decline_at_or_above:
        return "auto_decline"
    if score <= approve_at_or_below:
        return "auto_approve"
    return "review"


def applicable(version: ThresholdsVersion | None, decide: Mapping[str, object]) -> bool:
    """A thresholds version applies only to the model and rules it was fitted for."""
    if version is None:
        return False
    fitted = version.fitted_for
    model = decide.get("model")
    sha = model.get("sha256") if isinstance(model, dict) else None
    return fitted.get("model_sha256") == sha and fitted.get("rules_version") == decide.get(
        "rules_version"
    )


class BandsGate:
    name = "bands"
    runs_after_stop = False
    runs_after_review = True

    def __init__(self, thresholds: Mapping[str, ThresholdsVersion] | None = None) -> None:
        #: decision type → the active thresholds version (read from the audit log)
        self.thresholds = dict(thresholds or {})

    def run(self, ctx: DecisionContext) -> None:
        compiled = ctx.decision_type
        decided = ctx.results.get("decide")
        if compiled is None or decided is None:
            return
        raw = float(decided["score"])
        version = self.thresholds.get(compiled.name)
        stale = version is not None and not applicable(version, decided)
        if version is not None and not stale:
            score = version.calibrate(raw)
            thresholds = version.bands
            thresholds_version = version.version
            calibration = version.calibration.method if version.calibration is not None else "none"
        else:
            score = raw
            thresholds = dict(compiled.bands)
            thresholds_version = compiled.thresholds_version
            calibration = "none"
        by_score = band_for(
            score, thresholds["approve_at_or_below"], thresholds["decline_at_or_above"]
        )
        floor = _FORCED[str(decided.get("forced_action", "none"))]
        band = max(by_score, floor, key=_ORDER.index)
        forced_review = None
        if ctx.stop is not None and ctx.stop.disposition == "review":
            forced_review = {"gate": ctx.stop.gate, "code": ctx.stop.code}
            band = "review"
        ctx.add_result(
            self.name,
            {
                "band": band,
                "score": score,
                "raw_score": raw,
                "calibration": calibration,
                "band_by_score": by_score,
                "forced_by_rule": band if band != by_score and forced_review is None else None,
                "forced_review": forced_review,
                "thresholds": thresholds,
                "thresholds_version": thresholds_version,
                "stale_thresholds_version": version.version if stale and version else None,
            },
        )
