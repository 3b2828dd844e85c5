"""Residency: every request carries a jurisdiction label the policy knows. Unlabeled or
unknown labels are refused (422) and counted, as is a data class the policy does not know;
the allowed zones are recorded for the model calls that later gates make."""

from __future__ import annotations

from warden.pipeline.context import DecisionContext


class ResidencyGate:
    name = "residency"
    runs_after_stop = False

    def __init__(self, *, checks_data_class: bool = True) -> None:
        #: False only to reproduce a record made before format 3 (`audit.record`)
        self.checks_data_class = checks_data_class

    def run(self, ctx: DecisionContext) -> None:
        label = ctx.request.jurisdiction
        residency = ctx.policy.policy.residency
        if label is None or label == "":
            ctx.add_result(self.name, {"jurisdiction": None, "allowed": False})
            ctx.halt(
                self.name,
                "residency.unlabeled",
                "refuse",
                "jurisdiction: every request must carry a jurisdiction label "
                f"(one of: {', '.join(sorted(residency))})",
                field="jurisdiction",
            )
            return
        rule = residency.get(label)
        if rule is None:
            ctx.add_result(self.name, {"jurisdiction": label, "allowed": False})
            ctx.halt(
                self.name,
                "residency.unknown_jurisdiction",
                "refuse",
                f"jurisdiction: unknown jurisdiction {label!r} "
                f"(this policy knows: {', '.join(sorted(residency))})",
                field="jurisdiction",
            )
            return
        data_class = ctx.request.data_class
        known = ctx.policy.policy.data_classes
        if self.checks_data_class and data_class is not None and data_class not in known:
            # also where no model is called: a typo is refused, never recorded as a class
            ctx.add_result(
                self.name,
                {"jurisdiction": label, "allowed": False, "unknown_data_class": data_class},
            )
            ctx.halt(
                self.name,
                "residency.unknown_data_class",
                "refuse",
                f"data_class: unknown data class {data_class!r} "
                f"(this policy knows: {', '.join(known)})",
                field="data_class",
            )
            return
        ctx.add_result(
            self.name,
            {
                "jurisdiction": label,
                "allowed": True,
                "allowed_zones": list(rule.allowed_zones),
                "on_unavailable": rule.on_unavailable,
            },
        )
