"""The endpoints of one loaded policy at run time: the router (breakers, health), the
pooled chat client, and the health-check loop."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from warden.endpoints.board import BreakerBoard
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

    async def check_health(self) -> None:
        router = self.router
        names = list(router.endpoints)
        results = await asyncio.gather(
            *(check(self.client.pool(), router.endpoints[n], router.health[n]) for n in names)
        )
        for name, ok in zip(names, results, strict=True):
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
