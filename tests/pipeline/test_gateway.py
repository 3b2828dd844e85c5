"""The pipeline end to end through the Python API, on a real SQLite audit store."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.conftest import (
    ADMIN,
    AUDITOR,
    EXAMPLE_POLICY,
    OTHER_SERVICE,
    REVIEWER,
    SERVICE,
    decline_payment,
    payment,
    review_payment,
)
from warden.errors import (
    AuditCommitError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    RequestError,
)
from warden.gateway import Gateway, RefusedError

GATES = ["admission", "residency", "inputs", "llm", "proposal", "decide", "bands", "outputs"]


def decision_entry(gateway: Gateway, decision_id: str) -> dict[str, Any]:
    entries = gateway.record(decision_id, AUDITOR)["entries"]
    body: dict[str, Any] = entries[0]["body"]
    return body


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_clean_payment_is_auto_approved_and_fully_recorded(gateway: Gateway) -> None:
    result = gateway.decide_sync(payment(), SERVICE)
    assert result["outcome"] == "auto_approve" and result["score"] == 0.0
    record = decision_entry(gateway, result["decision_id"])
    assert [g["gate"] for g in record["gates"]] == GATES
    assert record["caller"] == {"name": "svc-payments", "role": "service"}
    assert record["policy"]["version"] == gateway.policy.version
    assert record["jurisdiction"] == "EU" and record["decision_type"] == "payment_fraud"
    assert record["request"]["inputs"]["amount"] == 42.17
    bands = next(g["result"] for g in record["gates"] if g["gate"] == "bands")
    assert bands["thresholds_version"].startswith("sha256:")
    assert bands["thresholds"] == {"approve_at_or_below": 0.3, "decline_at_or_above": 0.8}
    assert record["outcome"] == "auto_approve"
    assert record["received_at"] <= record["decided_at"]


def test_rules_push_a_payment_into_review_with_reasons(gateway: Gateway) -> None:
    result = gateway.decide_sync(review_payment(), SERVICE)
    assert result["outcome"] == "review"
    assert 0.3 < result["score"] < 0.8
    record = decision_entry(gateway, result["decision_id"])
    decide = next(g["result"] for g in record["gates"] if g["gate"] == "decide")
    assert {r["id"] for r in decide["rules_fired"]} == {
        "new_device_high_value",
        "high_risk_mcc_new_device",
    }
    assert decide["rules_version"].startswith("sha256:")


def test_a_decline_rule_forces_auto_decline_whatever_the_score(gateway: Gateway) -> None:
    result = gateway.decide_sync(decline_payment(), SERVICE)
    assert result["outcome"] == "auto_decline"
    bands = next(
        g["result"]
        for g in decision_entry(gateway, result["decision_id"])["gates"]
        if g["gate"] == "bands"
    )
    assert bands["band_by_score"] == "auto_approve" and bands["forced_by_rule"] == "auto_decline"


def test_a_review_rule_forces_review(gateway: Gateway) -> None:
    result = gateway.decide_sync(payment(amount=60000.0), SERVICE)
    assert result["outcome"] == "review"


def test_unlabeled_request_is_refused_recorded_and_counted(gateway: Gateway) -> None:
    before = metric("warden_unlabeled_requests_total")
    with pytest.raises(RefusedError) as caught:
        gateway.decide_sync(payment(jurisdiction=None), SERVICE)
    error = caught.value
    assert error.http_status == 422 and error.code == "residency.unlabeled"
    assert error.field == "jurisdiction" and "EU, UK, US" in error.message
    assert metric("warden_unlabeled_requests_total") == before + 1
    entries = gateway.record(error.decision_id, AUDITOR)["entries"]
    assert entries[0]["kind"] == "refusal"
    assert entries[0]["body"]["stop"]["code"] == "residency.unlabeled"


def test_unknown_jurisdiction_is_refused(gateway: Gateway) -> None:
    with pytest.raises(RefusedError, match="unknown jurisdiction 'ZZ'") as caught:
        gateway.decide_sync(payment(jurisdiction="ZZ"), SERVICE)
    assert caught.value.code == "residency.unknown_jurisdiction"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"decision_type": "payment_fraud", "jurisdiction": "EU"}, "inputs"),
        ({**payment(), "extra": 1}, "extra"),
        ({**payment(), "decision_type": 7}, "decision_type"),
        ([1, 2], "body"),
    ],
)
def test_malformed_requests_name_the_field(gateway: Gateway, payload: Any, field: str) -> None:
    size = gateway.store.size()
    with pytest.raises(RequestError) as caught:
        gateway.decide_sync(payload, SERVICE)
    assert caught.value.field == field
    assert gateway.store.size() == size  # nothing written for a request that never parsed


def test_bad_inputs_are_refused_by_admission(gateway: Gateway) -> None:
    with pytest.raises(RefusedError) as caught:
        gateway.decide_sync(payment(amount=-5), SERVICE)
    assert caught.value.field == "inputs.amount"
    assert caught.value.code == "request.invalid_inputs"
    with pytest.raises(RefusedError, match="unknown decision type 'mortgage'"):
        gateway.decide_sync({**payment(), "decision_type": "mortgage"}, SERVICE)


def test_decision_ids_are_time_ordered_uuid7(gateway: Gateway) -> None:
    ids = [gateway.decide_sync(payment(), SERVICE)["decision_id"] for _ in range(20)]
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert ids == sorted(ids)


def test_idempotency_same_key_same_body_returns_the_first_decision(gateway: Gateway) -> None:
    first = gateway.decide_sync(payment(), SERVICE, idempotency_key="k-1")
    again = gateway.decide_sync(payment(), SERVICE, idempotency_key="k-1")
    assert again["decision_id"] == first["decision_id"] and again["replayed"] is True
    assert again["outcome"] == first["outcome"] and again["audit_seq"] == first["audit_seq"]


def test_idempotency_same_key_other_body_is_a_conflict(gateway: Gateway) -> None:
    gateway.decide_sync(payment(), SERVICE, idempotency_key="k-2")
    size = gateway.store.size()
    with pytest.raises(ConflictError) as caught:
        gateway.decide_sync(payment(amount=43.0), SERVICE, idempotency_key="k-2")
    assert caught.value.http_status == 409 and caught.value.field == "idempotency_key"
    assert gateway.store.size() == size


def test_idempotency_keys_are_scoped_per_caller(gateway: Gateway) -> None:
    a = gateway.decide_sync(payment(), SERVICE, idempotency_key="shared")
    b = gateway.decide_sync(payment(amount=1.0), OTHER_SERVICE, idempotency_key="shared")
    assert a["decision_id"] != b["decision_id"]


def test_concurrent_duplicates_yield_one_decision(gateway: Gateway) -> None:
    async def burst() -> list[dict[str, Any]]:
        return await asyncio.gather(
            *(gateway.decide(payment(), SERVICE, idempotency_key="race") for _ in range(16))
        )

    results = asyncio.run(burst())
    assert len({r["decision_id"] for r in results}) == 1
    assert sum(1 for e in gateway.store.iter_entries() if e.kind == "decision") == 1


def test_refusal_does_not_consume_the_idempotency_key(gateway: Gateway) -> None:
    with pytest.raises(RefusedError):
        gateway.decide_sync(payment(jurisdiction=None), SERVICE, idempotency_key="fixme")
    fixed = gateway.decide_sync(payment(), SERVICE, idempotency_key="fixme")
    assert fixed["outcome"] == "auto_approve"


def test_group_commit_shares_transactions_under_concurrency(gateway: Gateway) -> None:
    async def burst() -> list[dict[str, Any]]:
        return await asyncio.gather(*(gateway.decide(payment(), SERVICE) for _ in range(200)))

    before = len(list(gateway.store.checkpoints()))
    asyncio.run(burst())
    commits = len(list(gateway.store.checkpoints())) - before
    assert commits < 100, f"200 concurrent decisions took {commits} commits"


def test_roles_are_enforced(gateway: Gateway) -> None:
    for who in (AUDITOR, REVIEWER):
        with pytest.raises(ForbiddenError):
            gateway.decide_sync(payment(), who)
    result = gateway.decide_sync(review_payment(), SERVICE)
    with pytest.raises(ForbiddenError):
        asyncio.run(gateway.review_claim(result["decision_id"], AUDITOR))
    with pytest.raises(ForbiddenError):
        asyncio.run(
            gateway.review(
                result["decision_id"],
                AUDITOR,
                {"outcome": "approve", "rationale": "looks fine to me", "label": "negative"},
            )
        )
    with pytest.raises(ForbiddenError):
        gateway.review_queue(SERVICE)
    # a service reads its own decisions only
    assert gateway.record(result["decision_id"], SERVICE)
    with pytest.raises(NotFoundError):
        gateway.record(result["decision_id"], OTHER_SERVICE)


def test_review_is_a_new_linked_entry_never_an_update(gateway: Gateway) -> None:
    result = gateway.decide_sync(review_payment(), SERVICE)
    decision_id = result["decision_id"]
    assert decision_id in [i["decision_id"] for i in gateway.review_queue(REVIEWER)]
    before = gateway.record(decision_id, AUDITOR)["entries"][0]
    asyncio.run(gateway.review_claim(decision_id, REVIEWER))
    done = asyncio.run(
        gateway.review(
            decision_id,
            REVIEWER,
            {
                "outcome": "decline",
                "rationale": "Customer confirmed the card was stolen.",
                "label": "positive",
            },
        )
    )
    entries = gateway.record(decision_id, AUDITOR)["entries"]
    assert entries[0] == before  # the decision entry is untouched
    assert [e["kind"] for e in entries] == ["decision", "review_claim", "review"]
    review = entries[2]["body"]
    assert review["reviewer"] == {"name": "rita-reviewer", "role": "reviewer"}
    assert review["reviews_entry"] == {"seq": before["seq"], "leaf_hash": before["leaf_hash"]}
    assert review["label"] == "positive" and review["stage"] == "final"
    assert done["audit_seq"] == entries[2]["seq"]
    assert decision_id not in [i["decision_id"] for i in gateway.review_queue(REVIEWER)]
    with pytest.raises(ConflictError, match="already reviewed by rita-reviewer"):
        asyncio.run(gateway.review_claim(decision_id, ADMIN))
    with pytest.raises(ConflictError, match="already reviewed by rita-reviewer"):
        asyncio.run(
            gateway.review(
                decision_id,
                ADMIN,
                {
                    "outcome": "approve",
                    "rationale": "Second opinion, approve.",
                    "label": "negative",
                },
            )
        )


def test_review_needs_a_rationale_and_a_queued_case(gateway: Gateway) -> None:
    queued = gateway.decide_sync(review_payment(), SERVICE)["decision_id"]
    asyncio.run(gateway.review_claim(queued, REVIEWER))
    with pytest.raises(RequestError, match="rationale"):
        asyncio.run(gateway.review(queued, REVIEWER, {"outcome": "approve", "label": "negative"}))
    with pytest.raises(RequestError, match="rationale"):
        asyncio.run(
            gateway.review(
                queued, REVIEWER, {"outcome": "approve", "rationale": "ok", "label": "negative"}
            )
        )
    with pytest.raises(RequestError, match="label"):
        asyncio.run(
            gateway.review(queued, REVIEWER, {"outcome": "approve", "rationale": "long enough"})
        )
    approved = gateway.decide_sync(payment(), SERVICE)["decision_id"]
    with pytest.raises(ConflictError, match="not waiting for review"):
        asyncio.run(
            gateway.review(
                approved,
                REVIEWER,
                {"outcome": "approve", "rationale": "nothing to review", "label": "negative"},
            )
        )


def test_policy_version_is_stored_content_addressed(gateway: Gateway) -> None:
    stored = gateway.store.get_blob(gateway.policy.version)
    assert stored == ("policy", EXAMPLE_POLICY.read_bytes())
    activations = [e for e in gateway.store.iter_entries() if e.kind == "policy"]
    assert activations[-1].body()["policy_version"] == gateway.policy.version


def test_failed_commit_gives_an_error_not_a_decision(data_dir: Path) -> None:
    gateway = Gateway.open(data_dir, EXAMPLE_POLICY)
    try:
        gateway.store.set_busy_timeout(50)  # type: ignore[attr-defined]
        blocker = sqlite3.connect(data_dir / "audit.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock: commits fail
        size = gateway.store.size()
        with pytest.raises(AuditCommitError):
            gateway.decide_sync(payment(), SERVICE)
        blocker.execute("ROLLBACK")
        blocker.close()
        assert gateway.store.size() == size
        after = gateway.decide_sync(payment(), SERVICE)  # the store recovers
        assert after["audit_seq"] == size
    finally:
        gateway.close()
    from warden.audit.tools import verify

    assert verify(data_dir).ok


def test_log_survives_restart_and_continues(data_dir: Path) -> None:
    with Gateway.open(data_dir, EXAMPLE_POLICY) as gw:
        first = gw.decide_sync(payment(), SERVICE)
    with Gateway.open(data_dir, EXAMPLE_POLICY) as gw:
        second = gw.decide_sync(payment(), SERVICE)
        assert second["audit_seq"] > first["audit_seq"]
        assert gw.record(first["decision_id"], AUDITOR)
    from warden.audit.tools import verify

    assert verify(data_dir).ok
