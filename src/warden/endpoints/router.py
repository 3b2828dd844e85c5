"""The router: for a request's (jurisdiction, data class, decision type), the endpoints to
try in order, and for every endpoint not tried, why.

It only ever reads a `RoutePlan` compiled at policy load, whose `allowed` list holds no
endpoint outside the jurisdiction's zones; a `Routing` is built from that list alone, and
the chat client accepts nothing else, so a failover outside the list cannot be expressed.
Measured by `bench/bench_routing.py`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from warden.endpoints.board import HEALTH_OK, HEALTH_UNKNOWN
from warden.endpoints.breaker import Breaker
from warden.endpoints.health import Health
from warden.policy.model import Endpoint
from warden.policy.residency import RoutePlan, RouteTable

#: a failed health check older than this many check intervals is not believed any more
STALE_INTERVALS = 3.0


@dataclass(frozen=True)
class Skip:
    endpoint: str
    reason: str  # not_allowed | breaker_open | unhealthy
    detail: str = ""

    def as_record(self) -> dict[str, str]:
        return {"endpoint": self.endpoint, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True)
class Routing:
    plan: RoutePlan
    #: endpoints to try, in order: always a sub-sequence of `plan.allowed`
    candidates: tuple[str, ...]
    skipped: tuple[Skip, ...]

    def __post_init__(self) -> None:
        allowed = iter(self.plan.allowed)
        if not all(name in allowed for name in self.candidates):  # ordered sub-sequence
            raise ValueError("routing candidates must be a sub-sequence of the plan's list")


class Router:
    def __init__(self, table: RouteTable, health_interval: float = 2.0) -> None:
        self.table = table
        self.endpoints: dict[str, Endpoint] = dict(table.endpoints)
        self.breakers = {
            n: Breaker(n, e.breaker, probe_seconds=(e.timeout_ms + e.connect_timeout_ms) / 1000 + 1)
            for n, e in self.endpoints.items()
        }
        self.health = {n: Health() for n in self.endpoints}
        self.stale_after = health_interval * STALE_INTERVALS
        #: skip records for each plan's not-allowed endpoints, built once
        self._not_allowed: dict[int, tuple[Skip, ...]] = {}

    def route(self, plan: RoutePlan) -> Routing:
        now = time.monotonic()
        candidates: list[str] = []
        skipped: list[Skip] = []
        for name in plan.allowed:
            breaker = self.breakers[name]
            available = breaker.available(now)  # takes in the shared board first, if any
            shared = breaker.shared
            if shared is not None and shared.health != HEALTH_UNKNOWN:  # another worker's check
                self.health[name].adopt(shared.health == HEALTH_OK, shared.health_at)
            if not available:
                since = breaker.stamps.get("open_at")
                detail = f"open since {since}"
                if breaker.state == "half_open":  # cooled down; another call is its one probe
                    detail = f"half-open (opened {since}), its one probe call is out"
                skipped.append(Skip(name, "breaker_open", detail))
            elif self.health[name].unhealthy(now, self.stale_after):
                skipped.append(Skip(name, "unhealthy", str(self.health[name].error)))
            else:
                candidates.append(name)
        fixed = self._not_allowed.get(id(plan))
        if fixed is None:
            fixed = tuple(Skip(n, "not_allowed", why) for n, why in plan.not_allowed)
            self._not_allowed[id(plan)] = fixed
        return Routing(plan, tuple(candidates), (*skipped, *fixed))

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {
            n: {
                "region": e.region,
                "zone": e.zone,
                "breaker": self.breakers[n].snapshot(),
                "health": self.health[n].snapshot(),
            }
            for n, e in self.endpoints.items()
        }
