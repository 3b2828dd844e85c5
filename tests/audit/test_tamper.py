"""Tamper evidence: build a real audit log with the Gateway, then attack the SQLite file the
way someone with write access to the data directory could, and check that both the library
(`warden.audit.tools.verify`) and the command line (`warden audit verify`) say what is wrong.

The attacker may drop the append-only triggers first: the triggers stop ordinary
connections and accidents; the Merkle tree and the signed checkpoints are what detect
deliberate tampering."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    EXAMPLE_POLICY,
    REVIEWER,
    SERVICE,
    decline_payment,
    payment,
    review_payment,
)
from tests.helpers_server import run_cli
from warden.audit.checkpoint import Checkpoint, CheckpointSigner, CheckpointVerifier
from warden.audit.merkle import MerkleTree, leaf_hash
from warden.audit.sqlite_store import APPEND_ONLY_TABLES
from warden.audit.tools import read_only, verify
from warden.audit.verify import MAX_PROBLEMS, VerifyReport, verify_log
from warden.canonical import canonical_json
from warden.errors import WardenError
from warden.gateway import Gateway, RefusedError

#: occurs exactly once in the whole audit.db file: in the inputs of one decision record
TARGET_CUSTOMER = "c-tamper-target-7317"
TARGET_AMOUNT = 4242.42


@dataclass(frozen=True)
class Log:
    path: Path  # the data directory
    size: int  # number of entries
    checkpoints: tuple[int, ...]  # the tree sizes of the stored checkpoints, ascending
    target_seq: int  # the decision with TARGET_CUSTOMER
    other_seq: int  # a decision in a different batch than the target
    review_seq: int  # the review entry, committed alone as the last entry

    @property
    def db(self) -> Path:
        return self.path / "audit.db"

    def first_checkpoint_covering(self, seq: int) -> int:
        return min(size for size in self.checkpoints if size > seq)


async def _build(gateway: Gateway) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    async def decide(request: dict[str, Any]) -> dict[str, Any]:
        try:
            return await gateway.decide(request, SERVICE)
        except RefusedError as exc:  # the refusal is logged too
            return {"decision_id": exc.decision_id, "outcome": "refused"}

    results: list[dict[str, Any]] = []
    for batch in range(3):  # three waves of 10 concurrent requests: several multi-entry batches
        requests = [
            payment(customer_id=f"c-{batch}-{i:03d}", amount=10.0 + 100 * batch + i)
            for i in range(6)
        ]
        requests += [review_payment(customer_id=f"r-{batch}-{i:03d}") for i in range(2)]
        requests += [decline_payment(), payment(jurisdiction=None)]
        if batch == 1:
            requests[3] = payment(customer_id=TARGET_CUSTOMER, amount=TARGET_AMOUNT)
        results += await asyncio.gather(*(decide(r) for r in requests))
    queued = next(r for r in results if r["outcome"] == "review")
    await gateway.review_claim(queued["decision_id"], REVIEWER)
    review = await gateway.review(
        queued["decision_id"],
        REVIEWER,
        {
            "outcome": "approve",
            "rationale": "Customer confirmed the purchase by phone.",
            "label": "negative",
        },
    )
    return results, review


@pytest.fixture(scope="module")
def built_log(tmp_path_factory: pytest.TempPathFactory) -> Log:
    data_dir = tmp_path_factory.mktemp("tamper") / "data"
    gateway = Gateway.open(data_dir, EXAMPLE_POLICY)
    try:
        results, review = asyncio.run(_build(gateway))
    finally:
        gateway.close()
    # closing the last connection checkpoints the WAL into audit.db and removes it
    wal = data_dir / "audit.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    with closing(sqlite3.connect(data_dir / "audit.db")) as conn:
        size = conn.execute("SELECT count(*) FROM entries").fetchone()[0]
        sizes = tuple(r[0] for r in conn.execute("SELECT size FROM checkpoints ORDER BY size"))
    target = results[10 + 3]  # batch 1, request 3
    # policy activation, 30 requests (refusals included), 1 claim, 1 review
    assert size == 1 + 30 + 1 + 1
    assert review["audit_seq"] == size - 1 and sizes[-1] == size and sizes[-2] == size - 1
    batches = [b - a for a, b in zip((0, *sizes), sizes, strict=False)]
    assert max(batches) >= 3, f"no multi-entry batch: checkpoints at {sizes}"
    target_seq = int(target["audit_seq"])
    log = Log(data_dir, size, sizes, target_seq, 0, int(review["audit_seq"]))
    # a decision committed in a different (earlier) batch than the target
    other = next(
        int(r["audit_seq"])
        for r in results
        if "audit_seq" in r
        and log.first_checkpoint_covering(int(r["audit_seq"]))
        < log.first_checkpoint_covering(target_seq)
    )
    return replace(log, other_seq=other)


@pytest.fixture
def log(built_log: Log, tmp_path: Path) -> Log:
    """A private copy of the built log for one attack."""
    copy = tmp_path / "data"
    shutil.copytree(built_log.path, copy)
    return replace(built_log, path=copy)


@contextmanager
def attacker(log: Log, *drop_triggers: str) -> Iterator[sqlite3.Connection]:
    """A plain SQLite connection to the log that first drops the named triggers."""
    with closing(sqlite3.connect(log.db)) as conn:
        for trigger in drop_triggers:
            conn.execute(f"DROP TRIGGER {trigger}")
        yield conn
        conn.commit()


def flat(text: str) -> str:
    return " ".join(text.split())


def assert_detected(log: Log) -> VerifyReport:
    """Both doors must fail: the library report and `warden audit verify` (exit 1, FAIL)."""
    report = verify(log.path)
    assert not report.ok
    assert 0 < len(report.problems) <= MAX_PROBLEMS
    cli = run_cli("audit", "verify", "--data-dir", str(log.path))
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert "Traceback" not in cli.stderr
    out = flat(cli.stdout)
    assert out.startswith("FAIL ")
    for problem in report.problems:
        assert f"FAIL {flat(problem)}" in out
    return report


def assert_refuses_to_start(log: Log, message: str) -> None:
    with pytest.raises(WardenError, match=message):
        Gateway.open(log.path, EXAMPLE_POLICY)


def named_entries(report: VerifyReport) -> set[int]:
    return {int(m.group(1)) for p in report.problems if (m := re.match(r"entry (\d+)\b", p))}


def failed_checkpoints(report: VerifyReport) -> list[int]:
    return [
        int(m.group(1))
        for p in report.problems
        if (m := re.match(r"checkpoint at size (\d+) \(signed [^)]*\): the log's first", p))
    ]


def read_entry(conn: sqlite3.Connection, seq: int) -> tuple[str, str | None, str | None, bytes]:
    kind, decision_id, outcome, data = conn.execute(
        "SELECT kind, decision_id, outcome, data FROM entries WHERE seq = ?", (seq,)
    ).fetchone()
    return kind, decision_id, outcome, bytes(data)


# -- control ------------------------------------------------------------------------------
def test_clean_log_verifies_ok(log: Log) -> None:
    report = verify(log.path)
    assert report.ok and report.problems == [] and report.more_problems == 0
    assert report.entries == log.size
    assert report.checkpoints == report.checkpoints_ok == len(log.checkpoints)
    assert report.latest_size == log.size
    cli = run_cli("audit", "verify", "--data-dir", str(log.path))
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert flat(cli.stdout) == (
        f"OK {log.size} entries, {len(log.checkpoints)} signed "
        f"checkpoints verified (latest covers {log.size})"
    )


def test_append_only_triggers_refuse_update_and_delete(log: Log) -> None:
    statements = {
        "meta": "UPDATE meta SET value = value || 'x'",
        "entries": "UPDATE entries SET outcome = 'auto_approve'",
        "checkpoints": "UPDATE checkpoints SET note = note",
        "blobs": "UPDATE blobs SET kind = kind",
    }
    assert set(statements) == set(APPEND_ONLY_TABLES)
    with closing(sqlite3.connect(log.db)) as conn:
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in statements}
        assert all(counts.values()), counts  # every table has rows, so every trigger can fire
        for table, update in statements.items():
            with pytest.raises(sqlite3.IntegrityError, match="audit store is append-only"):
                conn.execute(update)
            with pytest.raises(sqlite3.IntegrityError, match="audit store is append-only"):
                conn.execute(f"DELETE FROM {table}")
            with pytest.raises(sqlite3.IntegrityError, match="audit store is append-only"):
                conn.execute(f"DELETE FROM {table} WHERE rowid = (SELECT max(rowid) FROM {table})")
        conn.rollback()
        assert counts == {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in statements
        }
    assert verify(log.path).ok


# -- edited records -----------------------------------------------------------------------
def test_one_byte_flipped_in_the_file_names_the_entry(log: Log) -> None:
    raw = bytearray(log.db.read_bytes())
    needle = TARGET_CUSTOMER.encode()
    assert raw.count(needle) == 1  # only inside the target's record: we know what we hit
    at = raw.index(needle) + len(needle) - 1
    raw[at] = ord("8")  # c-tamper-target-7317 -> ...7318: still valid, canonical JSON
    log.db.write_bytes(bytes(raw))

    report = assert_detected(log)
    assert report.problems[0] == (
        f"entry {log.target_seq}: record does not hash to its stored leaf hash (record edited)"
    )
    assert named_entries(report) == {log.target_seq}
    # and the signed roots from that entry's batch on no longer match the recomputed tree
    assert failed_checkpoints(report)[0] == log.first_checkpoint_covering(log.target_seq)


def test_sql_edit_with_recomputed_leaf_hash_fails_the_signed_root(log: Log) -> None:
    with attacker(log, "entries_no_update") as conn:
        _, _, _, data = read_entry(conn, log.target_seq)
        envelope = json.loads(data)
        inputs = envelope["body"]["request"]["inputs"]
        assert inputs["customer_id"] == TARGET_CUSTOMER
        inputs["amount"] = 42.42  # a smarter attacker keeps the record canonical ...
        forged = canonical_json(envelope)
        conn.execute(
            "UPDATE entries SET data = ?, leaf_hash = ? WHERE seq = ?",
            (forged, leaf_hash(forged), log.target_seq),
        )  # ... and its leaf hash right

    report = assert_detected(log)
    assert named_entries(report) == set()  # the row is self-consistent ...
    first = log.first_checkpoint_covering(log.target_seq)
    # ... but every signed root from the entry's batch on disagrees with the recomputed tree
    assert failed_checkpoints(report) == [s for s in log.checkpoints if s >= first]
    assert report.problems[0].startswith(f"checkpoint at size {first} (signed ")
    assert "do not hash to the signed root" in report.problems[0]
    assert report.checkpoints_ok == len([s for s in log.checkpoints if s < first])
    assert_refuses_to_start(log, "does not match its latest signed checkpoint")


# -- deleted rows -------------------------------------------------------------------------
def test_deleted_middle_row_is_named(log: Log) -> None:
    gone = log.target_seq
    with attacker(log, "entries_no_delete") as conn:
        conn.execute("DELETE FROM entries WHERE seq = ?", (gone,))

    report = assert_detected(log)
    assert report.problems[0] == (
        f"entry {gone} missing: the log jumps from {gone - 1} to {gone + 1} (rows deleted)"
    )
    assert report.entries == log.size - 1
    assert log.first_checkpoint_covering(gone) in failed_checkpoints(report)
    assert any(
        p.startswith(f"checkpoint at size {log.size} but the log has only {log.size - 1} entries")
        for p in report.problems
    )
    assert_refuses_to_start(
        log, f"log has {log.size - 1} entries but its latest signed checkpoint covers {log.size}"
    )


def test_deleted_middle_row_is_reported_as_one_gap(log: Log) -> None:
    gone = log.target_seq
    with attacker(log, "entries_no_delete") as conn:
        conn.execute("DELETE FROM entries WHERE seq = ?", (gone,))
    report = verify(log.path)
    assert [p for p in report.problems if "missing" in p] == [
        f"entry {gone} missing: the log jumps from {gone - 1} to {gone + 1} (rows deleted)"
    ]


def test_deleted_last_row_with_its_checkpoint_left(log: Log) -> None:
    with attacker(log, "entries_no_delete") as conn:
        conn.execute("DELETE FROM entries WHERE seq = ?", (log.size - 1,))

    report = assert_detected(log)
    assert report.problems == [
        f"checkpoint at size {log.size} but the log has only "
        f"{log.size - 1} entries (entries removed from the end)"
    ]
    assert_refuses_to_start(
        log, f"log has {log.size - 1} entries but its latest signed checkpoint covers {log.size}"
    )


def test_deleted_last_row_and_its_checkpoint_needs_an_outside_checkpoint(log: Log) -> None:
    """LIMITATION, by design of any self-contained log: the last entry (the review, committed
    alone in its own batch) deleted together with the checkpoint that covers it leaves a
    log that is exactly an earlier, honest state of itself: every remaining entry and
    signed checkpoint is genuine and consistent. Nothing in the data directory points at
    the removed entry, so `verify` cannot see it. It is caught only against a checkpoint
    kept outside the data directory (a client, a witness, a published tree head)."""
    with read_only(log.path) as store:
        kept = store.latest_checkpoint()  # what an outside party holds
    assert kept is not None and kept.size == log.size
    with attacker(log, "entries_no_delete", "checkpoints_no_delete") as conn:
        conn.execute("DELETE FROM entries WHERE seq = ?", (log.size - 1,))
        conn.execute("DELETE FROM checkpoints WHERE size = ?", (log.size,))

    report = verify(log.path)
    assert report.ok, report.problems  # what verify DOES say: a clean, shorter log
    assert report.entries == report.latest_size == log.size - 1
    cli = run_cli("audit", "verify", "--data-dir", str(log.path))
    assert cli.returncode == 0 and flat(cli.stdout).startswith(f"OK {log.size - 1} entries")

    # the kept checkpoint, checked against the truncated log, exposes the deletion
    with read_only(log.path) as store:
        outside = verify_log(
            store.iter_entries(),
            [*store.checkpoints(), kept],
            CheckpointVerifier(store.vkey),
            origin=store.origin,
        )
    assert outside.problems == [
        f"checkpoint at size {log.size} but the log has only "
        f"{log.size - 1} entries (entries removed from the end)"
    ]


def test_truncation_inside_a_batch_leaves_entries_uncovered(log: Log) -> None:
    """Deleting the tail and every checkpoint that covers it is only invisible if the cut
    falls exactly on a batch boundary (see above); inside a batch, the rest of the batch is
    left without a checkpoint."""
    # the last batch of several entries: delete its last entry, everything after it, and
    # every checkpoint that covers any of them
    previous, batch_end = next(
        (a, b)
        for a, b in zip(log.checkpoints[-2::-1], log.checkpoints[::-1], strict=False)
        if b - a >= 2
    )
    cut = batch_end - 1
    with attacker(log, "entries_no_delete", "checkpoints_no_delete") as conn:
        conn.execute("DELETE FROM entries WHERE seq >= ?", (cut,))
        conn.execute("DELETE FROM checkpoints WHERE size > ?", (cut,))

    report = assert_detected(log)
    assert report.problems == [
        f"entries {previous}..{cut - 1} are not covered by any signed checkpoint (appended "
        "outside Warden, or forged)"
    ]


# -- moved and forged rows ----------------------------------------------------------------
def test_swapped_rows_are_named(log: Log) -> None:
    i, j = sorted((log.other_seq, log.target_seq))
    with attacker(log, "entries_no_update") as conn:
        row_i = conn.execute(
            "SELECT kind, decision_id, outcome, leaf_hash, data FROM entries WHERE seq = ?", (i,)
        ).fetchone()
        row_j = conn.execute(
            "SELECT kind, decision_id, outcome, leaf_hash, data FROM entries WHERE seq = ?", (j,)
        ).fetchone()
        update = (
            "UPDATE entries SET kind = ?, decision_id = ?, outcome = ?, leaf_hash = ?, "
            "data = ? WHERE seq = ?"
        )
        conn.execute(update, (*row_j, i))
        conn.execute(update, (*row_i, j))

    report = assert_detected(log)
    assert (
        f"entry {i}: the record inside says it is entry {j} (rows swapped or moved)"
        in report.problems
    )
    assert (
        f"entry {j}: the record inside says it is entry {i} (rows swapped or moved)"
        in report.problems
    )
    assert named_entries(report) == {i, j}
    assert failed_checkpoints(report)[0] == log.first_checkpoint_covering(i)


def test_forged_row_appended_after_the_last_entry(log: Log) -> None:
    seq = log.size
    with attacker(log) as conn:  # INSERT is allowed: no trigger to drop
        kind, _, outcome, data = read_entry(conn, log.target_seq)
        envelope = json.loads(data)
        forged_id = "01a20000-0000-7000-8000-000000000001"
        envelope.update(seq=seq, decision_id=forged_id, ts="2030-01-01T00:00:00.000000Z")
        envelope["body"]["decision_id"] = forged_id
        forged = canonical_json(envelope)  # a correct envelope ...
        conn.execute(
            "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, kind, forged_id, outcome, None, envelope["ts"], leaf_hash(forged), forged),
        )  # ... with a correct leaf hash

    report = assert_detected(log)
    assert report.problems == [
        f"entries {seq}..{seq} are not covered by any signed checkpoint "
        "(appended outside Warden, or forged)"
    ]
    assert report.entries == log.size + 1
    assert_refuses_to_start(
        log, f"log has {log.size + 1} entries but its latest signed checkpoint covers {log.size}"
    )


# -- forged checkpoints -------------------------------------------------------------------
def test_checkpoint_resigned_by_another_key_with_the_same_name(log: Log) -> None:
    size = log.checkpoints[len(log.checkpoints) // 2]
    with attacker(log, "checkpoints_no_update") as conn:
        origin = conn.execute("SELECT value FROM meta WHERE key = 'origin'").fetchone()[0]
        root = bytes(
            conn.execute("SELECT root FROM checkpoints WHERE size = ?", (size,)).fetchone()[0]
        )
        forger = CheckpointSigner.generate(origin)  # the same key name as the real signer
        note = forger.sign(Checkpoint(origin, size, root))  # the correct size and root
        conn.execute("UPDATE checkpoints SET note = ? WHERE size = ?", (note, size))

    report = assert_detected(log)
    assert len(report.problems) == 1
    problem = report.problems[0]
    assert problem.startswith(f"checkpoint at size {size}: signature check failed: ")
    assert "signed by a different key with that name" in problem
    assert forger.key_id.hex() in problem
    assert report.checkpoints_ok == len(log.checkpoints) - 1


def test_rewritten_log_resigned_with_attacker_key_needs_a_pinned_vkey(log: Log) -> None:
    """An attacker who rewrites the log, re-signs every checkpoint with their own key and
    replaces keys/checkpoint.vkey passes a verify that trusts the data directory's key file.
    Only a verifier key pinned out of band (`--vkey`) catches it."""
    real_vkey = (log.path / "keys" / "checkpoint.vkey").read_text().strip()
    with attacker(log, "entries_no_update", "checkpoints_no_update") as conn:
        origin = conn.execute("SELECT value FROM meta WHERE key = 'origin'").fetchone()[0]
        _, _, _, data = read_entry(conn, log.target_seq)
        envelope = json.loads(data)
        envelope["body"]["request"]["inputs"]["amount"] = 42.42
        forged = canonical_json(envelope)
        conn.execute(
            "UPDATE entries SET data = ?, leaf_hash = ? WHERE seq = ?",
            (forged, leaf_hash(forged), log.target_seq),
        )
        tree = MerkleTree(
            bytes(r[0]) for r in conn.execute("SELECT leaf_hash FROM entries ORDER BY seq")
        )
        forger = CheckpointSigner.generate(origin)
        for size in log.checkpoints:
            root = tree.root(size)
            conn.execute(
                "UPDATE checkpoints SET root = ?, note = ? WHERE size = ?",
                (root, forger.sign(Checkpoint(origin, size, root)), size),
            )
    (log.path / "keys" / "checkpoint.vkey").write_text(forger.vkey + "\n")

    assert verify(log.path).ok  # the data directory's own key file vouches for the forgery
    pinned = verify(log.path, vkey=real_vkey)
    assert not pinned.ok and pinned.checkpoints_ok == 0
    assert len(pinned.problems) == len(log.checkpoints)
    assert all("signature check failed" in p for p in pinned.problems)
    cli = run_cli("audit", "verify", "--data-dir", str(log.path), "--vkey", real_vkey)
    assert cli.returncode == 1 and flat(cli.stdout).startswith(
        f"FAIL checkpoint at size {log.checkpoints[0]}: signature check failed"
    )


def test_forged_note_with_markup_is_reported_not_rendered(log: Log) -> None:
    size = log.checkpoints[1]
    with attacker(log, "checkpoints_no_update") as conn:
        conn.execute(
            "UPDATE checkpoints SET note = ? WHERE size = ?",
            (f"forged\n{size}\n\n[/red] [bold]x\n", size),
        )
    report = assert_detected(log)
    assert "[/red] [bold]x" in report.problems[0]


# -- many problems ------------------------------------------------------------------------
def test_problem_list_is_bounded(log: Log) -> None:
    with attacker(log, "entries_no_update") as conn:
        for seq in range(log.size):
            _, _, _, data = read_entry(conn, seq)
            envelope = json.loads(data)
            envelope.update(seq=seq + 1000, kind="forged")
            # four problems per entry: not canonical, wrong seq, wrong kind, wrong leaf hash
            conn.execute(
                "UPDATE entries SET data = ? WHERE seq = ?",
                (json.dumps(envelope, indent=1).encode(), seq),
            )

    report = assert_detected(log)
    assert len(report.problems) == MAX_PROBLEMS
    assert report.more_problems >= 4 * log.size - MAX_PROBLEMS
    assert report.problems[:4] == [
        "entry 0: bytes are not canonical JSON (record edited)",
        "entry 0: the record inside says it is entry 1000 (rows swapped or moved)",
        "entry 0: index columns disagree with the record (row edited)",
        "entry 0: record does not hash to its stored leaf hash (record edited)",
    ]
    cli = run_cli("audit", "verify", "--data-dir", str(log.path))
    lines = cli.stdout.strip().splitlines()
    assert sum(line.startswith("FAIL ") for line in lines) == MAX_PROBLEMS + 1
    assert flat(lines[-1]) == f"FAIL … and {report.more_problems} more problems"
