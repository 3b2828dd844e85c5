"""Whether the shared boards may be read without a lock on this machine.

The breaker board (`endpoints.board`) and the series board (`series_board`) are files the
request workers map into memory. A writer holds an exclusive `flock`; a reader normally
takes no lock and checks a seqlock generation (odd while written) before and after reading
a slot. That check is sound only where the processor keeps a writer's stores, and a
reader's loads, in program order — x86-64's total store order. On weaker orders (ARM,
POWER, RISC-V) a reader could see the new generation with old data; there the boards'
readers take the lock too (a pair of `flock` calls, ≈ 1–2 µs per read). The breaker
board's bare generation (`BreakerBoard.generation`, a change detector a routing decision
polls) is still read without it: a stale value only delays the locked read of the slot."""

from __future__ import annotations

import platform

_TOTAL_STORE_ORDER = frozenset({"x86_64", "amd64", "i386", "i686", "x86"})

#: the seqlock reads without a lock are sound here (see the module docstring)
LOCK_FREE_READS = platform.machine().lower() in _TOTAL_STORE_ORDER
