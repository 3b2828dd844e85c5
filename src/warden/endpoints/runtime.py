"""The endpoints of one loaded policy at run time: the router (breakers, health), the
pooled chat client, and the health-check loop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from warden.endpoints.board import HEALTH_OK, HEALTH_UNKNOWN, BreakerBoard
from warden.endpoints.client import ChatClient
from warden.endpoints.health import check, run_checks
from warden.endpoints.router import Router
from warden.policy.residency import RouteTable


class EndpointRuntime:
    def __init__(self, table: RouteTable, *, health_interval: float = 2.0) -> None:
        self.router = Router(table, health_interval)
        self.client = ChatClient(self.router)
        self.health_interval = health_interval
        self._task: asyncio.Task[None] | None = None

    def share_breakers(self, board: BreakerBoard) -> None:
        """Publish and adopt breaker transitions through `board` (the other workers')."""
        for name, breaker in self.router.breakers.items():
            breaker.board = board.slot(name)

    def _checked_elsewhere(self, name: str, now: float) -> bool:
        """Another worker checked `name` within this interval: take its result instead of
        sending one more check (N workers send about one check per interval, not N)."""
        slot = self.router.breakers[name].board
        if slot is None:
            return False
        shared = slot.read()
        health = self.router.health[name]
        checked = shared.health != HEALTH_UNKNOWN
        newer = checked and shared.health_at > health.checked_at  # not this one's own
        if not newer or now - shared.health_at >= 0.9 * self.health_interval:
            return False
        health.adopt(shared.health == HEALTH_OK, shared.health_at)
        return True

    async def check_health(self) -> None:
        router = self.router
        now = time.monotonic()
        names = [n for n in router.endpoints if not self._checked_elsewhere(n, now)]
        results = await asyncio.gather(
            *(check(self.client.pool(), router.endpoints[n], router.health[n]) for n in names)
        )
        for name, ok in zip(names, results, strict=True):
            if ok is None:  # one timeout: inconclusive, nothing to share or act on
                continue
            breaker = router.breakers[name]
            if breaker.board is not None:  # the other workers take in this check too
                breaker.board.publish_health(ok, router.health[name].checked_at)
            if ok:
                breaker.probe_now()

    def start_health_checks(self) -> None:
        """Start the periodic checks on the running loop (the server's lifespan)."""
        if self._task is None and self.router.endpoints:
            self._task = asyncio.get_running_loop().create_task(
                run_checks(self, self.health_interval)
            )

    async def stop(self) -> None:
        """Stop what belongs to the running loop: its connection pool, and the health
        checks if they were started on it (a `decide_sync` loop must not cancel the
        server's checks, which run on another loop)."""
        task = self._task
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._task = None
        await self.client.aclose()

    def snapshot(self) -> dict[str, Any]:
        return self.router.snapshot()
