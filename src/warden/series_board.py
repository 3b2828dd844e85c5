"""Rolling series shared by the request workers of one `warden serve --workers N`: the
output guard's answer lengths and the band monitor's review hits, per decision type.

Without it every worker keeps its own windows: with N workers each sees about 1/N of the
answers, its length baseline warms up N times slower, two workers can judge the same answer
differently, and `GET /v1/bands/monitor` shows whichever worker answered. With the board
every value is appended to one shared ring per series, in one order for all, and every
worker applies all of them, in that order, to its own window before it reads it — so the
workers' windows hold the same values.

The board is a file the parent creates in its private run directory and every worker maps:
a header (magic, sha256 of the series names, series count, ring capacity), then per series a
u64 count of the values ever appended and a ring of `capacity` (f64 value, u64 owner) pairs.
A writer takes an exclusive `flock`, writes the pair at `count % capacity`, then the count.
A reader takes no lock: it reads the count, the pairs it has not applied yet, and the count
again; pairs a writer may have overwritten meanwhile are dropped and reported as a gap (a
worker that fell a whole ring behind, which the capacity makes rare)."""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from warden.errors import WardenError

MAGIC = b"WRDNSER1"
_HEADER = struct.Struct("<8s32sII")  # magic, sha256 of the names, series count, capacity
_COUNT = struct.Struct("<Q")
_PAIR = struct.Struct("<dQ")  # value, owner (the mapping that appended it)
CAPACITY = 8192


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
                size = _HEADER.size + len(self.names) * (_COUNT.size + capacity * _PAIR.size)
                os.ftruncate(self._fd, size)
                header = _HEADER.pack(MAGIC, _digest(self.names), len(self.names), capacity)
                os.pwrite(self._fd, header, 0)
            raw = os.pread(self._fd, _HEADER.size, 0)
            magic, digest, count, capacity = _HEADER.unpack(raw.ljust(_HEADER.size, b"\0"))
            if magic != MAGIC or digest != _digest(self.names) or count != len(self.names):
                raise WardenError(f"{path}: series board made for other decision types")
            self.capacity = capacity
            self._stride = _COUNT.size + capacity * _PAIR.size
            size = _HEADER.size + len(self.names) * self._stride
            if os.fstat(self._fd).st_size != size:
                raise WardenError(f"{path}: series board of the wrong size")
            self._map = mmap.mmap(self._fd, size)
        except BaseException:
            os.close(self._fd)
            raise
        self._index = {name: i for i, name in enumerate(self.names)}
        #: who appended a value: one id per mapping (a process maps the board once)
        self.owner = secrets.randbits(62) + 1

    @classmethod
    def create(cls, path: Path, names: Sequence[str], capacity: int = CAPACITY) -> SeriesBoard:
        return cls(path, names, create=True, capacity=capacity)

    def __contains__(self, name: str) -> bool:
        return name in self._index

    def series(self, name: str) -> SharedSeries:
        """A reader/appender of one series with its own read position (at the start)."""
        return SharedSeries(self, self._index[name])

    def _base(self, index: int) -> int:
        return _HEADER.size + index * self._stride

    def count(self, index: int) -> int:
        return int(_COUNT.unpack_from(self._map, self._base(index))[0])

    def append(self, index: int, value: float) -> int:
        """Append one value; returns its position in the series (0, 1, 2, …)."""
        base = self._base(index)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            n = int(_COUNT.unpack_from(self._map, base)[0])
            slot = base + _COUNT.size + (n % self.capacity) * _PAIR.size
            _PAIR.pack_into(self._map, slot, value, self.owner)
            _COUNT.pack_into(self._map, base, n + 1)  # the pair first, then the count
            return n
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def read(self, index: int, start: int) -> tuple[int, list[tuple[float, int]], int]:
        """The values from position `start` on: (first position returned, [(value, owner)],
        next position). The first position is above `start` when values were overwritten."""
        base = self._base(index)
        end = self.count(index)
        first = max(start, end - self.capacity + 1)
        pairs = [
            _PAIR.unpack_from(self._map, base + _COUNT.size + (i % self.capacity) * _PAIR.size)
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

    def pull(self) -> tuple[bool, list[tuple[float, int]]]:
        """(values were lost since the last pull, the new (value, owner) pairs in order)."""
        if self.board.count(self.index) == self.position:
            return False, []
        first, pairs, end = self.board.read(self.index, self.position)
        lost = first > self.position
        self.gaps += first - self.position
        self.position = end
        return lost, pairs

    def skip_to_end(self) -> None:
        """Read nothing appended so far (a series that starts over)."""
        self.position = self.board.count(self.index)
