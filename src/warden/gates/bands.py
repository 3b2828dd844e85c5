"""Bands: map the risk score to auto_approve / review / auto_decline with the policy's
static thresholds; a rule's forced action can only move a decision to a stricter band."""

from __future__ import annotations

from warden.pipeline.context import DecisionContext

_ORDER = ("auto_approve", "review", "auto_decline")
_FORCED = {"none": "auto_approve", "review": "review", "decline": "auto_decline"}


def band_for(score: float, approve_at_or_below: float, decline_at_or_above: float) -> str:
    if score >= decline_at_or_above:
        return "auto_decline"
    if score <= approve_at_or_below:
        return "auto_approve"
    return "review"


class BandsGate:
    name = "bands"
    runs_after_stop = False

    def run(self, ctx: DecisionContext) -> None:
        compiled = ctx.decision_type
        assert compiled is not None
        decided = ctx.results["decide"]
        score = float(decided["score"])
        by_score = band_for(
            score, compiled.bands["approve_at_or_below"], compiled.bands["decline_at_or_above"]
        )
        floor = _FORCED[str(decided.get("forced_action", "none"))]
        band = max(by_score, floor, key=_ORDER.index)
        ctx.add_result(
            self.name,
            {
                "band": band,
                "score": score,
                "band_by_score": by_score,
                "forced_by_rule": band if band != by_score else None,
                "thresholds": dict(compiled.bands),
                "thresholds_version": compiled.thresholds_version,
            },
        )
