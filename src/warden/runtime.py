"""Process-wide settings for a long-running gateway process (the server, the demo, the
benchmarks). Kept out of library imports: a library must not change its host's GC."""

from __future__ import annotations

import gc


def tune_for_serving() -> None:
    """Freeze everything allocated at start-up out of the garbage collector's view and make
    collections rarer, so full collections do not rescan FastAPI, pydantic and the policy
    on the request path (measured over HTTP at 32 clients: p99 ~95 ms before, ~50 ms
    after, at the same throughput; see bench/README.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)
