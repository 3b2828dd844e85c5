"""A queued case's state, derived from the audit log alone.

Nothing about a case is updated in place: a claim, a release, a first review (four eyes)
and the final review are each an append-only entry linked to the decision. Who holds a
case, whether it waits for a second reviewer, and whether it is done are all computed by
reading those entries in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from warden.audit.entry import StoredEntry, final_record
from warden.audit.record import is_exercise
from warden.policy.loader import LoadedPolicy

#: entry kinds that change a case's review state (each one bumps its generation)
WORKFLOW_KINDS = ("review_claim", "review_release", "review_first", "review")


def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def format_ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Claim:
    reviewer: str
    role: str
    claimed_at: str
    expires_at: str
    seq: int


@dataclass(frozen=True)
class Review:
    """A first (pending, four eyes) or final review, as recorded."""

    seq: int
    leaf_hash: str
    stage: str
    reviewer: str
    outcome: str
    label: str | None
    rationale: str
    reviewed_at: str


@dataclass
class CaseState:
    decision: StoredEntry
    claim: Claim | None = None
    first_review: Review | None = None
    final_review: Review | None = None
    #: workflow entries so far: the optimistic-concurrency token of the next state change
    generation: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    @cached_property
    def record(self) -> dict[str, Any]:
        """The decision record (parsed on first use: the queue mostly does not need it)."""
        return self.decision.body()

    @property
    def decision_id(self) -> str:
        assert self.decision.decision_id is not None
        return self.decision.decision_id

    @property
    def queued(self) -> bool:
        """The decision went to review (and is a decision, not a refusal, nor a red-team
        exercise: those are never reviewed)."""
        return (
            self.decision.kind == "decision"
            and self.record.get("outcome") == "review"
            and not is_exercise(self.record)
        )

    @property
    def status(self) -> str:
        if self.final_review is not None:
            return "reviewed"
        if self.claim is not None:
            return "claimed"
        if self.first_review is not None:
            return "awaiting_second_review"
        return "open"


def derive(entries: list[StoredEntry], now: datetime) -> CaseState:
    """The state of one case from its entries in log order (the decision entry first)."""
    decision = final_record(entries)
    state = CaseState(decision)
    for entry in entries:
        if entry.seq <= decision.seq:
            continue
        if entry.kind not in WORKFLOW_KINDS:
            continue
        body = entry.body()
        state.generation += 1
        who = body.get("reviewer", {})
        state.history.append(
            {"seq": entry.seq, "kind": entry.kind, "ts": entry.ts, "who": who, "body": body}
        )
        if entry.kind == "review_claim":
            state.claim = Claim(
                who.get("name", "?"),
                who.get("role", "?"),
                body["claimed_at"],
                body["expires_at"],
                entry.seq,
            )
        elif entry.kind == "review_release":
            state.claim = None
        else:  # a review ends the claim; a first review sends the case back to the queue
            review = Review(
                entry.seq,
                entry.leaf_hash.hex(),
                "first" if entry.kind == "review_first" else "final",
                who.get("name", "?"),
                body["outcome"],
                body.get("label"),
                body.get("rationale", ""),
                body.get("reviewed_at", entry.ts),
            )
            state.claim = None
            if entry.kind == "review_first":
                state.first_review = review
            else:
                state.final_review = review
    if state.claim is not None and parse_ts(state.claim.expires_at) <= now:
        state.claim = None  # expired: the case is free again (nothing was written)
    return state


def four_eyes(record: dict[str, Any], policy: LoadedPolicy) -> dict[str, Any] | None:
    """If this decision needs a second reviewer: the field, its value and the limit."""
    spec = policy.policy.decision_types.get(str(record.get("decision_type")))
    if spec is None or spec.review.four_eyes_field is None:
        return None
    name = spec.review.four_eyes_field
    value = (record.get("request", {}).get("inputs") or {}).get(name)
    limit = spec.review.four_eyes_above
    if isinstance(value, bool) or not isinstance(value, int | float) or limit is None:
        return None
    if value <= limit:
        return None
    return {"field": name, "value": value, "above": limit}


def label_words(decision_type: str, policy: LoadedPolicy) -> dict[str, str]:
    """How the labels read for this decision type (e.g. Fraud / Not fraud)."""
    spec = policy.policy.decision_types.get(decision_type)
    if spec is None:
        return {"positive": "Positive", "negative": "Negative"}
    return {"positive": spec.review.positive_label, "negative": spec.review.negative_label}


def amount_of(record: dict[str, Any], policy: LoadedPolicy) -> float | None:
    """The case's amount (the four-eyes field's value), used to order the queue."""
    spec = policy.policy.decision_types.get(str(record.get("decision_type")))
    if spec is None or spec.review.four_eyes_field is None:
        return None
    value = (record.get("request", {}).get("inputs") or {}).get(spec.review.four_eyes_field)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
