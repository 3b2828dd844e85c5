"""The review desk: the queue, claims, releases and reviews (with four eyes).

Every door (the JSON API, the workbench, the demo) goes through here. State changes are
audit entries; concurrent changes to one case are serialised by the store's unique keys
(`review-state:<id>:<generation>`: two reviewers who both saw generation 3 cannot both
write generation 4), so this works the same with one process or many."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from warden import metrics
from warden.audit.entry import NewEntry, StoredEntry
from warden.audit.record import is_exercise, review_body
from warden.audit.store import AuditStore
from warden.auth import Permission, Principal
from warden.errors import ConflictError, RequestError
from warden.guard.normalize import CLASSES, normalize
from warden.policy.errors_format import validated_body
from warden.policy.loader import LoadedPolicy
from warden.review.cases import (
    CaseState,
    amount_of,
    derive,
    format_ts,
    four_eyes,
    label_words,
    parse_ts,
)
from warden.schemas import ReviewRequestBody

#: at most this many queued decisions are read to order the queue
QUEUE_SCAN = 5000
#: queue summaries of decision entries kept in memory (cleared when full)
_SUMMARY_CACHE = 50_000
_SUMMARIES: dict[tuple[str, int, str], dict[str, Any]] = {}
#: control characters a rationale may hold: line breaks and tabs
_TEXT_CONTROLS = frozenset("\n\r\t")
#: invisible marks that typing Hebrew or Arabic, or pasting hyphenated text, puts in
#: (LRM, RLM, ALM, soft hyphen): they reorder or hide nothing, so a reviewer may keep them
_TYPING_MARKS = frozenset("\u200e\u200f\u061c\u00ad")
#: the injection detector's classes of invisible characters, as a message names them
_INVISIBLE_KINDS = dict(
    zip(
        CLASSES,
        (
            "a zero-width character",
            "a bidi control character",
            "a Unicode tag character",
            "an invisible character",
        ),
        strict=True,
    )
)


def reasons_of(record: dict[str, Any]) -> list[str]:
    reasons = [
        fired["reason"]
        for gate in record.get("gates", [])
        for fired in gate.get("result", {}).get("rules_fired", [])
    ]
    if record.get("stop"):
        reasons.append(record["stop"]["message"])
    return reasons


def hidden_character(text: str) -> tuple[int, str] | None:
    """The first character of `text` a reader does not see (its index, from 0) and what it
    is; None if there is none. A rationale is read by auditors and exported with the
    labels: a NUL cuts it short in C tools, bidi controls reorder what is shown (Trojan
    Source), zero-width and tag characters hide text. Control characters are Unicode's (C0
    and C1, but for line breaks and tabs); the invisible ones are the injection detector's
    (`normalize`), which also knows the legitimate uses to keep: a joiner in an emoji
    sequence or between letters of a script that needs it (Persian, Indic), the tags of a
    subdivision flag."""
    if text.isprintable():
        return None
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isprintable() or c in _TEXT_CONTROLS or c in _TYPING_MARKS:
            i += 1
            continue
        if unicodedata.category(c) == "Cc":
            return i, "a control character"
        end = i + 1
        if 0xE0000 <= ord(c) <= 0xE007F:  # a run of tags is one unit (a flag, or a message)
            while end < n and 0xE0000 <= ord(text[end]) <= 0xE007F:
                end += 1
        run = text[i:end]
        # removed in the context that decides (its neighbours), of the class it has alone
        if run not in normalize(text[max(i - 1, 0) : end + 1]).text:
            removed = normalize(run).removed
            kind = next((_INVISIBLE_KINDS[k] for k in CLASSES if removed[k]), None)
            if kind is not None:
                return i, kind
        i = end
    return None


def _duration(delta: timedelta) -> str:
    minutes = int(abs(delta.total_seconds()) // 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m"


@dataclass
class ReviewDesk:
    store: AuditStore
    policy: LoadedPolicy

    # -- reading -------------------------------------------------------------------------
    def summary(self, state: CaseState) -> dict[str, Any]:
        """What the queue shows of a decision that never changes (entries are immutable),
        kept per log, entry and policy version so the queue does not re-parse records."""
        key = (self.store.origin, state.decision.seq, self.policy.version)
        cached = _SUMMARIES.get(key)
        if cached is None:
            record = state.record
            received = parse_ts(record["received_at"])
            due = received + timedelta(minutes=self.policy.policy.review.sla_minutes)
            cached = {
                "decision_id": state.decision_id,
                "seq": state.decision.seq,
                "decision_type": record["decision_type"],
                "jurisdiction": record["jurisdiction"],
                "score": record["score"],
                "amount": amount_of(record, self.policy),
                "received_at": record["received_at"],
                "sla_due_at": format_ts(due),
                "due": due,
                "reasons": reasons_of(record),
                "four_eyes": four_eyes(record, self.policy) is not None,
            }
            if len(_SUMMARIES) >= _SUMMARY_CACHE:
                _SUMMARIES.clear()
            _SUMMARIES[key] = cached
        return cached

    def queue_item(self, state: CaseState, now: datetime) -> dict[str, Any]:
        item = dict(self.summary(state))
        due = item.pop("due")
        claim = state.claim
        first = state.first_review
        item.update(
            {
                "overdue": due < now,
                "sla_left": ("overdue " if due < now else "") + _duration(due - now),
                "status": state.status,
                "claimed_by": claim.reviewer if claim else None,
                "claim_expires_at": claim.expires_at if claim else None,
                "first_reviewer": first.reviewer if first else None,
            }
        )
        return item

    def queue(
        self, caller: Principal, limit: int = 100, *, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Open cases: overdue first (most overdue on top), then highest score, then
        largest amount, then oldest."""
        caller.require(Permission.READ_QUEUE)
        now = now or datetime.now(UTC)
        items = []
        for decision in self.store.review_queue(QUEUE_SCAN):
            assert decision.decision_id is not None
            state = derive(self.store.entries_for(decision.decision_id), now)
            if state.final_review is None:
                items.append(self.queue_item(state, now))
        items.sort(
            key=lambda i: (
                not i["overdue"],
                i["received_at"] if i["overdue"] else "",  # one SLA: oldest is most overdue
                -(i["score"] or 0.0),
                -(i["amount"] or 0.0),
                i["seq"],
            )
        )
        return items[:limit]

    def case_view(self, state: CaseState, now: datetime | None = None) -> dict[str, Any]:
        """A case as the JSON API shows it: its queue item and its review trail."""
        item = self.queue_item(state, now or datetime.now(UTC))
        item["history"] = [
            {"seq": h["seq"], "kind": h["kind"], "ts": h["ts"], "reviewer": h["who"]}
            | {k: h["body"][k] for k in ("outcome", "label", "rationale") if k in h["body"]}
            for h in state.history
        ]
        return item

    def case(self, entries: list[StoredEntry], *, now: datetime | None = None) -> CaseState:
        state = derive(entries, now or datetime.now(UTC))
        if is_exercise(state.record):
            raise ConflictError(
                f"decision {state.decision_id} is a red-team exercise: exercises are "
                "recorded, not reviewed",
                code="review.exercise",
            )
        if not state.queued:
            raise ConflictError(
                f"decision {state.decision_id} is not waiting for review "
                f"(outcome {state.record.get('outcome')!r})",
                code="review.not_in_queue",
            )
        return state

    # -- changing ------------------------------------------------------------------------
    def _open_case(self, entries: list[StoredEntry], caller: Principal, now: datetime) -> CaseState:
        caller.require(Permission.REVIEW)
        state = self.case(entries, now=now)
        if state.final_review is not None:
            raise ConflictError(
                f"decision {state.decision_id} was already reviewed by "
                f"{state.final_review.reviewer}",
                code="review.already_reviewed",
            )
        return state

    async def _append(self, entry: NewEntry, state: CaseState) -> int:
        result = await self.store.submit_async(entry)
        if result.conflict is not None:
            who = result.conflict.body().get("reviewer", {}).get("name", "?")
            if result.conflict.kind == "review":
                raise ConflictError(
                    f"decision {state.decision_id} was already reviewed by {who}",
                    code="review.already_reviewed",
                )
            raise ConflictError(
                f"decision {state.decision_id} changed meanwhile ({who}: "
                f"{result.conflict.kind.replace('_', ' ')}); reload and try again",
                code="review.changed",
            )
        return result.seq

    def _state_key(self, state: CaseState) -> str:
        return f"review-state:{state.decision_id}:{state.generation}"

    async def claim(
        self, entries: list[StoredEntry], caller: Principal, *, now: datetime | None = None
    ) -> dict[str, Any]:
        """Lock the case to the caller for `review.claim_minutes` (a renewal if held)."""
        now = now or datetime.now(UTC)
        state = self._open_case(entries, caller, now)
        held = state.claim
        if held is not None and held.reviewer != caller.name:
            raise ConflictError(
                f"decision {state.decision_id} is claimed by {held.reviewer} "
                f"until {held.expires_at}",
                code="review.claimed",
            )
        first = state.first_review
        if first is not None and first.reviewer == caller.name:
            raise ConflictError(
                f"four eyes: {caller.name} made the first review of {state.decision_id}; "
                "a different reviewer must make the second",
                code="review.four_eyes",
            )
        expires = now + timedelta(minutes=self.policy.policy.review.claim_minutes)
        body = {
            "decision_id": state.decision_id,
            "reviews_entry": {
                "seq": state.decision.seq,
                "leaf_hash": state.decision.leaf_hash.hex(),
            },
            "reviewer": caller.as_record(),
            "claimed_at": format_ts(now),
            "expires_at": format_ts(expires),
            "renewal": held is not None,
        }
        entry = NewEntry.of(
            "review_claim", state.decision_id, body, unique_key=self._state_key(state)
        )
        seq = await self._append(entry, state)
        return {
            "decision_id": state.decision_id,
            "claimed_by": caller.name,
            "expires_at": body["expires_at"],
            "audit_seq": seq,
        }

    async def release(
        self, entries: list[StoredEntry], caller: Principal, *, now: datetime | None = None
    ) -> dict[str, Any]:
        """Free a claimed case: its holder may, and an admin may free anyone's."""
        now = now or datetime.now(UTC)
        state = self._open_case(entries, caller, now)
        held = state.claim
        if held is None:
            raise ConflictError(
                f"decision {state.decision_id} is not claimed", code="review.not_claimed"
            )
        if held.reviewer != caller.name and not caller.can(Permission.ADMIN):
            raise ConflictError(
                f"decision {state.decision_id} is claimed by {held.reviewer}; only they "
                "or an admin can release it",
                code="review.claimed",
            )
        body = {
            "decision_id": state.decision_id,
            "reviewer": caller.as_record(),
            "released_claim": {"seq": held.seq, "reviewer": held.reviewer},
            "released_at": format_ts(now),
        }
        entry = NewEntry.of(
            "review_release", state.decision_id, body, unique_key=self._state_key(state)
        )
        seq = await self._append(entry, state)
        return {"decision_id": state.decision_id, "released": held.reviewer, "audit_seq": seq}

    def parse_review(self, payload: Any) -> ReviewRequestBody:
        body = validated_body(ReviewRequestBody, payload)
        hidden = hidden_character(body.rationale)
        if hidden is not None:
            at, kind = hidden
            raise RequestError(
                f"rationale: contains U+{ord(body.rationale[at]):04X} ({kind}) at position {at}",
                field="rationale",
            )
        minimum = self.policy.policy.review.min_rationale_chars
        if len(body.rationale.strip()) < minimum:
            raise RequestError(
                f"rationale: write at least {minimum} characters on why "
                f"(got {len(body.rationale.strip())})",
                field="rationale",
            )
        return body

    async def decide(
        self,
        entries: list[StoredEntry],
        caller: Principal,
        payload: Any,
        *,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """A reviewer's decision on a case they hold. Above the decision type's four-eyes
        limit the first review is pending (`review_first`) and the case returns to the
        queue; a different reviewer's review then finalises it."""
        now = now or datetime.now(UTC)
        body = self.parse_review(payload)
        state = self._open_case(entries, caller, now)
        held = state.claim
        if held is None or held.reviewer != caller.name:
            holder = f"it is claimed by {held.reviewer}" if held else "it is not claimed"
            raise ConflictError(
                f"decision {state.decision_id}: claim the case before deciding ({holder})",
                code="review.claim_required",
            )
        needs = four_eyes(state.record, self.policy)
        first = state.first_review
        if first is not None and first.reviewer == caller.name:
            raise ConflictError(
                f"four eyes: {caller.name} made the first review; a different reviewer "
                "must make the second",
                code="review.four_eyes",
            )
        stage = "first" if needs is not None and first is None else "final"
        record = review_body(
            state.decision_id,
            state.decision.seq,
            state.decision.leaf_hash,
            caller.as_record(),
            body.outcome,
            body.rationale.strip(),
            label=body.label,
            stage=stage,
            four_eyes=needs,
            first_review=None
            if first is None
            else {
                "seq": first.seq,
                "leaf_hash": first.leaf_hash,
                "reviewer": first.reviewer,
                "outcome": first.outcome,
                "label": first.label,
                "agrees": first.outcome == body.outcome and first.label == body.label,
            },
        )
        if stage == "first":
            entry = NewEntry.of(
                "review_first", state.decision_id, record, unique_key=self._state_key(state)
            )
        else:
            # the state key, as every other change of the case: a release or claim written
            # from the same generation at the same moment loses (with a key of its own the
            # review and a release both landed, and the admin was told "released"). At most
            # one final review still holds: after it the case is closed, and two from one
            # generation share the key. Older logs carry `review:<id>` keys; nothing reads them
            entry = NewEntry.of(
                "review",
                state.decision_id,
                record,
                unique_key=self._state_key(state),
                outcome=body.outcome,
            )
        seq = await self._append(entry, state)
        if stage == "final":
            metrics.REVIEWS.labels(body.outcome).inc()
        return {
            "decision_id": state.decision_id,
            "outcome": body.outcome,
            "label": body.label,
            "audit_seq": seq,
            "reviewer": caller.name,
            "status": "pending_second_review" if stage == "first" else "final",
        }

    def labels(self, decision_type: str) -> dict[str, str]:
        return label_words(decision_type, self.policy)
