"""A circuit breaker per endpoint: closed → open after `failure_threshold` consecutive
failures → half-open after `open_seconds` (one probe call at a time) → closed on the
probe's success, open again on its failure. Counts and timestamps are kept for the
record and for `/metrics`-style inspection.

Only the probe's own outcome moves a breaker that is not closed: a call let through while
it was closed may end after it opened, or while the probe is out, and its answer then is
news from before the breaker opened. So `admit` hands each call a permit (0 for a call
while closed, the probe's number in half-open) and the outcome is reported with it.

Under `warden serve --workers N` each breaker also has a slot on the workers' shared
`BreakerBoard` (`warden.endpoints.board`): its own transitions are published there, the
other workers' adopted before each routing decision, and the half-open probe is one for all
workers."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from warden import metrics
from warden.audit.sqlite_store import utc_now
from warden.endpoints.board import CLOSED, OPEN, BoardSlot, SlotState
from warden.policy.model import BreakerSettings

State = Literal["closed", "open", "half_open"]
_GAUGE = {"closed": 0, "half_open": 1, "open": 2}


@dataclass
class Breaker:
    name: str
    settings: BreakerSettings
    state: State = "closed"
    consecutive_failures: int = 0
    failures: int = 0
    successes: int = 0
    times_opened: int = 0
    opened_at: float = 0.0  # monotonic
    probe_in_flight: bool = False
    #: the number of the latest half-open probe let through (its permit)
    probes: int = 0
    #: wall-clock timestamps of the last transitions and outcomes
    stamps: dict[str, str] = field(default_factory=dict)
    #: (state, utc) for every transition, newest last (bounded)
    transitions: list[tuple[str, str]] = field(default_factory=list)
    #: the slot shared with the other workers (None: this process alone)
    board: BoardSlot | None = None
    #: how long a half-open probe may hold the shared slot (the endpoint's timeouts)
    probe_seconds: float = 30.0
    #: transitions adopted from the other workers
    adopted: int = 0
    _seen: int = 0  # the board generation this breaker has taken in
    _claimed: int = 0  # the board generation its half-open probe's claim wrote
    #: the slot as last read (the router takes the shared health check from it)
    shared: SlotState | None = None

    def _sync(self) -> None:
        """Take in what another worker published since this breaker last looked."""
        board = self.board
        if board is None or board.generation() == self._seen:
            return
        shared = self.shared = board.read()
        self._seen = shared.generation
        if shared.state == OPEN:
            if self.state == "closed" or shared.opened_at != self.opened_at:
                self.opened_at = shared.opened_at
                if self.state != "open" and not self.probe_in_flight:
                    self.adopted += 1
                    self._move("open")
        elif shared.state == CLOSED and shared.generation and self.state != "closed":
            self.consecutive_failures = 0
            self.probe_in_flight = False
            self.adopted += 1
            self._move("closed")

    def available(self, now: float | None = None) -> bool:
        """Whether a call may be tried now (no side effect; `acquire` takes the slot)."""
        now = time.monotonic() if now is None else now
        self._sync()
        if self.state == "closed":
            return True
        if self.state == "open" and now - self.opened_at < self.settings.open_seconds:
            return False
        return not self.probe_in_flight and not (
            self.board is not None and self.board.held_elsewhere(now)
        )

    def admit(self, now: float | None = None) -> int | None:
        """Permission for one call: None (not now), 0 (the breaker is closed), or the
        half-open probe's number (one probe at a time, across the workers with a board).
        Report the call's outcome with it."""
        now = time.monotonic() if now is None else now
        self._sync()
        if self.state == "closed":
            return 0
        if self.state == "open":
            if now - self.opened_at < self.settings.open_seconds:
                return None
            self._move("half_open")
        if self.probe_in_flight:
            return None
        if self.board is not None:
            generation = self.board.claim_probe(self.probe_seconds, now)
            if generation is None:
                return None
            self._seen = self._claimed = generation
        self.probe_in_flight = True
        self.probes += 1
        return self.probes

    def renew(self, probe: int, now: float | None = None) -> bool:
        """Whether permit `probe` may still be sent, its probe's time on the board counted
        again from now. Between `admit` and the call comes the intent's commit: were that
        slow, the claim could run out and another worker send a second probe meanwhile.
        False when another worker holds the probe now (this one is given up)."""
        if probe == 0 or self.board is None:
            return True
        self._sync()
        if not self._is_probe(probe):  # another worker's probe closed the breaker meanwhile
            return self.state == "closed"
        if self._seen != self._claimed:
            # another worker claimed or published since (its probe failed: a fresh
            # opening): this probe is stale; its cool-down is the board's, not ours
            self.probe_in_flight = False
            self.board.release_probe()  # if it is still ours on the board
            shared = self.shared = self.board.read()
            self._seen = shared.generation
            if shared.state == OPEN and shared.probe_owner == 0:  # no probe out now
                self.opened_at = shared.opened_at
                self.adopted += 1
                self._move("open")
            return False
        now = time.monotonic() if now is None else now
        generation = self.board.claim_probe(self.probe_seconds, now)
        if generation is None:
            self.probe_in_flight = False
            return False
        self._seen = self._claimed = generation
        return True

    def acquire(self, now: float | None = None) -> bool:
        """`admit`, when the caller reports outcomes without its permit."""
        return self.admit(now) is not None

    def _is_probe(self, probe: int | None) -> bool:
        """Whether an outcome with permit `probe` is the half-open probe's that is out
        (None: the probe, if one is out)."""
        return self.probe_in_flight and probe in (None, self.probes)

    def record_success(self, probe: int | None = None) -> None:
        self._sync()  # judged against what the other workers did meanwhile
        self.successes += 1
        self.stamps["last_success_at"] = utc_now()
        if self.state == "closed":
            self.consecutive_failures = 0
        elif self._is_probe(probe):
            self.consecutive_failures = 0
            self.probe_in_flight = False
            self._move("closed")
            self._publish(CLOSED)
        # else: a call let through before the breaker opened; only the probe closes it

    def record_failure(self, now: float | None = None, *, probe: int | None = None) -> None:
        self._sync()  # an opening another worker published meanwhile is not opened again
        self.failures += 1
        self.consecutive_failures += 1
        self.stamps["last_failure_at"] = utc_now()
        if self._is_probe(probe):
            self.probe_in_flight = False
        elif not (
            self.state == "closed" and self.consecutive_failures >= self.settings.failure_threshold
        ):
            return  # below the threshold, or from before the breaker opened: no transition
        self.opened_at = time.monotonic() if now is None else now
        self.times_opened += 1
        self._move("open")
        self._publish(OPEN)

    def release(self, probe: int | None = None) -> None:
        """A call that ended without telling anything about the endpoint (cancelled)."""
        if not self._is_probe(probe):
            return
        if self.board is not None:
            generation = self.board.release_probe()
            if generation is not None:
                self._seen = generation
        self.probe_in_flight = False

    def probe_now(self) -> None:
        """A health check succeeded: let the next call probe without waiting out the
        cool-down (a probe another worker has out stays its one probe)."""
        if self.state == "open":
            self.opened_at = time.monotonic() - self.settings.open_seconds
            if self.board is not None:
                self._seen = self.board.publish(OPEN, self.opened_at, end_probe=False)

    def _publish(self, state: int) -> None:
        if self.board is not None:
            self._seen = self.board.publish(state, self.opened_at if state == OPEN else 0.0)

    def _move(self, state: State) -> None:
        self.state = state
        metrics.BREAKER_STATE.labels(self.name).set(_GAUGE[state])
        now = utc_now()
        self.stamps[f"{state}_at"] = now
        self.transitions.append((state, now))
        del self.transitions[:-50]

    def snapshot(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "consecutive_failures": self.consecutive_failures,
            "failures": self.failures,
            "successes": self.successes,
            "times_opened": self.times_opened,
            "shared": self.board is not None,
            "adopted": self.adopted,
            **self.stamps,
        }
