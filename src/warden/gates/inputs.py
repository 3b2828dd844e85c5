"""Inputs: the adversarial-input gate (injection detection per surface). Not configured in
this release; it records which surfaces it saw so the record shows it ran."""

from __future__ import annotations

from warden.pipeline.context import DecisionContext


class InputsGate:
    name = "inputs"
    runs_after_stop = False

    def run(self, ctx: DecisionContext) -> None:
        surfaces = list(ctx.decision_type.spec.surfaces) if ctx.decision_type else []
        ctx.add_result(self.name, {"surfaces": surfaces, "validators": [], "signals": []})
