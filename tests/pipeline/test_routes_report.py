"""`verify_routes` counts, per jurisdiction, the requests refused for their data class: they
are requests of that jurisdiction that never reached a model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_POLICY, SERVICE, payment
from tests.helpers_llm import claim
from warden.endpoints.verify import routes_table, verify_routes
from warden.gateway import Gateway, RefusedError


def test_unknown_data_class_refusals_are_counted_apart(gateway: Gateway) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    gateway.decide_sync(payment(), SERVICE)
    gateway.decide_sync(payment(jurisdiction="US"), SERVICE)
    with pytest.raises(RefusedError) as caught:
        gateway.decide_sync({**payment(), "data_class": "secret-ish"}, SERVICE)
    assert caught.value.code == "residency.unknown_data_class"
    report = verify_routes(
        gateway.store, gateway.policy.policy, since, datetime.now(UTC) + timedelta(seconds=1)
    )
    eu = report.jurisdictions["EU"].as_dict()
    assert eu["requests"] == 2
    assert eu["refused_unknown_data_class"] == 1
    assert eu["refused_no_route"] == 0
    assert eu["model_calls"] == 0  # payment_fraud calls no model
    assert report.jurisdictions["US"].as_dict()["refused_unknown_data_class"] == 0
    assert report.ok
    rendered = " ".join(str(cell) for col in routes_table(report).columns for cell in col._cells)
    assert "1 / 0" in rendered
    assert "data class refused" in " ".join(str(c.header) for c in routes_table(report).columns)


def test_a_data_class_without_a_route_is_counted_apart(tmp_path: Path) -> None:
    """A jurisdiction whose routes take only personal data (the claim's default): a claim
    labelled internal has nowhere to go, is refused before any model call and counted."""
    text = EXAMPLE_POLICY.read_text()
    us_route = '{data_class: "*", decision_type: "*", endpoints: [llm-us-1]}'
    assert us_route in text
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        text.replace(us_route, us_route.replace('"*", decision_type', "personal, decision_type"))
    )
    since = datetime.now(UTC) - timedelta(seconds=1)
    with Gateway.open(tmp_path / "data", policy) as gateway:
        with pytest.raises(RefusedError) as caught:
            gateway.decide_sync({**claim("US"), "data_class": "internal"}, SERVICE)
        assert caught.value.code == "residency.no_route"
        report = verify_routes(
            gateway.store, gateway.policy.policy, since, datetime.now(UTC) + timedelta(seconds=1)
        )
    us = report.jurisdictions["US"].as_dict()
    assert (us["requests"], us["refused_no_route"], us["model_calls"]) == (1, 1, 0)


def test_the_table_stays_narrow_without_data_class_refusals(gateway: Gateway) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    gateway.decide_sync(payment(), SERVICE)
    report = verify_routes(
        gateway.store, gateway.policy.policy, since, datetime.now(UTC) + timedelta(seconds=1)
    )
    headers = [str(c.header) for c in routes_table(report).columns]
    assert len(headers) == 7 and not any("data class" in h for h in headers)
