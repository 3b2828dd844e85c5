"""A circuit breaker per endpoint: closed → open after `failure_threshold` consecutive
failures → half-open after `open_seconds` (one probe call at a time) → closed on the
probe's success, open again on its failure. Counts and timestamps are kept for the
record and for `/metrics`-style inspection.

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

    def acquire(self, now: float | None = None) -> bool:
        """Take permission for one call; in half-open only one probe at a time (across
        the workers, with a board)."""
        now = time.monotonic() if now is None else now
        self._sync()
        if self.state == "closed":
            return True
        if self.state == "open":
            if now - self.opened_at < self.settings.open_seconds:
                return False
            self._move("half_open")
        if self.probe_in_flight:
            return False
        if self.board is not None:
            generation = self.board.claim_probe(self.probe_seconds, now)
            if generation is None:
                return False
            self._seen = generation
        self.probe_in_flight = True
        return True

    def record_success(self) -> None:
        self.successes += 1
        self.consecutive_failures = 0
        self.probe_in_flight = False
        self.stamps["last_success_at"] = utc_now()
        if self.state != "closed":
            self._move("closed")
            self._publish(CLOSED)

    def record_failure(self, now: float | None = None) -> None:
        self.failures += 1
        self.consecutive_failures += 1
        self.probe_in_flight = False
        self.stamps["last_failure_at"] = utc_now()
        if self.state == "half_open" or (
            self.state == "closed" and self.consecutive_failures >= self.settings.failure_threshold
        ):
            self.opened_at = time.monotonic() if now is None else now
            self.times_opened += 1
            self._move("open")
            self._publish(OPEN)

    def release(self) -> None:
        """A call that ended without telling anything about the endpoint (cancelled)."""
        if self.probe_in_flight and self.board is not None:
            generation = self.board.release_probe()
            if generation is not None:
                self._seen = generation
        self.probe_in_flight = False

    def probe_now(self) -> None:
        """A health check succeeded: let the next call probe without waiting out the
        cool-down."""
        if self.state == "open":
            self.opened_at = time.monotonic() - self.settings.open_seconds
            self._publish(OPEN)

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
