from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from warden.auth import Principal, Role

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_POLICY = ROOT / "examples" / "policy.yaml"

SERVICE = Principal("svc-payments", Role.SERVICE)
OTHER_SERVICE = Principal("svc-other", Role.SERVICE)
REVIEWER = Principal("rita-reviewer", Role.REVIEWER)
AUDITOR = Principal("aldo-auditor", Role.AUDITOR)
ADMIN = Principal("ada-admin", Role.ADMIN)

CLEAN_INPUTS: dict[str, Any] = {
    "amount": 42.17,
    "currency": "EUR",
    "merchant_category": "5411",
    "merchant_country": "DE",
    "card_country": "DE",
    "channel": "pos",
    "customer_id": "c-000123",
    "account_age_days": 812,
    "txn_count_1h": 1,
    "txn_count_24h": 4,
    "amount_sum_24h": 131.5,
    "is_new_device": False,
    "distance_from_home_km": 3.2,
}


def payment(jurisdiction: str | None = "EU", **overrides: Any) -> dict[str, Any]:
    """A payment_fraud request; keyword overrides change inputs."""
    inputs = copy.deepcopy(CLEAN_INPUTS)
    inputs.update(overrides)
    request: dict[str, Any] = {"decision_type": "payment_fraud", "inputs": inputs}
    if jurisdiction is not None:
        request["jurisdiction"] = jurisdiction
    return request


#: a request that the example policy sends to review (new device, high value, electronics)
def review_payment(**overrides: Any) -> dict[str, Any]:
    base = {"is_new_device": True, "amount": 900.0, "merchant_category": "5732"}
    base.update(overrides)
    return payment(**base)


def decline_payment() -> dict[str, Any]:
    return payment(merchant_country="KP")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def gateway(data_dir: Path) -> Iterator[Any]:
    from warden.gateway import Gateway

    gw = Gateway.open(data_dir, EXAMPLE_POLICY)
    try:
        yield gw
    finally:
        gw.close()
