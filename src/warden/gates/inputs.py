"""Inputs: every input surface passes the validators the policy names before any model
sees it — free text (`text`), uploaded documents (`document`), arguments of proposed tool
calls (`tool_args`). Each signal, score and action is recorded; a hit forces review or
refuses the request per policy, so flagged input never reaches auto-approve. A broken
document is refused with a 422 naming the field."""

from __future__ import annotations

from typing import Any

from warden import metrics
from warden.errors import RequestError
from warden.guard.surfaces import Finding, inspect_document, inspect_text, inspect_tool_call
from warden.pipeline.context import DecisionContext

_CANARY_PREFIX = "WARDEN-CANARY-"


class InputsGate:
    name = "inputs"
    runs_after_stop = False

    def run(self, ctx: DecisionContext) -> None:
        compiled = ctx.decision_type
        assert compiled is not None and ctx.inputs is not None
        guard = compiled.spec.guard
        if not ctx.request.tool_calls and all(v == "fields" for v in compiled.surfaces.values()):
            # structured fields only: nothing here is free text a model will read
            ctx.add_result(self.name, {"surfaces": [], "findings": [], "flagged": False})
            return
        findings: list[Finding] = []
        recorded = dict(ctx.request.inputs)
        try:
            for name, surface in compiled.surfaces.items():
                value = ctx.inputs.get(name)
                if value is None or surface == "fields":
                    continue
                path = f"inputs.{name}"
                if surface == "text":
                    findings.append(inspect_text(path, value, guard.text))
                elif surface == "document":
                    inspection = inspect_document(path, value, guard.document)
                    findings.append(inspection.finding)
                    ctx.blobs.append(("document", inspection.data))
                    recorded[name] = inspection.recorded
            for index, call in enumerate(ctx.request.tool_calls or []):
                findings.append(
                    inspect_tool_call(index, call, compiled, ctx.inputs, guard.tool_args)
                )
        except RequestError as exc:  # a broken document: refuse, naming the field
            self._count(ctx, findings, broken_document=True)
            ctx.add_result(
                self.name, {"findings": [f.as_record() for f in findings], "error": exc.to_dict()}
            )
            ctx.halt(self.name, exc.code, "refuse", exc.message, field=exc.field)
            return
        ctx.recorded_inputs = recorded
        if ctx.canary is None:  # preset only when a recorded decision is reproduced
            ctx.canary = _new_canary()
        self._count(ctx, findings)
        hits = [f for f in findings if f.hit]
        result: dict[str, Any] = {
            "surfaces": sorted({f.surface for f in findings}),
            "findings": [f.as_record() for f in findings],
            "flagged": bool(hits),
        }
        ctx.add_result(self.name, result)
        if hits:
            refuse = [f for f in hits if f.action == "refuse"]
            first = (refuse or hits)[0]
            ctx.halt(
                self.name,
                first.code or "inputs.flagged",
                "refuse" if refuse else "review",
                "; ".join(f.reason for f in hits),
                field=first.field,
            )

    @staticmethod
    def _count(
        ctx: DecisionContext, findings: list[Finding], *, broken_document: bool = False
    ) -> None:
        if ctx.caller.exercise:  # a red-team run must not inflate the hit rates
            return
        if broken_document:
            metrics.GUARD_CHECKS.labels("document").inc()
        for finding in findings:
            metrics.GUARD_CHECKS.labels(finding.surface).inc()
            if finding.hit:
                metrics.GUARD_HITS.labels(finding.surface, finding.code or "flagged").inc()


def _new_canary() -> str:
    import secrets

    return _CANARY_PREFIX + secrets.token_hex(8)
