"""Decide: evaluate the policy's deterministic rules (CEL) over the validated inputs.

Fired rules add their scores as a noisy-OR, `1 - Π(1 - s)`, so several weak signals add up
without the score ever leaving [0, 1]. A rule that cannot be evaluated forces review:
a broken rule must never approve."""

from __future__ import annotations

from typing import Any

from warden.pipeline.context import DecisionContext

_SEVERITY = {"none": 0, "review": 1, "decline": 2}


class DecideGate:
    name = "decide"
    runs_after_stop = False

    def run(self, ctx: DecisionContext) -> None:
        compiled = ctx.decision_type
        assert compiled is not None and ctx.inputs is not None
        activation = {
            "inputs": ctx.inputs,
            "jurisdiction": ctx.request.jurisdiction,
            "decision_type": compiled.name,
        }
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
        score = round(1.0 - keep, 6)
        ctx.add_result(
            self.name,
            {
                "method": "rules",
                "rules_version": compiled.rules_version,
                "rules_evaluated": len(compiled.spec.rules),
                "rules_fired": fired,
                "rule_errors": errors,
                "score": score,
                "forced_action": forced,
            },
        )
        if errors:
            ctx.halt(
                self.name,
                "decide.rule_error",
                "review",
                f"{len(errors)} rule(s) could not be evaluated; a person must decide",
            )
