"""The band monitor's seeding at start-up (`warden.baselines`) with a real scored policy,
model and activated thresholds: a restart continues the chart of the same model and
thresholds, a new model behind the alias starts it over, and decisions made while the
active thresholds are stale for the model still belong to the active version's chart."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from tests.conftest import ADMIN, SERVICE, payment
from tests.models.conftest import SMALL
from warden.auth import Principal, Role
from warden.gateway import Gateway
from warden.models.calibrate import calibrate
from warden.models.policies import SCORED_POLICY
from warden.models.registry import ModelRegistry
from warden.models.serving import train_and_register

SECOND_ADMIN = Principal("bo-second-admin", Role.ADMIN)
RISKY = {"is_new_device": True, "amount": 900.0, "merchant_category": "5732"}


def test_a_restart_continues_the_chart_of_the_same_model_and_thresholds(
    data_dir: Path, registry: ModelRegistry, tmp_path: Path
) -> None:
    name = "fraud-seeding"  # this test's own model: other tests' aliases do not move
    policy = tmp_path / "policy.yaml"
    policy.write_text(SCORED_POLICY.read_text().replace("fraud-lgbm@champion", f"{name}@champion"))
    train_and_register(registry, name, ("champion",), SMALL)
    with Gateway.open(data_dir, policy, registry=registry) as gw:
        result = calibrate(gw.policy, gw.models, gw.store, "payment_fraud", generator_rows=4000)
        proposed = asyncio.run(gw.propose_thresholds(ADMIN, result.document, result.summary))
        asyncio.run(gw.approve_thresholds(str(proposed["thresholds_version"]), SECOND_ADMIN))
        first = [gw.decide_sync(payment(**(RISKY if i % 2 else {})), SERVICE) for i in range(6)]
        assert all(d["thresholds_version"] == proposed["thresholds_version"] for d in first)

    with Gateway.open(data_dir, policy, registry=registry) as gw:
        history = gw.recent_history()
        assert history.outcomes["payment_fraud"] == [d["outcome"] for d in first]
        assert "payment_fraud" not in history.lengths  # no model call, no answers
        gw.seed_windows(history)
        status = gw.monitor.status()["payment_fraud"]
        assert status["decisions_seen"] == 6 and status["baseline_source"] == "thresholds"

    # a new model behind the alias: the active thresholds are stale for it
    train_and_register(registry, name, ("champion",), replace(SMALL, seed=SMALL.seed + 1))
    with Gateway.open(data_dir, policy, registry=registry) as gw:
        assert "payment_fraud" not in gw.recent_history().outcomes  # a new chart
        later = [gw.decide_sync(payment(), SERVICE) for _ in range(3)]
        decision = gw.store.entries_for(later[-1]["decision_id"])[-1].body()
        bands = next(g["result"] for g in decision["gates"] if g["gate"] == "bands")
        assert bands["stale_thresholds_version"] == proposed["thresholds_version"]

    with Gateway.open(data_dir, policy, registry=registry) as gw:
        # the stale-thresholds decisions of the new model, not the old model's
        assert gw.recent_history().outcomes["payment_fraud"] == [d["outcome"] for d in later]
