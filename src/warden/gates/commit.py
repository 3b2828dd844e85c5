"""Commit: write the decision record to the audit log and wait until it is durable.

The response is built only after this gate returns; if the commit fails the error
propagates and the caller gets an error, never a decision (fail closed)."""

from __future__ import annotations

from warden.audit.entry import NewEntry
from warden.audit.record import decision_body
from warden.audit.store import AuditStore
from warden.pipeline.context import DecisionContext


def idempotency_unique_key(caller: str, key: str) -> str:
    return f"idem:{caller}:{key}"


class CommitGate:
    name = "commit"
    runs_after_stop = True

    def __init__(self, store: AuditStore) -> None:
        self.store = store

    async def run(self, ctx: DecisionContext) -> None:
        for kind, data in ctx.blobs:  # content-addressed: the record names them by hash
            self.store.put_blob(kind, data)
        body = decision_body(ctx)
        refused = body["outcome"] == "refused"
        key = ctx.request.idempotency_key
        entry = NewEntry.of(
            "refusal" if refused else "decision",
            ctx.decision_id,
            body,
            # a refusal does not consume the key: the caller may fix the request and retry
            unique_key=idempotency_unique_key(ctx.caller.name, key)
            if key and not refused
            else None,
            # the outcome column feeds the review queue: an exercise is never queued
            outcome=None if ctx.caller.exercise else body["outcome"],
        )
        result = await self.store.submit_async(entry)
        if result.conflict is not None:
            ctx.results["commit"] = {"conflict_seq": result.conflict.seq}
        else:
            ctx.results["commit"] = {
                "seq": result.seq,
                "ts": result.ts,
                "batch_size": result.batch_size,
            }
