"""The example policy pointed at real simulator processes on free ports: EU primary
(eu-west-1), EU secondary (eu-central-1), US (us-east-1)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import EXAMPLE_POLICY
from tests.helpers_server import WardenServer, create_key
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


@contextlib.contextmanager
def served_world(
    upstreams: Callable[..., Upstream],
    tmp_path: Path,
    *,
    workers: int = 1,
    **opts: dict[str, Any],
) -> Iterator[tuple[World, WardenServer, str, str]]:
    """`start_world`, then `warden serve` on its policy with a service key and an auditor
    key: (world, server, service key, auditor key)."""
    world = start_world(upstreams, tmp_path, **opts)
    data_dir = tmp_path / "data"
    key = create_key(data_dir, "svc", "service")
    auditor = create_key(data_dir, "aldo", "auditor")
    with WardenServer(
        data_dir, tmp_path / "server.log", policy=world.policy, workers=workers
    ) as server:
        server.start(timeout=20 if workers == 1 else 60)
        yield world, server, key, auditor
