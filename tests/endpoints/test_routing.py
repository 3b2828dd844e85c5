"""Residency routing without any network: policy validation at load (a policy with a typo
is refused, naming file:line and key path), the circuit breaker's states, and the router:
only allowed endpoints are ever candidates, skipped ones say why."""

from __future__ import annotations

import re
import time

import pytest

from tests.conftest import EXAMPLE_POLICY
from warden.endpoints.breaker import Breaker
from warden.endpoints.router import Router, Routing
from warden.errors import PolicyError
from warden.policy.loader import load_policy_bytes, load_policy_file
from warden.policy.model import BreakerSettings

RAW = EXAMPLE_POLICY.read_text()


def load_edited(old: str, new: str) -> None:
    assert RAW.count(old) == 1, old
    load_policy_bytes(RAW.replace(old, new).encode(), source="policy.yaml")


def line_of(text: str) -> int:
    return RAW[: RAW.index(text)].count("\n") + 1


EU_ROUTE = "endpoints: [llm-eu-1, llm-eu-2]}"


def test_a_route_naming_an_unknown_endpoint_is_refused_with_line_and_key_path() -> None:
    with pytest.raises(PolicyError) as caught:
        load_edited(EU_ROUTE, "endpoints: [llm-eu-1, llm-eu2]}")
    line = line_of(EU_ROUTE)
    assert caught.value.message.startswith(
        f"policy.yaml:{line}: residency.EU.routes[0].endpoints[1]: unknown endpoint 'llm-eu2' "
        "(did you mean 'llm-eu-2'?)"
    ), caught.value.message


def test_a_route_to_an_endpoint_outside_the_allowed_zones_is_refused() -> None:
    with pytest.raises(PolicyError) as caught:
        load_edited(EU_ROUTE, "endpoints: [llm-eu-1, llm-us-1]}")
    assert re.match(
        r"policy\.yaml:\d+: residency\.EU\.routes\[0\]\.endpoints\[1\]: endpoint 'llm-us-1' is in "
        r"zone US, which EU does not allow \(allowed_zones: EU\)",
        caught.value.message,
    ), caught.value.message


def test_a_route_for_a_data_class_the_endpoint_may_not_receive_is_refused() -> None:
    raw = RAW.replace(
        '      - {data_class: "*", decision_type: "*", endpoints: [llm-us-1]}',
        '      - {data_class: "*", decision_type: "*", endpoints: [llm-us-1]}\n'
        "      - {data_class: personal, decision_type: claims_triage, endpoints: [llm-us-1]}",
    )
    # llm-us-1 may receive public and internal data only
    block = raw[raw.index("  llm-us-1:") : raw.index("  local-cautious:")]
    raw = raw.replace(
        block,
        block.replace(
            "data_classes: [public, internal, confidential, personal]",
            "data_classes: [public, internal]",
        ),
    )
    with pytest.raises(PolicyError) as caught:
        load_policy_bytes(raw.encode(), source="policy.yaml")
    assert (
        "residency.US.routes[1].endpoints[0]: endpoint 'llm-us-1' may not receive 'personal' "
        "data (its data_classes: public, internal)"
    ) in caught.value.message


def test_unknown_keys_and_bad_values_in_endpoints_name_the_key_path() -> None:
    with pytest.raises(PolicyError) as caught:
        load_edited("    transfer_basis: dpf\n", "    transfer_basis: dfp\n")
    assert "endpoints.llm-us-1.transfer_basis: Input should be" in caught.value.message
    with pytest.raises(PolicyError) as caught:
        load_edited("    transfer_basis: dpf\n", "    transfer_basis: dpf\n    zones: [US]\n")
    assert "endpoints.llm-us-1.zones: unknown key 'zones' (did you mean 'zone'?)" in str(
        caught.value.message
    )


def test_a_model_calling_type_with_no_route_in_a_jurisdiction_is_refused() -> None:
    with pytest.raises(PolicyError) as caught:
        load_edited(
            '      - {data_class: "*", decision_type: "*", endpoints: [llm-us-1]}',
            '      - {data_class: public, decision_type: "*", endpoints: [llm-us-1]}',
        )
    assert "residency.US.routes: no route for decision type" in caught.value.message


def test_route_plans_hold_only_allowed_endpoints_and_say_why_others_are_not() -> None:
    policy = load_policy_file(EXAMPLE_POLICY)
    table = policy.routes
    assert table.version.startswith("sha256:") and table.version != policy.version
    for (jurisdiction, _, _), plan in table.plans.items():
        zones = policy.policy.residency[jurisdiction].allowed_zones
        assert plan.allowed and all(table.endpoints[n].zone in zones for n in plan.allowed)
        assert {n for n, _ in plan.not_allowed} == set(table.endpoints) - set(plan.allowed)
    eu = table.plan("EU", "personal", "claims_triage")
    assert eu is not None and eu.allowed == ("llm-eu-1", "llm-eu-2")
    assert dict(eu.not_allowed)["llm-us-1"] == "zone US not allowed"
    assert table.plan("EU", "personal", "payment_fraud") is None  # no model calls


def test_more_specific_routes_win() -> None:
    raw = RAW.replace(
        '      - {data_class: "*", decision_type: "*", endpoints: [llm-eu-1, llm-eu-2]}',
        '      - {data_class: "*", decision_type: "*", endpoints: [llm-eu-1, llm-eu-2]}\n'
        "      - {data_class: public, decision_type: claims_triage, endpoints: [local-cautious]}\n"
        '      - {data_class: "*", decision_type: claims_triage, endpoints: [llm-eu-2]}',
    )
    table = load_policy_bytes(raw.encode()).routes
    plan = table.plan
    assert plan("EU", "public", "claims_triage").allowed == ("local-cautious",)  # type: ignore[union-attr]
    assert plan("EU", "personal", "claims_triage").allowed == ("llm-eu-2",)  # type: ignore[union-attr]
    assert plan("EU", "personal", "assistant_chat").allowed == ("llm-eu-1", "llm-eu-2")  # type: ignore[union-attr]


def test_breaker_opens_after_consecutive_failures_half_opens_and_closes() -> None:
    breaker = Breaker("x", BreakerSettings(failure_threshold=2, open_seconds=5))
    assert breaker.acquire(now=0)
    breaker.record_failure(now=0)
    assert breaker.state == "closed" and breaker.acquire(now=0)
    breaker.record_failure(now=1)
    assert breaker.state == "open" and breaker.times_opened == 1
    assert not breaker.available(now=5.9) and not breaker.acquire(now=5.9)
    assert breaker.available(now=6.0)
    assert breaker.acquire(now=6.0) and breaker.state == "half_open"
    assert not breaker.acquire(now=6.0), "only one probe at a time"
    breaker.record_failure(now=6.5)
    assert breaker.state == "open" and breaker.times_opened == 2
    assert breaker.acquire(now=11.5)
    breaker.record_success()
    assert breaker.state == "closed" and breaker.consecutive_failures == 0
    snap = breaker.snapshot()
    assert snap["failures"] == 3 and snap["successes"] == 1
    assert {"open_at", "half_open_at", "closed_at", "last_failure_at"} <= set(snap)
    assert [s for s, _ in breaker.transitions] == [
        "open",
        "half_open",
        "open",
        "half_open",
        "closed",
    ]


def test_router_skips_open_breakers_and_unhealthy_endpoints_never_adds_others() -> None:
    policy = load_policy_file(EXAMPLE_POLICY)
    router = Router(policy.routes)
    plan = policy.routes.plan("EU", "personal", "claims_triage")
    assert plan is not None
    routing = router.route(plan)
    assert routing.candidates == ("llm-eu-1", "llm-eu-2")
    assert {s.endpoint: s.reason for s in routing.skipped} == {
        "llm-us-1": "not_allowed",
        "local-cautious": "not_allowed",
    }
    for _ in range(3):
        router.breakers["llm-eu-1"].record_failure()
    routing = router.route(plan)
    assert routing.candidates == ("llm-eu-2",)
    assert routing.skipped[0].endpoint == "llm-eu-1" and routing.skipped[0].reason == "breaker_open"
    health = router.health["llm-eu-2"]
    health.healthy, health.checked_at, health.error = False, time.monotonic(), "ConnectError"
    routing = router.route(plan)
    assert routing.candidates == ()  # nothing left: never an endpoint from outside the list
    assert [s.reason for s in routing.skipped[:2]] == ["breaker_open", "unhealthy"]
    with pytest.raises(ValueError):
        Routing(plan, ("llm-us-1",), ())
    with pytest.raises(ValueError):
        Routing(plan, ("llm-eu-2", "llm-eu-1"), ())  # not in the plan's order either
