"""The embedded audit store: SQLite in WAL mode with group commit.

One writer thread owns all appends. It takes whatever entries are waiting, writes them in
one transaction together with a signed checkpoint of the new tree head, commits (one
fsync, `synchronous=FULL`), and only then resolves the callers' futures. Concurrent
requests therefore share one transaction and one fsync, and every committed entry is
covered by a signed checkpoint written atomically with it.

Nothing updates or deletes: triggers refuse UPDATE and DELETE on every audit table."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import queue
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path

from warden.audit.checkpoint import Checkpoint, CheckpointError, CheckpointSigner
from warden.audit.entry import (
    AppendResult,
    NewEntry,
    StoredCheckpoint,
    StoredEntry,
    envelope_bytes,
    store_ts,
)
from warden.audit.merkle import MerkleTree, leaf_hash
from warden.canonical import content_id
from warden.errors import AuditCommitError, DataDirBusyError, WardenError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    decision_id TEXT,
    outcome TEXT,
    unique_key TEXT,
    ts TEXT NOT NULL,
    leaf_hash BLOB NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_decision ON entries (decision_id);
CREATE INDEX IF NOT EXISTS entries_by_time ON entries (ts);
CREATE UNIQUE INDEX IF NOT EXISTS entries_by_unique_key ON entries (unique_key)
    WHERE unique_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS entries_by_outcome ON entries (outcome) WHERE outcome = 'review';
CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS blobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    data BLOB NOT NULL,
    stored_at TEXT NOT NULL
);
"""
APPEND_ONLY_TABLES = ("meta", "entries", "checkpoints", "blobs")
MAX_BATCH = 512


def utc_now() -> str:
    return store_ts(datetime.now(UTC))


def _row_entry(row: tuple[int, str, str | None, str, bytes, bytes]) -> StoredEntry:
    return StoredEntry(row[0], row[1], row[2], row[3], bytes(row[4]), bytes(row[5]))


_ENTRY_COLS = "seq, kind, decision_id, ts, leaf_hash, data"


class _Pending:
    """An entry waiting for the writer, and who to tell: a thread future, or an asyncio
    future on a loop (resolved in one loop wake-up per batch, not one per entry)."""

    __slots__ = ("afuture", "entry", "future", "loop")

    def __init__(self, entry: NewEntry, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.entry = entry
        self.loop = loop
        self.future: Future[AppendResult] | None = None
        self.afuture: asyncio.Future[AppendResult] | None = None
        if loop is None:
            self.future = Future()
        else:
            self.afuture = loop.create_future()


def _settle(items: list[tuple[_Pending, AppendResult | BaseException]]) -> None:
    for pending, outcome in items:
        if pending.afuture is not None and not pending.afuture.done():
            if isinstance(outcome, BaseException):
                pending.afuture.set_exception(outcome)
            else:
                pending.afuture.set_result(outcome)
        elif pending.future is not None:
            if isinstance(outcome, BaseException):
                pending.future.set_exception(outcome)
            else:
                pending.future.set_result(outcome)


def _deliver(items: list[tuple[_Pending, AppendResult | BaseException]]) -> None:
    """Resolve futures: thread futures directly, asyncio ones with one call per loop."""
    by_loop: dict[
        asyncio.AbstractEventLoop, list[tuple[_Pending, AppendResult | BaseException]]
    ] = {}
    direct = []
    for item in items:
        loop = item[0].loop
        if loop is None:
            direct.append(item)
        else:
            by_loop.setdefault(loop, []).append(item)
    _settle(direct)
    for loop, group in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(_settle, group)


#: how long the background WAL restart may hold commits off (see `_wal_checkpoint_loop`)
WAL_RESTART_WAIT_MS = 5
#: how long the background WAL restart waits for a commit in progress to finish
WAL_RESTART_LOCK_WAIT_S = 0.1
#: the WAL file is cut back to this size when it restarts after a burst
WAL_SIZE_LIMIT = 64 * 1024 * 1024


class SQLiteAuditStore:
    """Audit store in `<data_dir>/audit.db`. Open with `writable=True` in exactly one
    process (a lock file enforces it); read-only opens are fine alongside."""

    def __init__(
        self,
        data_dir: Path,
        *,
        writable: bool = True,
        on_commit: Callable[[int, float], None] | None = None,
        signer: CheckpointSigner | None = None,
        commit_delay: float = 0.0002,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / "audit.db"
        self.writable = writable
        self._on_commit = on_commit
        self._local = threading.local()
        self._lock_fd: int | None = None
        self.commit_delay = commit_delay
        self._busy_timeout_ms = 10_000
        self._busy_applied = 10_000
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._checkpointer: threading.Thread | None = None
        self._stopping = threading.Event()
        #: one commit at a time, whichever thread runs it (the writer thread, commit_now)
        self._commit_lock = threading.Lock()
        self.wal_checkpoint_interval = 0.5
        #: see `commit_inline_when`
        self._inline_when: Callable[[], bool] | None = None
        self.inline_commits = 0
        if writable:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._take_lock()
        elif not self.path.exists():
            raise WardenError(f"no audit log at {self.path} (is the data directory right?)")
        try:
            self._open(signer)
        except BaseException:
            self.close()  # release the lock and connections: a refused open leaves nothing
            raise

    def _open(self, signer: CheckpointSigner | None) -> None:
        writable = self.writable
        conn = self._connect()
        if writable:
            conn.executescript(SCHEMA)
            for table in APPEND_ONLY_TABLES:
                for op in ("UPDATE", "DELETE"):
                    conn.execute(
                        f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON "
                        f"{table} BEGIN SELECT RAISE(ABORT, 'audit store is append-only'); END"
                    )
            if conn.execute("SELECT 1 FROM meta WHERE key='origin'").fetchone() is None:
                origin = f"warden.local/{secrets.token_hex(8)}"
                conn.execute("INSERT INTO meta VALUES ('origin', ?)", (origin,))
        row = conn.execute("SELECT value FROM meta WHERE key='origin'").fetchone()
        if row is None:
            raise WardenError(f"{self.path}: not a Warden audit store (no origin)")
        self.origin: str = row[0]
        key_path = self.data_dir / "keys" / "checkpoint-ed25519.pem"
        self.signer = signer
        if writable and signer is None:
            self.signer = CheckpointSigner.load_or_create(key_path, self.origin)
        vkey_path = self.data_dir / "keys" / "checkpoint.vkey"
        if self.signer is not None:
            self.vkey: str = self.signer.vkey
            if writable and not vkey_path.exists():
                vkey_path.write_text(self.vkey + "\n")
        elif vkey_path.exists():
            self.vkey = vkey_path.read_text().strip()
        else:
            self.vkey = ""
        self._tree = MerkleTree()
        self._load_tree()
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        if writable:
            self._check_head()
            self._writer = threading.Thread(
                target=self._write_loop, name="audit-writer", daemon=True
            )
            self._writer.start()
            self._checkpointer = threading.Thread(
                target=self._wal_checkpoint_loop, name="audit-wal-checkpoint", daemon=True
            )
            self._checkpointer.start()

    # -- connections ---------------------------------------------------------------------
    def _take_lock(self) -> None:
        fd = os.open(self.data_dir / "warden.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            owner = (self.data_dir / "warden.lock").read_text().strip() or "?"
            raise DataDirBusyError(
                f"data directory {self.data_dir} is in use by another Warden process "
                f"(pid {owner}); stop it, or send requests to it over HTTP"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            with self._connections_lock:
                self._connections.append(conn)
            conn.execute("PRAGMA busy_timeout = 10000")
            if self.writable:
                conn.execute("PRAGMA journal_mode = WAL")
                # WAL checkpoints run in their own thread (see _wal_checkpoint_loop), never
                # inside a commit, so a commit never stalls for copying pages to the db file
                conn.execute("PRAGMA wal_autocheckpoint = 0")
                conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            conn.execute("PRAGMA synchronous = FULL")
            self._local.conn = conn
        return conn

    def _load_tree(self) -> None:
        tree = MerkleTree()
        cur = self._connect().execute("SELECT seq, leaf_hash FROM entries ORDER BY seq")
        for seq, lh in cur:
            if seq != tree.size:
                break  # a gap: verify will name it; serve only the contiguous prefix
            tree.append(bytes(lh))
        self._tree = tree

    def _check_head(self) -> None:
        """Fail closed at start unless the log matches its latest signed checkpoint: the
        signature verifies, the tree over the stored leaf hashes has the signed root, and
        the entries of the last batch hash to their leaves. (`warden audit verify` checks
        every entry and every checkpoint.)"""
        latest = self.latest_checkpoint()
        count = self._count()
        if latest is None:
            if count:
                raise WardenError(
                    f"{self.path}: entries without any checkpoint; run `warden audit verify`"
                )
            return
        assert self.signer is not None
        try:
            signed = self.signer.verifier().verify(latest.note)
        except CheckpointError as exc:
            raise WardenError(
                f"{self.path}: latest checkpoint's signature does not verify ({exc}); "
                "run `warden audit verify`"
            ) from None
        if self._tree.size != count or signed.size != self._tree.size:
            raise WardenError(
                f"{self.path}: log has {count} entries but its latest signed checkpoint "
                f"covers {signed.size}; run `warden audit verify`"
            )
        if self._tree.root(signed.size) != signed.root:
            raise WardenError(
                f"{self.path}: log does not match its latest signed checkpoint; "
                "run `warden audit verify`"
            )
        previous = (
            self._connect()
            .execute(
                "SELECT size FROM checkpoints WHERE size < ? ORDER BY size DESC LIMIT 1",
                (signed.size,),
            )
            .fetchone()
        )
        for entry in self.iter_entries(previous[0] if previous else 0):
            if leaf_hash(entry.data) != entry.leaf_hash:
                raise WardenError(
                    f"{self.path}: entry {entry.seq} does not hash to its leaf; "
                    "run `warden audit verify`"
                )

    def _count(self) -> int:
        return int(self._connect().execute("SELECT count(*) FROM entries").fetchone()[0])

    # -- writing -------------------------------------------------------------------------
    def submit(self, entry: NewEntry) -> Future[AppendResult]:
        """Queue an entry; the returned future resolves when it is durable."""
        pending = _Pending(entry)
        self._enqueue(pending)
        assert pending.future is not None
        return pending.future

    def submit_async(self, entry: NewEntry) -> asyncio.Future[AppendResult]:
        """Like `submit`, for a caller on an asyncio loop."""
        pending = _Pending(entry, asyncio.get_running_loop())
        if self._inline_when is not None and pending.loop is not None:
            # decide one loop pass later: the tasks ready now run to their own commits
            # first, so a burst of requests is seen as one and still shares a commit
            pending.loop.call_soon(self._inline_or_enqueue, pending)
        else:
            self._enqueue(pending)
        assert pending.afuture is not None
        return pending.afuture

    def commit_inline_when(self, alone: Callable[[], bool] | None) -> None:
        """Let `submit_async` commit on the caller's own thread, skipping the hand-off to
        the writer thread and back, when `alone()` is true and no other entry waits.

        The owner says when that is safe: the commit (its fsync included) blocks the
        caller's event loop, which costs nothing when nothing else runs on it — the
        gateway passes "this is the only request in flight" — but would stop group commit
        under load. The entry is as durable as on the writer thread: same transaction,
        same signed checkpoint, under the same commit lock."""
        self._inline_when = alone

    def _inline_or_enqueue(self, pending: _Pending) -> None:
        alone = self._inline_when is not None and self._queue.empty() and self._inline_when()
        if not alone or not self._commit_inline(pending):
            self._enqueue(pending)

    def _commit_inline(self, pending: _Pending) -> bool:
        """Commit one entry now, on this thread; False when the writer is busy or not
        running (the entry then queues, and `_enqueue` reports a stopped writer)."""
        if not self.writable or self._writer is None or not self._writer.is_alive():
            return False
        if not self._commit_lock.acquire(blocking=False):
            return False
        loop, pending.loop = pending.loop, None  # settle on this thread, not via the loop
        try:
            self._commit_batch_locked(self._connect(), [pending])
        finally:
            self._commit_lock.release()
            pending.loop = loop
        self.inline_commits += 1
        return True

    def _enqueue(self, pending: _Pending) -> None:
        error: Exception | None = None
        if not self.writable:
            error = WardenError("audit store opened read-only")
        elif self._writer is None or not self._writer.is_alive():
            error = AuditCommitError("audit writer is not running")
        if error is not None:
            _settle([(pending, error)])
        else:
            self._queue.put(pending)

    def _wal_checkpoint_loop(self) -> None:
        """Copy committed WAL frames into the database file in the background, and keep
        the WAL from growing without end.

        A PASSIVE pass copies without blocking anyone. But a writer starts the WAL over
        from its beginning only if it begins while every frame is copied already, and
        under steady load that never happens: the WAL then grew by every commit (66 MB
        after 2,500 one-entry commits, measured), and every commit appended to a growing
        file. So a RESTART follows each pass: it copies the few frames written meanwhile
        with new commits held off, then the next commit writes the WAL from its start
        again, over blocks already allocated. It waits at most `WAL_RESTART_WAIT_MS` for a
        reader that still holds an old snapshot (a long `audit verify`, say) and then gives
        up, so commits are held off for that wait at most plus the copy of those few frames.

        The RESTART takes this process's commit lock first (every commit and blob write
        here goes through it, and the file lock keeps other processes from writing). Racing the
        committers through SQLite's busy handler instead lost under steady load: its
        sleeps rarely met the lock free, so the WAL was never started over (CI, 2026-12)."""
        conn = self._connect()
        conn.execute(f"PRAGMA busy_timeout = {WAL_RESTART_WAIT_MS}")
        while not self._stopping.wait(self.wal_checkpoint_interval):
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                if self._commit_lock.acquire(timeout=WAL_RESTART_LOCK_WAIT_S):
                    try:
                        conn.execute("PRAGMA wal_checkpoint(RESTART)")
                    finally:
                        self._commit_lock.release()

    def _write_loop(self) -> None:
        conn = self._connect()
        last_batch = 1
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            if self._queue.empty() and self.commit_delay and last_batch > 1:
                # let concurrent callers join this commit (like PostgreSQL's commit_delay):
                # a short sleep hands the GIL to the request threads for a moment. Only
                # when the previous commit had company (like its commit_siblings): a lone
                # caller would just wait the delay out (~0.3 ms per commit, measured)
                time.sleep(self.commit_delay)
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                batch.append(item)
            last_batch = len(batch)
            self._commit_batch(conn, batch)

    def set_busy_timeout(self, milliseconds: int) -> None:
        """How long a commit waits for a lock held by another connection before failing."""
        self._busy_timeout_ms = milliseconds

    def commit_now(self, entries: list[NewEntry]) -> list[AppendResult | BaseException]:
        """Commit `entries` on the calling thread, in one transaction (more than MAX_BATCH:
        several), and return each one's result or error once durable. For a caller that
        already batches, such as the writer service's event loop (`warden serve --workers`),
        which thus needs no hand-off to the writer thread and back per batch."""
        if not self.writable:
            raise WardenError("audit store opened read-only")
        pending = [_Pending(entry) for entry in entries]
        conn = self._connect()
        for start in range(0, len(pending), MAX_BATCH):
            self._commit_batch(conn, pending[start : start + MAX_BATCH])
        out: list[AppendResult | BaseException] = []
        for p in pending:
            assert p.future is not None and p.future.done()
            error = p.future.exception()
            out.append(error if error is not None else p.future.result())
        return out

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[_Pending]) -> None:
        with self._commit_lock:
            self._commit_batch_locked(conn, batch)

    def _commit_batch_locked(self, conn: sqlite3.Connection, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        if self._busy_applied != self._busy_timeout_ms:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            self._busy_applied = self._busy_timeout_ms
        results: list[AppendResult] = []
        base = self._tree.size
        try:
            conn.execute("BEGIN IMMEDIATE")
            taken = self._taken_keys(conn, batch)
            rows = []
            ts = utc_now()
            ts_json = json.dumps(ts).encode()
            seq = base
            for pending in batch:
                entry = pending.entry
                if entry.unique_key is not None and entry.unique_key in taken:
                    holder = taken[entry.unique_key]
                    results.append(AppendResult(-1, ts, conflict=holder))
                    continue
                data = envelope_bytes(entry, seq, ts_json)
                lh = leaf_hash(data)
                rows.append(
                    (
                        seq,
                        entry.kind,
                        entry.decision_id,
                        entry.outcome,
                        entry.unique_key,
                        ts,
                        lh,
                        data,
                    )
                )
                if entry.unique_key is not None:
                    taken[entry.unique_key] = StoredEntry(
                        seq, entry.kind, entry.decision_id, ts, lh, data
                    )
                results.append(AppendResult(seq, ts, batch_size=len(batch)))
                seq += 1
            if rows:
                # one multi-row INSERT: one sqlite3_step, so the writer gives up and retakes
                # the GIL once per batch rather than once per row (each retake can wait for
                # the request thread's switch interval)
                values = ",".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(rows))
                conn.execute(
                    f"INSERT INTO entries VALUES {values}", [v for row in rows for v in row]
                )
                for row in rows:
                    self._tree.append(row[6])
                self._write_checkpoint(conn, ts)
            conn.execute("COMMIT")
        except BaseException as exc:  # fail closed: nobody gets a decision that is not durable
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self._load_tree()
            error = AuditCommitError(f"audit commit failed: {exc}")
            _deliver([(pending, error) for pending in batch])
            return
        if self._on_commit is not None:
            self._on_commit(len(rows), time.perf_counter() - started)
        _deliver(list(zip(batch, results, strict=True)))

    def _taken_keys(
        self, conn: sqlite3.Connection, batch: list[_Pending]
    ) -> dict[str, StoredEntry]:
        keys = [p.entry.unique_key for p in batch if p.entry.unique_key is not None]
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        cur = conn.execute(
            f"SELECT unique_key, {_ENTRY_COLS} FROM entries "
            f"WHERE unique_key IS NOT NULL AND unique_key IN ({marks})",
            keys,
        )
        return {row[0]: _row_entry(row[1:]) for row in cur}

    def _write_checkpoint(self, conn: sqlite3.Connection, ts: str) -> None:
        assert self.signer is not None
        size = self._tree.size
        root = self._tree.root()
        note = self.signer.sign(Checkpoint(self.origin, size, root))
        conn.execute("INSERT INTO checkpoints VALUES (?, ?, ?, ?)", (size, root, note, ts))

    def put_blob(self, kind: str, data: bytes) -> str:
        blob_id = content_id(data)
        conn = self._connect()
        with self._commit_lock:  # a write like a commit (the WAL restart counts on it)
            conn.execute(
                "INSERT OR IGNORE INTO blobs VALUES (?, ?, ?, ?)", (blob_id, kind, data, utc_now())
            )
        return blob_id

    # -- reading -------------------------------------------------------------------------
    def size(self) -> int:
        return self._tree.size

    def entry(self, seq: int) -> StoredEntry | None:
        row = (
            self._connect()
            .execute(f"SELECT {_ENTRY_COLS} FROM entries WHERE seq = ?", (seq,))
            .fetchone()
        )
        return _row_entry(row) if row else None

    def entries_for(self, decision_id: str) -> list[StoredEntry]:
        cur = self._connect().execute(
            f"SELECT {_ENTRY_COLS} FROM entries WHERE decision_id = ? ORDER BY seq", (decision_id,)
        )
        return [_row_entry(r) for r in cur]

    def by_unique_key(self, key: str) -> StoredEntry | None:
        row = (
            self._connect()
            .execute(f"SELECT {_ENTRY_COLS} FROM entries WHERE unique_key = ?", (key,))
            .fetchone()
        )
        return _row_entry(row) if row else None

    def iter_entries(self, start: int = 0) -> Iterator[StoredEntry]:
        cur = self._connect().execute(
            f"SELECT {_ENTRY_COLS} FROM entries WHERE seq >= ? ORDER BY seq", (start,)
        )
        for row in cur:
            yield _row_entry(row)

    def entries_between(
        self, since: str, until: str, kinds: Collection[str] | None = None
    ) -> Iterator[StoredEntry]:
        query = f"SELECT {_ENTRY_COLS} FROM entries WHERE ts >= ? AND ts < ?"
        args: list[str] = [since, until]
        if kinds is not None:
            query += f" AND kind IN ({', '.join('?' * len(kinds))})"
            args.extend(kinds)
        for row in self._connect().execute(query + " ORDER BY seq", args):
            yield _row_entry(row)

    def newest_entries(self, kinds: Collection[str]) -> Iterator[StoredEntry]:
        """Entries of `kinds`, newest first (read lazily: stop whenever you have enough)."""
        cur = self._connect().execute(
            f"SELECT {_ENTRY_COLS} FROM entries WHERE kind IN ({', '.join('?' * len(kinds))}) "
            "ORDER BY seq DESC",
            list(kinds),
        )
        try:
            for row in cur:
                yield _row_entry(row)
        finally:  # a reader that stops early must not leave the statement open
            cur.close()

    def entries_of_kind(self, kind: str) -> list[StoredEntry]:
        cur = self._connect().execute(
            f"SELECT {_ENTRY_COLS} FROM entries WHERE kind = ? ORDER BY seq", (kind,)
        )
        return [_row_entry(r) for r in cur]

    def kinds_since(self, start: int) -> set[str]:
        """The kinds of the entries from `start` on (a worker watching for activations)."""
        cur = self._connect().execute("SELECT DISTINCT kind FROM entries WHERE seq >= ?", (start,))
        return {row[0] for row in cur}

    def checkpoints(self) -> Iterator[StoredCheckpoint]:
        cur = self._connect().execute(
            "SELECT size, root, note, created_at FROM checkpoints ORDER BY size"
        )
        for size, root, note, created in cur:
            yield StoredCheckpoint(size, bytes(root), note, created)

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        row = (
            self._connect()
            .execute(
                "SELECT size, root, note, created_at FROM checkpoints ORDER BY size DESC LIMIT 1"
            )
            .fetchone()
        )
        return StoredCheckpoint(row[0], bytes(row[1]), row[2], row[3]) if row else None

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return self._tree.inclusion_proof(index, size)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        return self._tree.consistency_proof(size1, size2)

    def review_queue(self, limit: int = 100) -> list[StoredEntry]:
        cur = self._connect().execute(
            f"SELECT {_ENTRY_COLS} FROM entries d"
            " WHERE d.outcome = 'review' AND d.kind = 'decision' AND NOT EXISTS"
            " (SELECT 1 FROM entries r WHERE r.unique_key = 'review:' || d.decision_id)"
            " ORDER BY d.seq LIMIT ?",
            (limit,),
        )
        return [_row_entry(r) for r in cur]

    def get_blob(self, blob_id: str) -> tuple[str, bytes] | None:
        row = (
            self._connect()
            .execute("SELECT kind, data FROM blobs WHERE id = ?", (blob_id,))
            .fetchone()
        )
        return (row[0], bytes(row[1])) if row else None

    def refresh(self) -> None:
        """Catch the tree up with what the writer appended since (read-only opens): reads
        only the new leaves, so a worker can call it on every size or proof request."""
        tree = self._tree
        cur = self._connect().execute(
            "SELECT seq, leaf_hash FROM entries WHERE seq >= ? ORDER BY seq", (tree.size,)
        )
        for seq, lh in cur:
            if seq != tree.size:
                break  # a gap: as in _load_tree, serve only the contiguous prefix
            tree.append(bytes(lh))

    def close(self) -> None:
        """Stop the writer (after it commits what is queued), close every connection this
        store opened in any thread, and release the data-directory lock. Idempotent."""
        self._stopping.set()
        if self._writer is not None and self._writer.is_alive():
            self._queue.put(None)
            self._writer.join()
        if self._checkpointer is not None and self._checkpointer.is_alive():
            self._checkpointer.join()
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
