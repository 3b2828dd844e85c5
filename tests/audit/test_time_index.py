"""`entries_between`: the time-indexed read that `warden audit completeness` and
`warden routes verify` use instead of scanning the whole log."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

from warden.audit.completeness import parse_ts
from warden.audit.entry import NewEntry, store_ts
from warden.audit.sqlite_store import SQLiteAuditStore


def test_entries_between_selects_by_time_and_kind_in_log_order(tmp_path: Path) -> None:
    store = SQLiteAuditStore(tmp_path)
    try:
        for i in range(6):
            kind = "intent" if i % 2 else "decision"
            store.submit(NewEntry.of(kind, f"d{i}", {"i": i})).result()
        entries = list(store.iter_entries())
        times = [parse_ts(e.ts) for e in entries]
        assert times == sorted(times)
        since, until = store_ts(times[1]), store_ts(times[4])  # [1, 4): seqs 1, 2, 3
        window = list(store.entries_between(since, until))
        assert [e.seq for e in window] == [1, 2, 3]
        assert [e.seq for e in store.entries_between(since, until, ("intent",))] == [1, 3]
        assert list(store.entries_between(store_ts(times[-1] + timedelta(seconds=1)), "9")) == []
    finally:
        store.close()
    # the query is answered from the time index, not by scanning the log
    plan = sqlite3.connect(tmp_path / "audit.db").execute(
        "EXPLAIN QUERY PLAN SELECT seq FROM entries WHERE ts >= ? AND ts < ? ORDER BY seq",
        ("a", "b"),
    )
    assert "entries_by_time" in " ".join(str(row) for row in plan)
