"""Completeness of model calls: every `intent` entry (written and made durable before an
external model call) must be followed by a final record (a decision or a refusal) for the
same decision id. An intent without one is a call whose outcome the log does not hold —
after a crash, or a request still in flight. Older than the grace period, it is a finding."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from warden.audit.entry import store_ts
from warden.audit.store import AuditStore

FINAL_KINDS = frozenset({"decision", "refusal"})


def parse_ts(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass
class CompletenessReport:
    day: str
    grace_minutes: float
    intents: int = 0
    decisions_with_intents: int = 0
    complete: int = 0
    #: incomplete calls still inside the grace period (may be in flight)
    pending: list[dict[str, Any]] = field(default_factory=list)
    #: incomplete calls older than the grace period
    overdue: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.overdue

    def as_dict(self) -> dict[str, Any]:
        return {
            "date": self.day,
            "grace_minutes": self.grace_minutes,
            "intents": self.intents,
            "decisions_with_intents": self.decisions_with_intents,
            "complete": self.complete,
            "incomplete": len(self.pending) + len(self.overdue),
            "pending": self.pending,
            "overdue": self.overdue,
            "ok": self.ok,
        }


def check_completeness(
    store: AuditStore, day: date, *, grace_minutes: float = 15.0, now: datetime | None = None
) -> CompletenessReport:
    """Intents written on `day` (UTC) and whether each decision has a final record (at
    any later time)."""
    now = now or datetime.now(UTC)
    report = CompletenessReport(day.isoformat(), grace_minutes)
    start = datetime.combine(day, time.min, tzinfo=UTC)
    intents: dict[str, list[dict[str, Any]]] = {}
    for entry in store.entries_between(
        store_ts(start), store_ts(start + timedelta(days=1)), ("intent",)
    ):
        if not entry.decision_id:
            continue
        body = entry.body()
        intents.setdefault(entry.decision_id, []).append(
            {
                "decision_id": entry.decision_id,
                "seq": entry.seq,
                "ts": entry.ts,
                "endpoint": body.get("endpoint"),
                "region": body.get("region"),
                "jurisdiction": body.get("jurisdiction"),
                "decision_type": body.get("decision_type"),
                "_ts": parse_ts(entry.ts),
            }
        )
    # a final record may land after midnight: look each decision up by id (indexed)
    finals = {
        decision_id
        for decision_id in intents
        if any(e.kind in FINAL_KINDS for e in store.entries_for(decision_id))
    }
    grace = timedelta(minutes=grace_minutes)
    report.intents = sum(len(v) for v in intents.values())
    report.decisions_with_intents = len(intents)
    for decision_id, calls in intents.items():
        if decision_id in finals:
            report.complete += 1
            continue
        first = dict(calls[0])
        first["calls"] = len(calls)
        first["endpoints"] = [c["endpoint"] for c in calls]
        age = now - first.pop("_ts")
        first["age_minutes"] = round(age.total_seconds() / 60, 2)
        (report.overdue if age > grace else report.pending).append(first)
    return report
