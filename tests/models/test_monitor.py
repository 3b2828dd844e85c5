"""Band monitoring: p-chart alerts (metric, log line, status), the bands report, and the
model routes over real HTTP."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from tests.conftest import REVIEWER, SERVICE, payment, review_payment
from tests.helpers_server import WardenServer
from warden.audit.tools import read_only
from warden.auth import KeyRing, Role
from warden.cli.main import app
from warden.demo.stream import StreamConfig, payment_requests, strip_truth
from warden.gateway import Gateway
from warden.models.monitor import BandMonitor, control_limit
from warden.models.thresholds import proposals


def _alert(decision_type: str) -> float | None:
    return REGISTRY.get_sample_value("warden_band_alert", {"decision_type": decision_type})


def test_a_rising_review_share_raises_an_alert(caplog: pytest.LogCaptureFixture) -> None:
    monitor = BandMonitor(window=200)
    monitor.set_expected("mon_a", 0.03)
    limit = control_limit(0.03, 200)
    assert 0.06 < limit < 0.07
    for i in range(400):  # 3 % review: in control
        monitor.observe("mon_a", "review" if i % 33 == 0 else "auto_approve")
    assert monitor.status()["mon_a"]["alert"] is False and _alert("mon_a") == 0
    with caplog.at_level(logging.WARNING, logger="warden.bands"):
        for i in range(200):  # 20 % review: shift
            monitor.observe("mon_a", "review" if i % 5 == 0 else "auto_approve")
    status = monitor.status()["mon_a"]
    assert status["alert"] is True and status["baseline_source"] == "thresholds"
    assert status["review_share"] > status["control_limit"] == pytest.approx(limit)
    assert _alert("mon_a") == 1
    assert [r.message for r in caplog.records if "band alert: mon_a" in r.message]
    for _ in range(200):
        monitor.observe("mon_a", "auto_approve")
    assert monitor.status()["mon_a"]["alert"] is False and _alert("mon_a") == 0


def test_without_thresholds_the_baseline_is_the_first_decisions() -> None:
    monitor = BandMonitor(window=100, baseline=300)
    for i in range(300):
        monitor.observe("mon_b", "review" if i % 10 == 0 else "auto_approve")
    status = monitor.status()["mon_b"]
    assert status["baseline_share"] == pytest.approx(0.1)
    assert status["review_share"] is None or status["window_filled"] == 0
    for _ in range(100):
        monitor.observe("mon_b", "review")
    assert monitor.status()["mon_b"]["alert"] is True


def test_bands_report_plots_review_share_overrides_and_agreement(
    gateway: Gateway, data_dir: Path, tmp_path: Path
) -> None:
    for request in payment_requests(400, StreamConfig(seed=11)):
        if request.get("jurisdiction"):
            gateway.decide_sync(strip_truth(request), SERVICE)
    queued = [gateway.decide_sync(review_payment(amount=900.0 + i), SERVICE) for i in range(4)]
    for i, response in enumerate(queued):
        asyncio.run(gateway.review_claim(response["decision_id"], REVIEWER))
        body = {
            "outcome": "approve",
            "rationale": "Customer confirmed the purchase by phone.",
            "label": "negative" if i else "positive",
        }
        asyncio.run(gateway.review(response["decision_id"], REVIEWER, body))
    gateway.close()
    out = tmp_path / "bands"
    result = CliRunner().invoke(
        app, ["bands", "report", "--window", "50", "--out", str(out), "--data-dir", str(data_dir)]
    )
    assert result.exit_code == 0, result.output
    for name in ("review_share.png", "reviewers.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert '"reviews": 4' in result.output
    # scores ≈ 0.64 lean to decline: approving all four overrides the score every time;
    # the one positive label agrees with it, the three negative ones do not
    assert '"override_rate": 1.0' in result.output
    assert '"label_agreement": 0.25' in result.output


def test_model_routes_over_http(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    ring = KeyRing(data / "keys.yaml")
    keys = {
        name: ring.create(name, role)
        for name, role in (
            ("ada-admin", Role.ADMIN),
            ("bo-admin", Role.ADMIN),
            ("al-auditor", Role.AUDITOR),
            ("svc", Role.SERVICE),
        )
    }
    calibrated = CliRunner().invoke(
        app,
        ["calibrate", "--api-key", keys["ada-admin"], "--rows", "3000",
         "--report", str(tmp_path / "report"), "--data-dir", str(data)],
    )  # fmt: skip
    assert calibrated.exit_code == 0, calibrated.output
    assert (tmp_path / "report" / "reliability.png").exists()
    assert (tmp_path / "report" / "cost.png").exists()
    assert (tmp_path / "report" / "bands.png").exists()
    with read_only(data) as store:
        (proposal,) = proposals(store)
    version = proposal["thresholds_version"]
    assert proposal["proposed_by"] == "ada-admin" and not proposal["active"]

    with WardenServer(data, tmp_path / "serve.log") as server:
        server.start()

        def h(name: str) -> dict[str, str]:
            return {"X-API-Key": keys[name]}

        listed = httpx.get(f"{server.url}/v1/thresholds", headers=h("al-auditor")).json()
        assert "proposals" in listed, listed
        assert [p["thresholds_version"] for p in listed["proposals"]] == [version]
        approve = f"{server.url}/v1/thresholds/{version}/approve"
        same = httpx.post(approve, headers=h("ada-admin"))
        assert same.status_code == 403 and same.json()["error"]["code"] == "thresholds.same_admin"
        assert httpx.post(approve, headers=h("al-auditor")).status_code == 403
        done = httpx.post(approve, headers=h("bo-admin"))
        assert done.status_code == 200, done.text
        decided = httpx.post(f"{server.url}/v1/decisions", json=payment(), headers=h("svc"))
        assert decided.json()["thresholds_version"] == version
        decision_id = decided.json()["decision_id"]
        url = f"{server.url}/v1/decisions/{decision_id}/reproduce"
        assert httpx.get(url, headers=h("svc")).status_code == 403
        reproduced = httpx.get(url, headers=h("al-auditor"), timeout=30).json()
        assert reproduced["identical"] is True and reproduced["thresholds_version"] == version
        monitor = httpx.get(f"{server.url}/v1/bands/monitor", headers=h("al-auditor")).json()
        status = monitor["decision_types"]["payment_fraud"]
        assert status["decisions_seen"] == 1 and status["baseline_source"] == "thresholds"
        missing = httpx.get(f"{server.url}/v1/decisions/nope/reproduce", headers=h("al-auditor"))
        assert missing.status_code == 404

        # calibrating while serving: over HTTP (the CLI needs the data directory to itself)
        url = f"{server.url}/v1/thresholds/calibrate"
        body = {"decision_type": "payment_fraud", "rows": 3000, "seed": 7}
        assert httpx.post(url, json=body, headers=h("al-auditor")).status_code == 403
        bad = httpx.post(url, json={**body, "rows": -1}, headers=h("bo-admin"))
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "rows"
        # the first calibration imports scikit-learn and matplotlib: slow on a loaded machine
        unknown = httpx.post(
            url, json={**body, "decision_type": "loans"}, headers=h("bo-admin"), timeout=60
        )
        assert unknown.status_code == 422 and "unknown decision type" in unknown.text
        second = httpx.post(url, json=body, headers=h("bo-admin"), timeout=60)
        assert second.status_code == 200, second.text
        assert second.json()["thresholds_version"] != version
        assert second.json()["summary"]["held_out_rows"] > 1000
        assert all(Path(p).exists() for p in second.json()["report"])
