"""How entries reach the log in one process: a request alone commits on its own event
loop (no hand-off to the writer thread), a burst still shares one commit, and the
background WAL restart keeps the WAL from growing under steady load."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE_POLICY, SERVICE, payment
from warden.audit.entry import NewEntry
from warden.audit.sqlite_store import SQLiteAuditStore
from warden.audit.tools import verify
from warden.errors import AuditCommitError
from warden.gateway import Gateway

BODY = b'{"text":"' + b"x" * 4600 + b'"}'


def _checkpoint_sizes(data_dir: Path) -> list[int]:
    with closing(sqlite3.connect(data_dir / "audit.db")) as conn:
        return [r[0] for r in conn.execute("SELECT size FROM checkpoints ORDER BY size")]


def test_a_lone_request_commits_on_its_loop_and_a_burst_shares_a_commit(
    data_dir: Path,
) -> None:
    gateway = Gateway.open(data_dir, EXAMPLE_POLICY)
    store = gateway.store
    assert isinstance(store, SQLiteAuditStore)
    try:
        for i in range(3):  # one at a time: each commits inline, each with its checkpoint
            gateway.decide_sync(payment(customer_id=f"alone-{i}"), SERVICE)
        assert store.inline_commits == 3

        async def burst() -> list[dict[str, Any]]:
            requests = [payment(customer_id=f"burst-{i}") for i in range(10)]
            return await asyncio.gather(*(gateway.decide(r, SERVICE) for r in requests))

        before = store.size()
        results = asyncio.run(burst())
        # the ten requests were in flight together: none committed alone on the loop,
        # and the writer thread put several of them in one transaction
        assert store.inline_commits == 3
        assert sorted(r["audit_seq"] for r in results) == list(range(before, before + 10))
        sizes = _checkpoint_sizes(data_dir)
        batches = [b - a for a, b in zip([0, *sizes], sizes, strict=False)]
        assert max(batches[-10:]) >= 2, f"no shared commit: checkpoints at {sizes[-10:]}"
    finally:
        gateway.close()
    assert verify(data_dir).ok


def test_an_inline_commit_fails_closed(data_dir: Path) -> None:
    """A lone entry whose commit fails gets the error, and nothing of it is in the log."""
    store = SQLiteAuditStore(data_dir)
    store.commit_inline_when(lambda: True)
    store.set_busy_timeout(50)
    try:
        ok = asyncio.run(_submit(store, NewEntry("decision", "d-1", BODY)))
        assert ok.seq == 0 and store.inline_commits == 1
        with closing(sqlite3.connect(data_dir / "audit.db", isolation_level=None)) as blocker:
            blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
            with pytest.raises(AuditCommitError, match="audit commit failed"):
                asyncio.run(_submit(store, NewEntry("decision", "d-2", BODY)))
            blocker.execute("ROLLBACK")
        assert store.size() == 1
        again = asyncio.run(_submit(store, NewEntry("decision", "d-3", BODY)))
        assert again.seq == 1  # the store recovered; no gap, no half-written entry
    finally:
        store.close()
    assert verify(data_dir).ok


async def _submit(store: SQLiteAuditStore, entry: NewEntry) -> Any:
    return await store.submit_async(entry)


def test_the_wal_restarts_under_steady_load(data_dir: Path) -> None:
    """Commits never pause for the WAL to be copied, yet it does not grow without end:
    the background pass restarts it. (Before, under steady load a PASSIVE pass never
    finished between two commits, so no commit ever started the WAL over.)"""
    store = SQLiteAuditStore(data_dir)  # a pass every 0.5 s, as served
    commits = 0
    try:
        deadline = time.monotonic() + 1.8  # three passes or more
        while time.monotonic() < deadline:
            store.commit_now([NewEntry("decision", f"d-{commits}", BODY)])
            commits += 1
            time.sleep(0.0005)
        with closing(sqlite3.connect(data_dir / "audit.db", isolation_level=None)) as conn:
            _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        # each commit writes several pages (the entry's overflow pages, four indexes,
        # the checkpoint row): a WAL holding every commit since the start has > 3 per
        # commit; one restarted at the last pass holds about a third of that
        assert frames < 3 * commits, (frames, commits)
    finally:
        store.close()
    assert verify(data_dir).ok


def test_a_long_reader_does_not_stop_commits(data_dir: Path) -> None:
    """A reader that holds an old snapshot (a long `audit verify`) keeps the WAL from
    restarting; the restart gives up on it and commits go on."""
    store = SQLiteAuditStore(data_dir)
    store.wal_checkpoint_interval = 0.02
    try:
        store.commit_now([NewEntry("decision", "first", BODY)])
        with closing(sqlite3.connect(data_dir / "audit.db", isolation_level=None)) as reader:
            reader.execute("BEGIN")
            seen = reader.execute("SELECT count(*) FROM entries").fetchone()[0]
            for i in range(60):  # spans many restart attempts
                results = store.commit_now([NewEntry("decision", f"d-{i}", BODY)])
                assert not isinstance(results[0], BaseException), results[0]
                time.sleep(0.01)
            # the reader still sees its snapshot
            assert reader.execute("SELECT count(*) FROM entries").fetchone()[0] == seen
            reader.execute("COMMIT")
        assert store.size() == 61
    finally:
        store.close()
    assert verify(data_dir).ok
