"""Health checks: a GET on each HTTP endpoint's health URL (default `<base_url>/models`)
every few seconds. An endpoint whose last check failed, and is recent, is skipped as
`unhealthy`; a passing check lets an open breaker probe at once.

A refused connection or an error status fails at once. A check that only *times out* right after
a passing one is inconclusive: the endpoint stays routable and nothing is shared with the
other workers; the next timeout in a row fails it. On a loaded machine one slow answer to
a GET is not an outage, and taking it for one sent every request of a jurisdiction to its
secondary — or to review when that check was slow too. Calls that really fail still open
the endpoint's breaker after its `failure_threshold`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from warden.audit.sqlite_store import utc_now
from warden.endpoints.http1 import Http1Pool, HttpError, Origin
from warden.policy.model import Endpoint

#: checks in a row that time out before a healthy endpoint counts as unhealthy
TIMEOUTS_BEFORE_UNHEALTHY = 2


def health_target(endpoint: Endpoint) -> tuple[Origin, str] | None:
    """(origin, path) to GET: `health_url`, or `<base_url>/models` (before any query)."""
    if endpoint.kind != "openai_chat":
        return None
    if endpoint.health_url:
        return Origin.parse(endpoint.health_url), ""
    assert endpoint.base_url is not None
    return Origin.parse(endpoint.base_url), "/models"


@dataclass
class Health:
    healthy: bool | None = None  # None: never checked
    checked_at: float = 0.0  # monotonic
    checked_at_utc: str | None = None
    error: str | None = None
    checks: int = 0
    failed_checks: int = 0
    #: checks by other workers taken in (shared breaker board)
    adopted: int = 0
    #: this worker's checks in a row that timed out (0 after any other outcome)
    timeouts_in_a_row: int = 0
    #: timed-out checks that did not make the endpoint unhealthy on their own
    forgiven_timeouts: int = 0

    def unhealthy(self, now: float, stale_after: float) -> bool:
        """Failed its last check, and that check is recent enough to believe."""
        return self.healthy is False and now - self.checked_at <= stale_after

    def adopt(self, ok: bool, checked_at: float) -> None:
        """A newer check by another worker (`warden serve --workers N`) is this endpoint's
        health too; it is not counted among this worker's own checks."""
        if checked_at > self.checked_at:
            self.healthy, self.checked_at = ok, checked_at
            if ok:  # a pass anywhere ends a run of timeouts here
                self.timeouts_in_a_row = 0
            self.error = None if ok else "failed a health check by another worker"
            self.checked_at_utc = utc_now()
            self.adopted += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "checked_at": self.checked_at_utc,
            "error": self.error,
            "checks": self.checks,
            "failed_checks": self.failed_checks,
            "adopted": self.adopted,
            "timeouts_in_a_row": self.timeouts_in_a_row,
            "forgiven_timeouts": self.forgiven_timeouts,
        }


async def check(pool: Http1Pool, endpoint: Endpoint, health: Health) -> bool | None:
    """Check `endpoint` once and update `health`: True (passed), False (failed: unhealthy
    now), or None (one timeout after a passing check: inconclusive, health unchanged)."""
    if endpoint.kind != "openai_chat":
        health.healthy, health.error = True, None
        return True
    ok, error, timed_out = False, None, False
    connect = endpoint.connect_timeout_ms / 1000
    try:
        target = health_target(endpoint)
        assert target is not None
        response = await pool.request(
            "GET", *target, timeout=connect + 1.0, connect_timeout=connect
        )
        ok = response.status == 200
        error = None if ok else f"http_{response.status}"
    except TimeoutError as exc:
        error, timed_out = type(exc).__name__, True
    except (HttpError, ValueError) as exc:
        error = type(exc).__name__
    health.checks += 1
    health.failed_checks += not ok
    health.timeouts_in_a_row = health.timeouts_in_a_row + 1 if timed_out else 0
    if timed_out and health.healthy is True:
        if health.timeouts_in_a_row < TIMEOUTS_BEFORE_UNHEALTHY:
            # inconclusive: `checked_at` stays the passing check's, so a failure another
            # worker found meanwhile is still newer and is taken in
            health.forgiven_timeouts += 1
            health.error = (
                f"{error} ({health.timeouts_in_a_row} in a row; unhealthy at "
                f"{TIMEOUTS_BEFORE_UNHEALTHY})"
            )
            return None
        error = f"{error} ({health.timeouts_in_a_row} in a row)"
    health.checked_at, health.checked_at_utc = time.monotonic(), utc_now()
    health.healthy, health.error = ok, error
    return ok


async def run_checks(runtime: Any, interval: float) -> None:
    """Check every endpoint every `interval` seconds until cancelled."""
    while True:
        with contextlib.suppress(Exception):
            await runtime.check_health()
        await asyncio.sleep(interval)
