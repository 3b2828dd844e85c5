"""The outage test: concurrent mixed EU/US/UK claims through the Python API against real
simulator processes; the EU primary is killed mid-run (then the EU secondary too), and both
are restored. Judged from the upstreams' own access logs, not only from Warden's records:
no EU- or UK-labeled request reached a non-EU endpoint, EU requests failed over to the EU
secondary or went to review when none was left, and the breaker closed after recovery."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.conftest import SERVICE
from tests.helpers_llm import claim, start_world
from tests.helpers_upstream import upstreams  # noqa: F401  (fixture)
from warden.audit.completeness import check_completeness
from warden.endpoints.verify import verify_routes
from warden.gateway import Gateway, RefusedError

CONCURRENCY = 12
EU_ZONE_REGIONS = {"eu-west-1", "eu-central-1"}
# phases, in seconds from the start of the load; it runs until AFTER_RESTORE s after both
# simulators answer again
KILL_PRIMARY, KILL_SECONDARY, RESTORE, AFTER_RESTORE = 1.0, 2.0, 2.8, 3.5


async def load(gw: Gateway, started: float, stop: asyncio.Event, out: list[dict[str, Any]]) -> None:
    order = ["EU", "EU", "US", "UK", "EU"]
    i = 0
    while not stop.is_set():
        jurisdiction = order[i % len(order)]
        i += 1
        at = time.monotonic() - started
        try:
            result = await gw.decide(claim(jurisdiction, claim_amount=100.0 + i % 500), SERVICE)
            done = time.monotonic() - started
            out.append({"at": at, "done": done, "jurisdiction": jurisdiction, **result})
        except RefusedError as exc:
            out.append(
                {
                    "at": at,
                    "jurisdiction": jurisdiction,
                    "refused": exc.code,
                    "decision_id": exc.decision_id,
                }
            )


def test_primary_eu_endpoint_killed_mid_run_and_restored(upstreams: Any, tmp_path: Path) -> None:  # noqa: F811
    world = start_world(
        upstreams, tmp_path, **{n: {"latency_ms": 5} for n in ("llm-eu-1", "llm-eu-2", "llm-us-1")}
    )
    eu1, eu2 = world.upstreams["llm-eu-1"], world.upstreams["llm-eu-2"]
    t_start = datetime.now(UTC)
    results: list[dict[str, Any]] = []
    with Gateway.open(tmp_path / "data", world.policy) as gw:

        async def run() -> None:
            # health checks at the start and after the restore only: while the endpoints
            # are down the breaker alone takes them out (a check landing first would skip
            # the primary before three calls failed, and the breaker would never open)
            gw.endpoints.health_interval = 5.0
            gw.endpoints.start_health_checks()
            started = time.monotonic()
            stop = asyncio.Event()
            workers = [
                asyncio.create_task(load(gw, started, stop, results)) for _ in range(CONCURRENCY)
            ]
            await asyncio.sleep(KILL_PRIMARY)
            eu1.kill()
            phases["primary_killed"] = time.monotonic() - started
            await asyncio.sleep(KILL_SECONDARY - KILL_PRIMARY)
            phases["secondary_kill"] = time.monotonic() - started
            eu2.kill()
            phases["secondary_killed"] = time.monotonic() - started
            await asyncio.sleep(RESTORE - KILL_SECONDARY)
            phases["restore"] = time.monotonic() - started
            await asyncio.gather(asyncio.to_thread(eu1.restart), asyncio.to_thread(eu2.restart))
            phases["restored"] = time.monotonic() - started
            await asyncio.sleep(AFTER_RESTORE)
            stop.set()
            await asyncio.gather(*workers)
            await gw.endpoints.stop()

        phases: dict[str, float] = {}  # when each step actually happened (the VM is noisy)
        asyncio.run(run())
        breaker = gw.endpoints.router.breakers["llm-eu-1"]
        records = {
            e.decision_id: e.body()
            for e in gw.store.iter_entries()
            if e.kind in ("decision", "refusal")
        }
        report = verify_routes(
            gw.store,
            gw.policy.policy,
            t_start - timedelta(seconds=1),
            datetime.now(UTC) + timedelta(seconds=1),
            world.access_logs(),
        )
        completeness = check_completeness(gw.store, t_start.date(), grace_minutes=0)

    assert len(results) > 100, len(results)
    jurisdiction_of = {r["decision_id"]: r["jurisdiction"] for r in results}

    # 1. from the upstreams' own logs: EU/UK data only ever reached EU-zone endpoints
    logs = world.requests_by_region()
    for region, entries in logs.items():
        for entry in entries:
            jurisdiction = jurisdiction_of[entry["decision_id"]]
            if jurisdiction in ("EU", "UK"):
                assert region in EU_ZONE_REGIONS, (region, entry)
            else:
                assert region == "us-east-1", (region, entry)
    assert report.ok, report.violations[:3]
    assert report.access_log is not None and report.access_log["unknown_decision"] == []
    assert report.access_log["with_decision_id"] == sum(len(v) for v in logs.values())

    def served(result: dict[str, Any]) -> str | None:
        llm = next(
            g["result"] for g in records[result["decision_id"]]["gates"] if g["gate"] == "llm"
        )
        return None if llm.get("served_by") is None else llm["served_by"]["endpoint"]

    eu = [r for r in results if r["jurisdiction"] == "EU"]
    before = [r for r in eu if r["done"] < KILL_PRIMARY - 0.05]
    primary_down = [
        r for r in eu if phases["primary_killed"] < r["at"] and r["done"] < phases["secondary_kill"]
    ]
    none_left = [
        r for r in eu if phases["secondary_killed"] < r["at"] and r["done"] < phases["restore"]
    ]
    # the breaker re-closes within open_seconds (2 s) or at the next passing health check
    after = [r for r in eu if r["at"] > phases["restored"] + 2.5]
    assert before and primary_down and none_left and after
    assert all(served(r) == "llm-eu-1" for r in before)
    # 2. failover to the EU secondary while the primary is down ...
    assert all(served(r) == "llm-eu-2" for r in primary_down)
    eu2_ids = {e["decision_id"] for e in logs["eu-central-1"]}
    assert {r["decision_id"] for r in primary_down} <= eu2_ids
    # ... and review (EU: on_unavailable review) when no EU endpoint is left
    assert all(r["outcome"] == "review" and served(r) is None for r in none_left)
    assert all(r["stopped_by"]["code"] == "llm.unavailable" for r in none_left)
    # US was never affected; UK (route: EU secondary, then the in-process model) never left EU
    us = [r for r in results if r["jurisdiction"] == "US"]
    assert us and all(served(r) == "llm-us-1" for r in us)
    uk_down = [
        r
        for r in results
        if r["jurisdiction"] == "UK"
        and phases["secondary_killed"] < r["at"]
        and r["done"] < phases["restore"]
    ]
    assert uk_down and all(served(r) == "local-cautious" for r in uk_down)

    # 3. the breaker opened, probed and closed again after recovery; the primary serves again
    states = [s for s, _ in breaker.transitions]
    assert "open" in states and states[-1] == "closed" and breaker.state == "closed"
    assert all(served(r) == "llm-eu-1" for r in after)
    eu1_ids = [e["decision_id"] for e in logs["eu-west-1"]]
    assert {r["decision_id"] for r in after} <= set(eu1_ids)

    # every intent has its final record
    assert completeness.ok and completeness.pending == [] and completeness.complete > 100
