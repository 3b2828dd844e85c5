"""The review desk on a real SQLite audit store: claims, expiry, releases, four eyes,
labels, and that every step is a new audit entry (never an update)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import ADMIN, AUDITOR, REVIEWER, SERVICE, payment, review_payment
from warden.auth import Principal, Role
from warden.errors import ConflictError, ForbiddenError, RequestError
from warden.gateway import Gateway

OTHER = Principal("otto-reviewer", Role.REVIEWER)
DECLINE = {"outcome": "decline", "rationale": "Account takeover pattern.", "label": "positive"}


def queued(gateway: Gateway, **overrides: Any) -> str:
    result = gateway.decide_sync(review_payment(**overrides), SERVICE)
    assert result["outcome"] == "review"
    return str(result["decision_id"])


def item(gateway: Gateway, decision_id: str, now: datetime | None = None) -> dict[str, Any]:
    items = gateway.desk.queue(REVIEWER, 1000, now=now)
    return next(i for i in items if i["decision_id"] == decision_id)


def kinds(gateway: Gateway, decision_id: str) -> list[str]:
    return [e["kind"] for e in gateway.record(decision_id, AUDITOR)["entries"]]


def test_claim_locks_the_case_to_one_reviewer_until_released(gateway: Gateway) -> None:
    case = queued(gateway)
    claim = asyncio.run(gateway.review_claim(case, REVIEWER))
    assert claim["claimed_by"] == REVIEWER.name
    assert item(gateway, case)["status"] == "claimed"
    with pytest.raises(ConflictError, match="claimed by rita-reviewer until"):
        asyncio.run(gateway.review_claim(case, OTHER))
    with pytest.raises(ConflictError, match="claim the case before deciding"):
        asyncio.run(gateway.review(case, OTHER, DECLINE))
    with pytest.raises(ConflictError, match="only they or an admin can release it"):
        asyncio.run(gateway.review_release(case, OTHER))
    asyncio.run(gateway.review_release(case, REVIEWER))
    assert item(gateway, case)["claimed_by"] is None
    asyncio.run(gateway.review_claim(case, OTHER))
    asyncio.run(gateway.review_release(case, ADMIN))  # an admin frees anyone's claim
    assert kinds(gateway, case) == [
        "decision",
        "review_claim",
        "review_release",
        "review_claim",
        "review_release",
    ]
    released = gateway.record(case, AUDITOR)["entries"][-1]["body"]
    assert released["released_claim"]["reviewer"] == OTHER.name
    assert released["reviewer"]["name"] == ADMIN.name


def test_a_claim_expires_after_the_policy_time(gateway: Gateway) -> None:
    case = queued(gateway)
    minutes = gateway.policy.policy.review.claim_minutes
    now = datetime.now(UTC)
    asyncio.run(gateway.desk.claim(gateway.entries(case, REVIEWER), REVIEWER, now=now))
    later = now + timedelta(minutes=minutes, seconds=1)
    assert item(gateway, case, now + timedelta(minutes=minutes - 1))["claimed_by"] == REVIEWER.name
    assert item(gateway, case, later)["claimed_by"] is None
    # the lapsed holder cannot decide any more; somebody else may claim
    with pytest.raises(ConflictError, match="it is not claimed"):
        asyncio.run(
            gateway.desk.decide(gateway.entries(case, REVIEWER), REVIEWER, DECLINE, now=later)
        )
    asyncio.run(gateway.desk.claim(gateway.entries(case, OTHER), OTHER, now=later))
    assert item(gateway, case, later)["claimed_by"] == OTHER.name


def test_concurrent_claims_one_wins(gateway: Gateway) -> None:
    case = queued(gateway)
    entries = gateway.entries(case, REVIEWER)  # both read the same state, then both write

    async def both() -> list[Any]:
        return await asyncio.gather(
            gateway.desk.claim(entries, REVIEWER),
            gateway.desk.claim(entries, OTHER),
            return_exceptions=True,
        )

    results = asyncio.run(both())
    assert sum(isinstance(r, dict) for r in results) == 1
    lost = next(r for r in results if isinstance(r, Exception))
    assert isinstance(lost, ConflictError) and lost.code == "review.changed"
    assert kinds(gateway, case) == ["decision", "review_claim"]


def test_four_eyes_needs_a_second_different_reviewer(gateway: Gateway) -> None:
    big = queued(gateway, amount=12_500.0)
    small = queued(gateway, amount=900.0)
    assert item(gateway, big)["four_eyes"] and not item(gateway, small)["four_eyes"]
    asyncio.run(gateway.review_claim(big, REVIEWER))
    first = asyncio.run(gateway.review(big, REVIEWER, DECLINE))
    assert first["status"] == "pending_second_review"
    waiting = item(gateway, big)
    assert waiting["status"] == "awaiting_second_review" and waiting["claimed_by"] is None
    assert waiting["first_reviewer"] == REVIEWER.name
    with pytest.raises(ConflictError, match="four eyes"):
        asyncio.run(gateway.review_claim(big, REVIEWER))
    asyncio.run(gateway.review_claim(big, OTHER))
    final = asyncio.run(
        gateway.review(
            big,
            OTHER,
            {
                "outcome": "approve",
                "rationale": "Customer confirmed by phone.",
                "label": "negative",
            },
        )
    )
    assert final["status"] == "final"
    assert big not in [i["decision_id"] for i in gateway.review_queue(REVIEWER, 1000)]
    entries = gateway.record(big, AUDITOR)["entries"]
    assert [e["kind"] for e in entries] == [
        "decision",
        "review_claim",
        "review_first",
        "review_claim",
        "review",
    ]
    last = entries[-1]["body"]
    assert last["stage"] == "final" and last["label"] == "negative"
    assert last["first_review"]["seq"] == entries[2]["seq"]
    assert last["first_review"]["agrees"] is False  # the second reviewer overrode the first
    assert entries[2]["body"]["four_eyes"] == {
        "field": "amount",
        "value": 12_500.0,
        "above": 10_000,
    }
    # a small case is final after one review
    asyncio.run(gateway.review_claim(small, REVIEWER))
    assert asyncio.run(gateway.review(small, REVIEWER, DECLINE))["status"] == "final"


def test_review_needs_outcome_label_and_rationale(gateway: Gateway) -> None:
    case = queued(gateway)
    asyncio.run(gateway.review_claim(case, REVIEWER))
    for payload, field in (
        ({"outcome": "decline", "rationale": "Account takeover."}, "label"),
        ({**DECLINE, "label": "fraud"}, "label"),
        ({**DECLINE, "outcome": "maybe"}, "outcome"),
        ({**DECLINE, "rationale": "          x          "}, "rationale"),
        ({**DECLINE, "colour": "red"}, "colour"),
    ):
        with pytest.raises(RequestError) as caught:
            asyncio.run(gateway.review(case, REVIEWER, payload))
        assert caught.value.field == field, payload
    assert kinds(gateway, case) == ["decision", "review_claim"]  # nothing half-written


def test_auditor_and_service_cannot_change_cases(gateway: Gateway) -> None:
    case = queued(gateway)
    for who in (AUDITOR, SERVICE):
        with pytest.raises(ForbiddenError):
            asyncio.run(gateway.review_claim(case, who))
        with pytest.raises(ForbiddenError):
            asyncio.run(gateway.review_release(case, who))
    assert gateway.review_queue(AUDITOR)  # the auditor reads the queue
    with pytest.raises(ForbiddenError):
        gateway.review_queue(SERVICE)


def test_queue_order_overdue_first_then_score_then_amount(gateway: Gateway) -> None:
    low = queued(gateway, amount=600.0, merchant_category="5411")  # one rule: lower score
    high_small = queued(gateway, amount=900.0)
    high_big = queued(gateway, amount=4_000.0)
    now = datetime.now(UTC)
    order = [i["decision_id"] for i in gateway.desk.queue(REVIEWER, now=now)]
    assert order.index(high_big) < order.index(high_small) < order.index(low)
    # hours later all three are overdue: the oldest (most overdue) comes first
    later = now + timedelta(minutes=gateway.policy.policy.review.sla_minutes + 5)
    items = gateway.desk.queue(REVIEWER, now=later)
    assert all(i["overdue"] for i in items)
    assert [i["decision_id"] for i in items][:3] == [low, high_small, high_big]


def test_not_queued_decisions_cannot_be_claimed(gateway: Gateway) -> None:
    approved = gateway.decide_sync(payment(), SERVICE)["decision_id"]
    with pytest.raises(ConflictError, match="not waiting for review"):
        asyncio.run(gateway.review_claim(approved, REVIEWER))


@pytest.mark.parametrize("other", ["release", "claim_renewal"])
def test_a_release_or_claim_racing_the_final_review_loses(gateway: Gateway, other: str) -> None:
    """Both read the same state; the final review lands first, and the release (an admin's)
    or the holder's claim renewal written from that state must not land beside it."""
    case = queued(gateway)
    asyncio.run(gateway.review_claim(case, REVIEWER))
    entries = gateway.entries(case, REVIEWER)

    async def both() -> list[Any]:
        review = gateway.desk.decide(entries, REVIEWER, DECLINE)
        if other == "release":
            racing = gateway.desk.release(entries, ADMIN)
        else:
            racing = gateway.desk.claim(entries, REVIEWER)
        return await asyncio.gather(review, racing, return_exceptions=True)

    reviewed, lost = asyncio.run(both())
    assert isinstance(reviewed, dict) and reviewed["status"] == "final", reviewed
    assert isinstance(lost, ConflictError) and lost.code == "review.already_reviewed", lost
    assert kinds(gateway, case) == ["decision", "review_claim", "review"]


def test_two_final_reviews_from_one_state_one_wins(gateway: Gateway) -> None:
    case = queued(gateway)
    asyncio.run(gateway.review_claim(case, REVIEWER))
    entries = gateway.entries(case, REVIEWER)
    approve = {**DECLINE, "outcome": "approve", "label": "negative"}

    async def both() -> list[Any]:
        return await asyncio.gather(
            gateway.desk.decide(entries, REVIEWER, DECLINE),
            gateway.desk.decide(entries, REVIEWER, approve),
            return_exceptions=True,
        )

    results = asyncio.run(both())
    assert sum(isinstance(r, dict) for r in results) == 1
    assert kinds(gateway, case) == ["decision", "review_claim", "review"]


def test_a_rationale_a_reader_would_not_see_whole_is_refused(gateway: Gateway) -> None:
    """Every door (API, workbench, demo) goes through the desk: a NUL, a C1 control, a
    zero-width or bidi-control character in a rationale is a 422 naming the character and
    where it is, before anything is written."""
    case = queued(gateway)
    asyncio.run(gateway.review_claim(case, REVIEWER))
    for rationale, message in (
        ("\x00Account takeover.", "contains U+0000 (a control character) at position 0"),
        ("Account\x9btakeover.", "contains U+009B (a control character) at position 7"),
        ("Account take\u200bover.", "contains U+200B (a zero-width character) at position 12"),
        ("Account \u202etakeover.", "contains U+202E (a bidi control character) at position 8"),
    ):
        with pytest.raises(RequestError) as caught:
            asyncio.run(gateway.review(case, REVIEWER, {**DECLINE, "rationale": rationale}))
        assert caught.value.field == "rationale"
        assert caught.value.message == f"rationale: {message}"
    assert kinds(gateway, case) == ["decision", "review_claim"]
    kept = "Account takeover:\r\n\tnew device,\tconfirmed."
    asyncio.run(gateway.review(case, REVIEWER, {**DECLINE, "rationale": kept}))
    assert kinds(gateway, case)[-1] == "review"
