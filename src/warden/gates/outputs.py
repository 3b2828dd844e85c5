"""Outputs: PII redaction and output anomaly checks. Not configured in this release; it
records that it ran and found nothing to filter."""

from __future__ import annotations

from warden.pipeline.context import DecisionContext


class OutputsGate:
    name = "outputs"
    runs_after_stop = False

    def run(self, ctx: DecisionContext) -> None:
        ctx.add_result(self.name, {"filters": [], "redactions": 0})
