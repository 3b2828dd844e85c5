"""Admission: the request names a decision type this policy knows, and its inputs match
that type's schema. (Authentication, idempotency and the decision_id happen at the door
of the gateway, before the context exists; see `warden.gateway`.)"""

from __future__ import annotations

from warden.errors import RequestError
from warden.pipeline.context import DecisionContext


class AdmissionGate:
    name = "admission"
    runs_after_stop = False

    def run(self, ctx: DecisionContext) -> None:
        request = ctx.request
        compiled = ctx.policy.decision_type(request.decision_type)
        if compiled is None:
            known = ", ".join(sorted(ctx.policy.decision_types))
            ctx.add_result(self.name, {"admitted": False})
            ctx.halt(
                self.name,
                "admission.unknown_decision_type",
                "refuse",
                f"decision_type: unknown decision type {request.decision_type!r} "
                f"(this policy knows: {known})",
                field="decision_type",
            )
            return
        try:
            inputs = compiled.validate_inputs(request.inputs)
        except RequestError as exc:
            ctx.add_result(self.name, {"admitted": False})
            ctx.halt(self.name, exc.code, "refuse", exc.message, field=exc.field)
            return
        ctx.decision_type = compiled
        ctx.inputs = inputs
        ctx.add_result(self.name, {"admitted": True, "schema": f"{compiled.name}.inputs"})
