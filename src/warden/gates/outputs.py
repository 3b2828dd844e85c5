"""Outputs: before anything a model wrote leaves Warden, redact personal data and check
for anomalies (length far from the decision type's baseline, links, images and code that
do not belong — exfiltration — and leakage of the request's canary token). A hit redacts
or forces review per policy. Decisions with no outward text pass untouched."""

from __future__ import annotations

from warden import metrics
from warden.guard.surfaces import inspect_output
from warden.pipeline.context import DecisionContext


class OutputsGate:
    name = "outputs"
    runs_after_stop = False

    def run(self, ctx: DecisionContext) -> None:
        compiled = ctx.decision_type
        if ctx.output_text is None or compiled is None:
            ctx.add_result(self.name, {"checked": False, "reason": "no outward text"})
            return
        inspection = inspect_output(
            ctx.output_text,
            decision_type=compiled.name,
            canary=ctx.canary,
            guard=compiled.spec.guard.output,
        )
        metrics.GUARD_CHECKS.labels("output").inc()
        hits = [f for f in inspection.findings if f.hit]
        for finding in inspection.findings:
            metrics.GUARD_HITS.labels("output", finding.code or "pii_redacted").inc()
        ctx.add_result(
            self.name,
            {
                "checked": True,
                "text": inspection.text,
                "redacted": inspection.text != ctx.output_text,
                "findings": [f.as_record() for f in inspection.findings],
            },
        )
        if hits:
            refuse = [f for f in hits if f.action == "refuse"]
            first = (refuse or hits)[0]
            ctx.halt(
                self.name,
                first.code or "outputs.flagged",
                "refuse" if refuse else "review",
                "; ".join(f.reason for f in hits),
            )
