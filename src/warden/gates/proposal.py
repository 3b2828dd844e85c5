"""Proposal: an LLM's answer is a proposal until deterministic rules from the policy
(CEL over `proposal` and `inputs`) accept it — an action in the allowed set, amounts within
limits and not above the claimed amount, consistency with the inputs. A failed check (or
one that cannot be evaluated) sends the decision to a person, and is recorded."""

from __future__ import annotations

from warden.pipeline.context import DecisionContext


class ProposalGate:
    name = "proposal"
    runs_after_stop = False

    def run(self, ctx: DecisionContext) -> None:
        compiled = ctx.decision_type
        assert compiled is not None
        if ctx.proposal is None:
            ctx.add_result(self.name, {"checked": False})
            return
        activation = {
            "inputs": ctx.inputs,
            "proposal": ctx.proposal,
            "jurisdiction": ctx.request.jurisdiction,
            "decision_type": compiled.name,
        }
        outcomes = compiled.check_proposal(activation)
        checks = [
            {
                "id": o.check.id,
                "passed": o.passed,
                "message": o.check.message,
                **({"error": o.error} if o.error else {}),
            }
            for o in outcomes
        ]
        failed = [c for c in checks if not c["passed"]]
        ctx.add_result(
            self.name,
            {"checked": True, "proposal": ctx.proposal, "checks": checks, "failed": len(failed)},
        )
        if failed:
            ctx.halt(
                self.name,
                "proposal.check_failed",
                "review",
                "; ".join(str(c["message"]) for c in failed),
            )
