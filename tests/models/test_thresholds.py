"""Calibrate, propose, approve by a second admin; decisions use and record the version."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ADMIN, EXAMPLE_POLICY, REVIEWER, SERVICE, payment
from warden.auth import Principal, Role
from warden.errors import ConflictError, ForbiddenError
from warden.gateway import Gateway
from warden.models.calibrate import calibrate, generator_outcomes
from warden.models.policies import SCORED_POLICY
from warden.models.registry import ModelRegistry

SECOND_ADMIN = Principal("bo-second-admin", Role.ADMIN)


def _propose(gw: Gateway, rows: int = 6000) -> tuple[str, Any]:
    result = calibrate(gw.policy, gw.models, gw.store, "payment_fraud", generator_rows=rows)
    proposed = asyncio.run(gw.propose_thresholds(ADMIN, result.document, result.summary))
    return str(proposed["thresholds_version"]), result


def test_maker_checker_activation_and_decisions_record_the_version(
    scored_gateway: Gateway, data_dir: Path, registry: ModelRegistry
) -> None:
    gw = scored_gateway
    static = gw.decide_sync(payment(), SERVICE)["thresholds_version"]
    version, result = _propose(gw)
    assert result.summary["ece_calibrated"] <= result.summary["ece_raw"] + 1e-9
    assert result.document["fitted_for"]["model_sha256"] == gw.models["fraud-lgbm@champion"].sha256
    # proposing changes nothing yet
    assert gw.decide_sync(payment(), SERVICE)["thresholds_version"] == static
    with pytest.raises(ForbiddenError, match="second admin") as same:
        asyncio.run(gw.approve_thresholds(version, ADMIN))
    assert same.value.code == "thresholds.same_admin"
    with pytest.raises(ForbiddenError):
        asyncio.run(gw.approve_thresholds(version, REVIEWER))
    with pytest.raises(ForbiddenError):
        asyncio.run(gw.propose_thresholds(REVIEWER, result.document, result.summary))
    activated = asyncio.run(gw.approve_thresholds(version, SECOND_ADMIN))
    assert activated["replaces"] is None
    with pytest.raises(ConflictError, match="already active"):
        asyncio.run(gw.approve_thresholds(version, SECOND_ADMIN))

    response = gw.decide_sync(payment(), SERVICE)
    assert response["thresholds_version"] == version
    record = gw.record(response["decision_id"], ADMIN)["entries"][0]["body"]
    bands = next(g["result"] for g in record["gates"] if g["gate"] == "bands")
    assert bands["calibration"] == "platt"  # 6,000 rows hold ~36 fraud cases in the fit half
    assert bands["thresholds"] == result.document["bands"]
    assert bands["score"] != bands["raw_score"] or bands["raw_score"] == 0

    entries = gw.store.entries_of_kind("thresholds")
    assert [e.body()["action"] for e in entries] == ["proposed", "activated"]
    assert entries[0].body()["proposed_by"]["name"] == ADMIN.name
    assert entries[1].body()["approved_by"]["name"] == SECOND_ADMIN.name
    assert entries[1].body()["proposal"]["seq"] == entries[0].seq
    gw.close()
    # the activation is read back from the audit log when the gateway opens again
    with Gateway.open(data_dir, SCORED_POLICY, registry=registry) as again:
        assert again.decide_sync(payment(), SERVICE)["thresholds_version"] == version


def test_thresholds_fitted_for_another_model_are_not_applied(
    scored_gateway: Gateway, tmp_path: Path
) -> None:
    version, result = _propose(scored_gateway)
    # the same document activated where no model scores: it does not fit, so it is stale
    with Gateway.open(tmp_path / "rules-only", EXAMPLE_POLICY) as gateway:
        proposed = asyncio.run(gateway.propose_thresholds(ADMIN, result.document, result.summary))
        assert proposed["thresholds_version"] == version
        asyncio.run(gateway.approve_thresholds(version, SECOND_ADMIN))
        response = gateway.decide_sync(payment(), SERVICE)
        record = gateway.record(response["decision_id"], ADMIN)["entries"][0]["body"]
    bands = next(g["result"] for g in record["gates"] if g["gate"] == "bands")
    assert bands["stale_thresholds_version"] == version
    assert bands["calibration"] == "none" and response["thresholds_version"] != version


def test_generator_scores_are_the_decide_gates(scored_gateway: Gateway) -> None:
    from warden.demo.stream import StreamConfig, payment_requests, strip_truth

    compiled = scored_gateway.policy.decision_types["payment_fraud"]
    model = scored_gateway.models["fraud-lgbm@champion"]
    batch = generator_outcomes(compiled, model, 60, 77)
    gate_scores = []
    for request in payment_requests(60, StreamConfig(seed=77)):
        if not request.get("jurisdiction"):
            continue
        response = scored_gateway.decide_sync(strip_truth(request), SERVICE)
        record = scored_gateway.record(response["decision_id"], ADMIN)["entries"][0]["body"]
        gate_scores.append(
            next(g["result"] for g in record["gates"] if g["gate"] == "decide")["score"]
        )
    assert batch.scores == gate_scores


def test_reviewer_labels_join_the_calibration_data(scored_gateway: Gateway) -> None:
    gw = scored_gateway
    queued = []
    for amount in (900.0, 950.0, 1200.0):
        request = payment(is_new_device=True, amount=amount, merchant_category="5732")
        response = gw.decide_sync(request, SERVICE)
        assert response["outcome"] == "review"
        queued.append(response["decision_id"])
    for i, decision_id in enumerate(queued):
        asyncio.run(gw.review_claim(decision_id, REVIEWER))
        label = "positive" if i == 0 else "negative"
        outcome = "decline" if i == 0 else "approve"
        asyncio.run(
            gw.review(
                decision_id,
                REVIEWER,
                {"outcome": outcome, "rationale": "Checked with the cardholder.", "label": label},
            )
        )
    result = calibrate(gw.policy, gw.models, gw.store, "payment_fraud", generator_rows=3000)
    assert result.summary["sources"]["reviewer"] == 3
    assert result.document["fitted_on"]["reviewer_labels"] == 3


def test_calibrate_writes_its_report_and_a_failed_report_commits_nothing(
    scored_gateway: Gateway, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report is written before the proposal is committed and moved into place after:
    a report that fails half-way leaves neither a proposal nor report files."""
    gw = scored_gateway
    done = asyncio.run(gw.calibrate_thresholds(ADMIN, "payment_fraud", rows=3000))
    reports = data_dir / "reports"
    assert done["report"] and all(Path(p).is_file() for p in done["report"])
    assert {Path(p).parent for p in done["report"]} == {reports / done["thresholds_version"][7:19]}
    assert [p.name for p in reports.iterdir()] == [done["thresholds_version"][7:19]]
    size = gw.store.size()

    import warden.models.report as report

    def half_then_fail(result: Any, out: Path) -> list[Path]:
        out.mkdir(parents=True, exist_ok=True)
        (out / "reliability.png").write_bytes(b"half")
        raise OSError("No space left on device")

    monkeypatch.setattr(report, "write_calibration_report", half_then_fail)
    with pytest.raises(OSError, match="No space"):
        asyncio.run(gw.calibrate_thresholds(ADMIN, "payment_fraud", rows=3100))
    assert gw.store.size() == size  # no proposal
    assert [p.name for p in reports.iterdir()] == [done["thresholds_version"][7:19]]
