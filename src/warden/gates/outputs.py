"""Outputs: before anything a model wrote leaves Warden, redact personal data and check
for anomalies (length far from the decision type's baseline, links, images and code that
do not belong — exfiltration — and leakage of the request's canary token). A hit redacts
or forces review per policy. Decisions with no outward text pass untouched.

The outward text is a chat answer, or a structured proposal's text (its string values,
which the caller and a reviewer read); a redacted proposal is recorded here beside the
raw one. The gate also runs when an earlier gate forced review: a person is about to
read what the model wrote."""

from __future__ import annotations

from warden import metrics
from warden.guard.surfaces import inspect_output, redact_values, string_values
from warden.pipeline.context import DecisionContext


class OutputsGate:
    name = "outputs"
    runs_after_stop = False
    runs_after_review = True

    def run(self, ctx: DecisionContext) -> None:
        compiled = ctx.decision_type
        text = ctx.output_text
        structured = text is None and ctx.proposal is not None
        if structured:
            assert ctx.proposal is not None
            text = "\n".join(string_values(ctx.proposal))
        if text is None or compiled is None:
            ctx.add_result(self.name, {"checked": False, "reason": "no outward text"})
            return
        guard = compiled.spec.guard.output
        inspection = inspect_output(
            text,
            decision_type=compiled.name,
            canary=ctx.canary,
            guard=guard,
            observe=not ctx.caller.exercise,
        )
        hits = [f for f in inspection.findings if f.hit]
        if not ctx.caller.exercise:  # a red-team run must not inflate the hit rates
            metrics.GUARD_CHECKS.labels("output").inc()
            for finding in inspection.findings:
                metrics.GUARD_HITS.labels("output", finding.code or "pii_redacted").inc()
        result = {
            "checked": True,
            "of": "proposal" if structured else "answer",
            "text": inspection.text,
            "redacted": inspection.text != text,
            # the length the output guard's baseline saw (a restart seeds it from here)
            "length": len(text),
            "findings": [f.as_record() for f in inspection.findings],
        }
        if structured and result["redacted"]:
            result["proposal"] = redact_values(ctx.proposal, guard)
        ctx.add_result(self.name, result)
        if hits:
            refuse = [f for f in hits if f.action == "refuse"]
            first = (refuse or hits)[0]
            ctx.halt(
                self.name,
                first.code or "outputs.flagged",
                "refuse" if refuse else "review",
                "; ".join(f.reason for f in hits),
            )
