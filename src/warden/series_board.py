"""Rolling series shared by the request workers of one `warden serve --workers N`: the
output guard's answer lengths and the band monitor's review hits, per decision type.

Without it every worker keeps its own windows: with N workers each sees about 1/N of the
answers, its length baseline warms up N times slower, two workers can judge the same answer
differently, and `GET /v1/bands/monitor` shows whichever worker answered. With the board
every value is appended to one shared ring per series, in one order for all, and every
worker applies all of them, in that order, to its own window before it reads it — so the
workers' windows hold the same values.

A series also carries a *chart*: the position its current chart started at, an epoch that
changes when it starts over (a thresholds activation), and the baseline the chart is judged
against (p₀: the thresholds' expected share, or the share over the chart's first decisions,
published by the first worker that computed it). A worker that starts late — restarted by
the supervisor, or a ring behind — takes the chart from the board instead of from what it
happened to see, so its windows, positions and baseline are the other workers'.

The board is a file the parent creates in its private run directory and every worker maps:
a header (magic, sha256 of the series names, series count, ring capacity), then per series a
48-byte header (count of the values ever appended, the chart's seqlock generation, epoch,
start, p₀ and its source) and a ring of `capacity` (f64 value, u64 owner) pairs. Writers
take an exclusive `flock` (and a thread lock: a flock does not exclude the threads of one
process) and write the pair at `count % capacity`, then the count. A reader takes no lock:
it reads the count, the pairs it has not applied yet, and the count again; pairs a writer
may have overwritten meanwhile are dropped and reported as a gap (a worker that fell a
whole ring behind, which the capacity makes rare). Chart fields are read under their
seqlock. The lock-free reads rely on the store order of x86-64, as the breaker board's do;
on a weakly ordered CPU readers take the lock (`warden.memory_order`)."""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import secrets
import struct
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from warden import memory_order
from warden.errors import WardenError

MAGIC = b"WRDNSER1"
_HEADER = struct.Struct("<8s32sII")  # magic, sha256 of the names, series count, capacity
_COUNT = struct.Struct("<Q")
#: count, chart generation (seqlock: odd while written), epoch, start, p0 (NaN: none yet), source
_SERIES = struct.Struct("<QQQQdI4x")
_CHART = struct.Struct("<QQQdI")  # the chart fields, read after the count
_PAIR = struct.Struct("<dQ")  # value, owner (the mapping that appended it)
CAPACITY = 8192
#: where a chart's p0 comes from
BASELINE, THRESHOLDS = 0, 1


@dataclass(frozen=True)
class Chart:
    epoch: int
    start: int  # the position of the chart's first value
    p0: float | None
    source: int  # BASELINE (the first decisions' share, once published) or THRESHOLDS


def _digest(names: Sequence[str]) -> bytes:
    return hashlib.sha256("\n".join(sorted(names)).encode()).digest()


def series_names(decision_types: Sequence[str]) -> list[str]:
    """The series a policy's workers share: answer lengths and review hits per type."""
    return sorted(f"{kind}:{name}" for name in decision_types for kind in ("length", "review"))


class SeriesBoard:
    def __init__(
        self, path: Path, names: Sequence[str], *, create: bool = False, capacity: int = CAPACITY
    ) -> None:
        self.path = path
        self.names = sorted(names)
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        self._fd = os.open(path, flags, 0o600)
        try:
            if create:
                size = _HEADER.size + len(self.names) * (_SERIES.size + capacity * _PAIR.size)
                os.ftruncate(self._fd, size)
                header = _HEADER.pack(MAGIC, _digest(self.names), len(self.names), capacity)
                os.pwrite(self._fd, header, 0)
            raw = os.pread(self._fd, _HEADER.size, 0)
            magic, digest, count, capacity = _HEADER.unpack(raw.ljust(_HEADER.size, b"\0"))
            if magic != MAGIC or digest != _digest(self.names) or count != len(self.names):
                raise WardenError(f"{path}: series board made for other decision types")
            self.capacity = capacity
            self._stride = _SERIES.size + capacity * _PAIR.size
            size = _HEADER.size + len(self.names) * self._stride
            if os.fstat(self._fd).st_size != size:
                raise WardenError(f"{path}: series board of the wrong size")
            self._map = mmap.mmap(self._fd, size)
        except BaseException:
            os.close(self._fd)
            raise
        self._index = {name: i for i, name in enumerate(self.names)}
        self._thread_lock = threading.Lock()
        #: who appended a value: one id per mapping (a process maps the board once)
        self.owner = secrets.randbits(62) + 1
        if create:
            for i in range(len(self.names)):
                self._write_chart(i, 0, 0, None, BASELINE)

    @classmethod
    def create(
        cls,
        path: Path,
        names: Sequence[str],
        capacity: int = CAPACITY,
        *,
        expected: Mapping[str, float] | None = None,
    ) -> SeriesBoard:
        """A new board; `expected`: series name → the thresholds' expected share, the p0 of
        its first chart."""
        board = cls(path, names, create=True, capacity=capacity)
        for name, share in (expected or {}).items():
            if name in board:
                board._write_chart(board._index[name], 0, 0, share, THRESHOLDS)
        return board

    def __contains__(self, name: str) -> bool:
        return name in self._index

    def series(self, name: str) -> SharedSeries:
        """A reader/appender of one series with its own read position (at the start)."""
        return SharedSeries(self, self._index[name])

    def _base(self, index: int) -> int:
        return _HEADER.size + index * self._stride

    def count(self, index: int) -> int:
        return int(_COUNT.unpack_from(self._map, self._base(index))[0])

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def append(self, index: int, value: float) -> int:
        """Append one value; returns its position in the series (0, 1, 2, …)."""
        base = self._base(index)
        with self._locked():
            n = int(_COUNT.unpack_from(self._map, base)[0])
            slot = base + _SERIES.size + (n % self.capacity) * _PAIR.size
            _PAIR.pack_into(self._map, slot, value, self.owner)
            _COUNT.pack_into(self._map, base, n + 1)  # the pair first, then the count
            return n

    def chart(self, index: int) -> Chart:
        if not memory_order.LOCK_FREE_READS:  # a weakly ordered CPU: read under the lock
            with self._locked():
                return self._chart(index, locked=True)
        return self._chart(index)

    def _chart(self, index: int, *, locked: bool = False) -> Chart:
        """The chart fields; `locked`: the caller holds the lock, so no writer is halfway
        through them (and a generation left odd by a writer that died is not waited on)."""
        offset = self._base(index) + _COUNT.size
        while True:
            gen, epoch, start, p0, source = _CHART.unpack_from(self._map, offset)
            if locked or (gen % 2 == 0 and _COUNT.unpack_from(self._map, offset)[0] == gen):
                return Chart(int(epoch), int(start), None if math.isnan(p0) else p0, int(source))
            time.sleep(0)  # a writer is halfway through this chart

    def _write_chart(
        self, index: int, epoch: int, start: int, p0: float | None, source: int
    ) -> None:
        """Write the chart fields (the caller holds the lock, or owns the new file)."""
        offset = self._base(index) + _COUNT.size
        gen = int(_COUNT.unpack_from(self._map, offset)[0])
        gen += gen % 2  # left odd by a writer that died halfway: start from even again
        _COUNT.pack_into(self._map, offset, gen + 1)  # odd: writing
        value = math.nan if p0 is None else p0
        _CHART.pack_into(self._map, offset, gen + 1, epoch, start, value, source)
        _COUNT.pack_into(self._map, offset, gen + 2)  # even: done

    def restart_chart(self, index: int, p0: float | None) -> Chart:
        """A new chart from the next value on: judged against `p0` (thresholds), or with
        None against the share over its first decisions."""
        with self._locked():
            current = self._chart(index, locked=True)
            start = self.count(index)
            source = BASELINE if p0 is None else THRESHOLDS
            self._write_chart(index, current.epoch + 1, start, p0, source)
            return Chart(current.epoch + 1, start, p0, source)

    def publish_p0(self, index: int, epoch: int, p0: float) -> bool:
        """The baseline share of chart `epoch`, computed by the first worker that could;
        False when that chart has one already or is no longer current."""
        with self._locked():
            current = self._chart(index, locked=True)
            if current.epoch != epoch or current.p0 is not None:
                return False
            self._write_chart(index, epoch, current.start, p0, BASELINE)
            return True

    def read(self, index: int, start: int) -> tuple[int, list[tuple[float, int]], int]:
        """The values from position `start` on: (first position returned, [(value, owner)],
        next position). The first position is above `start` when values were overwritten."""
        if not memory_order.LOCK_FREE_READS:  # a weakly ordered CPU: read under the lock
            with self._locked():
                return self._read(index, start)
        return self._read(index, start)

    def _read(self, index: int, start: int) -> tuple[int, list[tuple[float, int]], int]:
        base = self._base(index)
        end = self.count(index)
        first = max(start, end - self.capacity + 1)
        pairs = [
            _PAIR.unpack_from(self._map, base + _SERIES.size + (i % self.capacity) * _PAIR.size)
            for i in range(first, end)
        ]
        # a writer that appended meanwhile may have overwritten the oldest pairs read
        safe = max(first, self.count(index) - self.capacity + 1)
        return safe, [(float(v), int(o)) for v, o in pairs[safe - first :]], end

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)


@dataclass
class SharedSeries:
    board: SeriesBoard
    index: int
    position: int = 0
    #: values lost to overwriting since this reader started (it fell a ring behind)
    gaps: int = field(default=0)

    @property
    def owner(self) -> int:
        return self.board.owner

    def append(self, value: float) -> int:
        return self.board.append(self.index, value)

    def pending(self) -> int:
        """Values appended that this reader has not pulled yet."""
        return self.board.count(self.index) - self.position

    def pull(self) -> tuple[int, bool, list[tuple[float, int]]]:
        """(the position of the first value returned, whether values were lost since the
        last pull, the new (value, owner) pairs in order)."""
        if self.board.count(self.index) == self.position:
            return self.position, False, []
        first, pairs, end = self.board.read(self.index, self.position)
        lost = first > self.position
        self.gaps += max(0, first - self.position)
        self.position = max(end, first)
        return first, lost, pairs

    def seek(self, position: int) -> None:
        """Read from `position` on (or from the oldest value the ring still holds)."""
        self.position = max(position, self.board.count(self.index) - self.board.capacity + 1, 0)

    def chart(self) -> Chart:
        return self.board.chart(self.index)

    def restart_chart(self, p0: float | None) -> Chart:
        return self.board.restart_chart(self.index, p0)

    def publish_p0(self, epoch: int, p0: float) -> bool:
        return self.board.publish_p0(self.index, epoch, p0)
