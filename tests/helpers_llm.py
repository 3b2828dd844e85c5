"""The example policy pointed at real simulator processes on free ports: EU primary
(eu-west-1), EU secondary (eu-central-1), US (us-east-1)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import EXAMPLE_POLICY
from tests.helpers_upstream import Upstream
from warden.endpoints.rebase import rebase_endpoints

REGIONS = {"llm-eu-1": "eu-west-1", "llm-eu-2": "eu-central-1", "llm-us-1": "us-east-1"}


@dataclass
class World:
    upstreams: dict[str, Upstream]  # by endpoint name
    policy: Path

    def access_logs(self) -> list[Path]:
        return [u.access_log for u in self.upstreams.values()]

    def requests_by_region(self) -> dict[str, list[dict[str, Any]]]:
        return {u.region: u.access_log_entries() for u in self.upstreams.values()}


def start_world(
    upstreams: Callable[..., Upstream], tmp_path: Path, **opts: dict[str, Any]
) -> World:
    """`opts` by endpoint name, e.g. `{"llm-eu-1": {"latency_ms": 200}}`."""
    started = {name: upstreams(region, **opts.get(name, {})) for name, region in REGIONS.items()}
    raw = rebase_endpoints(
        EXAMPLE_POLICY.read_bytes(), {name: u.url for name, u in started.items()}
    )
    policy = tmp_path / "policy.yaml"
    policy.write_bytes(raw)
    return World(started, policy)


def claim(jurisdiction: str = "EU", **overrides: Any) -> dict[str, Any]:
    inputs: dict[str, Any] = {
        "policy_number": "P-204518",
        "claim_type": "device",
        "claim_amount": 420.0,
        "currency": {"US": "USD", "UK": "GBP"}.get(jurisdiction, "EUR"),
        "description": "I dropped my phone and the screen cracked; the repair costs 420.",
    }
    inputs.update(overrides)
    return {"decision_type": "claims_triage", "jurisdiction": jurisdiction, "inputs": inputs}
