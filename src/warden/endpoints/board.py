"""Breaker transitions shared by the request workers of one `warden serve --workers N`.

Without it every worker keeps its own breaker per endpoint: when an endpoint dies, each
worker has to fail `failure_threshold` calls on it before it stops calling, and after the
cool-down each sends its own probe. With the board, the first worker whose breaker opens
publishes it and the others adopt it on their next routing decision; a closed breaker (a
probe that succeeded) and a passing health check are published the same way; and in
half-open state one probe is in flight across all workers, not one per worker. Each
worker's health checks are published there as well, and a newer check from another worker
counts as the endpoint's health.

The board is a small file the parent creates in its private run directory and every
worker maps into memory: a header naming the endpoints (sorted), then one 48-byte slot
per endpoint. A writer takes an exclusive `flock` on the file and bumps the slot's
generation to odd before changing it and to even after (a seqlock), so readers — every
routing decision — read without a lock and retry the rare torn read (on x86-64; on a
weakly ordered CPU they take the lock too: `warden.memory_order`). Times are
`time.monotonic()`, which is one clock for every process of the machine. Consecutive
failures are still counted per worker: the board shares the transitions, not the counts.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import secrets
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from warden import memory_order
from warden.errors import WardenError

MAGIC = b"WRDNBRD1"
_HEADER = struct.Struct("<8s32sI4x")  # magic, sha256 of the endpoint names, slot count
#: generation, breaker state, last health check's result, opened_at (monotonic), probe
#: holder, probe deadline (monotonic), last health check's time (monotonic)
_SLOT = struct.Struct("<QIIdqdd")
_GENERATION = struct.Struct("<Q")
CLOSED, OPEN = 0, 2
HEALTH_UNKNOWN, HEALTH_OK, HEALTH_FAILED = 0, 1, 2


@dataclass(frozen=True)
class SlotState:
    generation: int
    state: int  # CLOSED or OPEN (half-open is each worker's own view of an expired OPEN)
    health: int  # the newest health check of any worker: HEALTH_*
    opened_at: float
    probe_owner: int
    probe_until: float
    health_at: float  # when that check finished

    def probe_held_by_other(self, owner: int, now: float) -> bool:
        """A mapping other than `owner` holds a half-open probe that has not run out."""
        return self.probe_owner not in (0, owner) and self.probe_until > now


def _names_digest(names: Sequence[str]) -> bytes:
    return hashlib.sha256("\n".join(sorted(names)).encode()).digest()


class BreakerBoard:
    def __init__(self, path: Path, names: Sequence[str], *, create: bool = False) -> None:
        self.path = path
        self.names = sorted(names)
        size = _HEADER.size + _SLOT.size * len(self.names)
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        self._fd = os.open(path, flags, 0o600)
        try:
            if create:
                os.ftruncate(self._fd, size)
                os.pwrite(
                    self._fd, _HEADER.pack(MAGIC, _names_digest(self.names), len(self.names)), 0
                )
            elif os.fstat(self._fd).st_size != size:
                raise WardenError(f"{path}: breaker board of the wrong size for this policy")
            self._map = mmap.mmap(self._fd, size)
        except BaseException:
            os.close(self._fd)
            raise
        magic, digest, count = _HEADER.unpack_from(self._map, 0)
        if magic != MAGIC or digest != _names_digest(self.names) or count != len(self.names):
            self.close()
            raise WardenError(f"{path}: breaker board made for other endpoints")
        self._index = {name: i for i, name in enumerate(self.names)}
        self._thread_lock = threading.Lock()
        #: who holds a probe: one id per mapping (a process maps the board once)
        self.owner = secrets.randbits(62) + 1

    @classmethod
    def create(cls, path: Path, names: Sequence[str]) -> BreakerBoard:
        return cls(path, names, create=True)

    def slot(self, name: str) -> BoardSlot:
        return BoardSlot(self, self._index[name])

    def _offset(self, index: int) -> int:
        return _HEADER.size + _SLOT.size * index

    def generation(self, index: int) -> int:
        """The slot's generation alone: what a routing decision reads when nothing changed."""
        return int(_GENERATION.unpack_from(self._map, self._offset(index))[0])

    def read(self, index: int) -> SlotState:
        if not memory_order.LOCK_FREE_READS:  # a weakly ordered CPU: read under the lock
            with self._locked(index) as current:
                return current
        offset = self._offset(index)
        while True:
            values = _SLOT.unpack_from(self._map, offset)
            if values[0] % 2 == 0 and _GENERATION.unpack_from(self._map, offset)[0] == values[0]:
                return SlotState(*values)
            time.sleep(0)  # a writer is halfway through this slot

    @contextmanager
    def _locked(self, index: int) -> Iterator[SlotState]:
        # threads of one process share the file's flock: the thread lock keeps them apart
        with self._thread_lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield SlotState(*_SLOT.unpack_from(self._map, self._offset(index)))
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _write(self, index: int, current: SlotState, **changes: Any) -> int:
        """Write a slot while holding the lock; returns the new generation."""
        offset = self._offset(index)
        _GENERATION.pack_into(self._map, offset, current.generation + 1)  # odd: writing
        new = replace(current, generation=current.generation + 2, **changes)
        _SLOT.pack_into(
            self._map,
            offset,
            current.generation + 1,
            new.state,
            new.health,
            new.opened_at,
            new.probe_owner,
            new.probe_until,
            new.health_at,
        )
        _GENERATION.pack_into(self._map, offset, new.generation)  # even: done
        return new.generation

    def publish(
        self, index: int, state: int, opened_at: float = 0.0, *, end_probe: bool = True
    ) -> int:
        """A transition, and the end of any probe (`end_probe=False`: only a shorter
        cool-down, a probe that is out stays out); returns the new generation."""
        with self._locked(index) as current:
            if not end_probe:
                return self._write(index, current, state=state, opened_at=opened_at)
            return self._write(
                index, current, state=state, opened_at=opened_at, probe_owner=0, probe_until=0.0
            )

    def claim_probe(self, index: int, seconds: float, now: float) -> int | None:
        """Take the one half-open probe for `seconds`; the new generation, or None when
        another process holds a probe that has not run out."""
        with self._locked(index) as current:
            if current.probe_held_by_other(self.owner, now):
                return None
            return self._write(index, current, probe_owner=self.owner, probe_until=now + seconds)

    def publish_health(self, index: int, ok: bool, at: float) -> int | None:
        """One health check's result, unless a newer one is there already."""
        with self._locked(index) as current:
            if current.health_at > at:
                return None
            return self._write(
                index, current, health=HEALTH_OK if ok else HEALTH_FAILED, health_at=at
            )

    def release_probe(self, index: int) -> int | None:
        """Give up this mapping's probe (a call that said nothing about the endpoint)."""
        with self._locked(index) as current:
            if current.probe_owner != self.owner:
                return None
            return self._write(index, current, probe_owner=0, probe_until=0.0)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)


@dataclass(frozen=True)
class BoardSlot:
    """One endpoint's slot, as its breaker uses it."""

    board: BreakerBoard
    index: int

    def read(self) -> SlotState:
        return self.board.read(self.index)

    def generation(self) -> int:
        return self.board.generation(self.index)

    def publish(self, state: int, opened_at: float = 0.0, *, end_probe: bool = True) -> int:
        return self.board.publish(self.index, state, opened_at, end_probe=end_probe)

    def claim_probe(self, seconds: float, now: float) -> int | None:
        return self.board.claim_probe(self.index, seconds, now)

    def release_probe(self) -> int | None:
        return self.board.release_probe(self.index)

    def publish_health(self, ok: bool, at: float) -> int | None:
        return self.board.publish_health(self.index, ok, at)

    def held_elsewhere(self, now: float) -> bool:
        """Another mapping (worker) holds a probe that has not run out."""
        return self.read().probe_held_by_other(self.board.owner, now)
