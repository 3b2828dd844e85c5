"""An AuditStore for request workers: appends go to the one writer process over its Unix
socket (`warden.audit.writer_service`), reads come from a read-only open of the same
SQLite database.

`submit_async` uses one pipelined connection per event loop, written and read on that
loop (no thread hop); `submit` and `put_blob` use a blocking connection, one request at a
time (start-up, blobs, threads off the loop). If the connection to the writer is lost,
every entry in flight fails with AuditCommitError and so does every later one: a worker
never acknowledges a decision it cannot make durable. `on_lost` is called once then, so
the worker can stop accepting requests."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import threading
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import cast

from warden.audit import wire
from warden.audit.entry import AppendResult, NewEntry, StoredCheckpoint, StoredEntry
from warden.audit.sqlite_store import SQLiteAuditStore
from warden.errors import AuditCommitError, WardenError

LOST = "audit writer connection lost: no decision can be made durable"


class _AsyncLink(asyncio.Protocol):
    """One pipelined connection on one event loop."""

    def __init__(self, store: RemoteAuditStore, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        #: frames not written yet: before the connection is made, or until the end of this
        #: loop pass (`_flush`), so the entries of requests that reach a commit in the same
        #: pass go out in one write
        self.backlog: list[bytes] = []
        self.flush_scheduled = False
        self.pending: dict[int, asyncio.Future[AppendResult]] = {}
        self.ids = itertools.count(1)
        self.buffer = bytearray()
        self.lost: str | None = None
        self.connecting: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.lost is not None:  # closed while connecting: its callers were told so
            transport.close()
            self.backlog = []
            return
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if self.backlog:
            self.transport.write(b"".join(self.backlog))
            self.backlog = []

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(LOST if exc is None else f"{LOST} ({exc})")

    def fail(self, reason: str) -> None:
        if self.lost is not None:
            return
        self.lost = reason
        self.transport = None
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(AuditCommitError(reason))
        self.store._link_lost(reason)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            frames = wire.split_frames(self.buffer)
        except ValueError as exc:
            self.fail(f"{LOST} ({exc})")
            return
        for request_id, status, payload in frames:
            future = self.pending.pop(request_id, None)
            if future is None or future.done():
                continue
            answer = wire.decode_answer(status, payload)
            if isinstance(answer, AppendResult):
                future.set_result(answer)
            elif isinstance(answer, WardenError):
                future.set_exception(answer)
            else:
                future.set_exception(AuditCommitError(f"audit writer: unexpected answer {answer}"))

    def submit(self, entry: NewEntry) -> asyncio.Future[AppendResult]:
        future: asyncio.Future[AppendResult] = self.loop.create_future()
        if self.lost is not None:
            future.set_exception(AuditCommitError(self.lost))
            return future
        request_id = next(self.ids)
        self.pending[request_id] = future
        self.backlog.append(wire.append_request(request_id, entry))
        if self.transport is not None and not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self.flush_scheduled = False
        if self.transport is not None and self.backlog and self.lost is None:
            self.transport.write(b"".join(self.backlog))
            self.backlog = []

    async def connect(self, path: str) -> None:
        try:
            await self.loop.create_unix_connection(lambda: self, path)
        except OSError as exc:
            self.fail(f"cannot reach the audit writer at {path}: {exc}")

    def close(self) -> None:
        self.lost = self.lost or "audit store closed"
        if self.connecting is not None and not self.connecting.done():
            self.connecting.cancel()
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(AuditCommitError(self.lost))
        if self.transport is not None:
            self.transport.close()


class _SyncLink:
    """A blocking connection: one request, then its answer."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(path)
        except OSError as exc:
            self.sock.close()
            raise AuditCommitError(f"cannot reach the audit writer at {path}: {exc}") from None
        self.ids = itertools.count(1)
        self.buffer = bytearray()

    def call(self, make: Callable[[int], bytes]) -> AppendResult | str | WardenError:
        request_id = next(self.ids)
        try:
            self.sock.sendall(make(request_id))
            while True:
                for rid, status, payload in wire.split_frames(self.buffer):
                    if rid == request_id:
                        return wire.decode_answer(status, payload)
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    raise OSError("connection closed")
                self.buffer += chunk
        except (OSError, ValueError) as exc:
            raise AuditCommitError(f"{LOST} ({exc})") from None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class RemoteAuditStore:
    """The worker side of `warden serve --workers N`. Reads: a read-only SQLiteAuditStore."""

    def __init__(self, data_dir: Path, socket_path: Path) -> None:
        self.data_dir = Path(data_dir)
        self.socket_path = str(socket_path)
        self.reader = SQLiteAuditStore(self.data_dir, writable=False)
        self.origin = self.reader.origin
        self.vkey = self.reader.vkey
        #: called once (from the loop that noticed) when the writer connection is lost
        self.on_lost: Callable[[str], None] | None = None
        self._links: dict[asyncio.AbstractEventLoop, _AsyncLink] = {}
        self._sync: _SyncLink | None = None
        self._sync_lock = threading.Lock()
        self._tree_lock = threading.Lock()
        self._lost: str | None = None
        self._closed = False
        #: the log's size when the worker started reading its state (see warden.worker)
        self.opened_at_size = 0

    # -- writing -------------------------------------------------------------------------
    def submit_async(self, entry: NewEntry) -> asyncio.Future[AppendResult]:
        loop = asyncio.get_running_loop()
        link = self._links.get(loop)
        if link is None:
            # a link per loop (a worker has one); forget those of loops closed since
            self._links = {k: v for k, v in self._links.items() if not k.is_closed()}
            link = self._links[loop] = _AsyncLink(self, loop)
            if self._lost is not None or self._closed:
                link.lost = self._lost or "audit store closed"
            else:
                link.connecting = loop.create_task(link.connect(self.socket_path))
        return link.submit(entry)

    async def connect(self) -> None:
        """Open this loop's pipelined connection now (a worker does it before listening,
        so a lost writer is noticed even while no request is in flight)."""
        loop = asyncio.get_running_loop()
        if loop not in self._links:
            link = self._links[loop] = _AsyncLink(self, loop)
            await link.connect(self.socket_path)

    def submit(self, entry: NewEntry) -> Future[AppendResult]:
        future: Future[AppendResult] = Future()
        try:
            answer = self._call(lambda rid: wire.append_request(rid, entry))
            if not isinstance(answer, AppendResult):
                raise AuditCommitError(f"audit writer: unexpected answer {answer}")
            future.set_result(answer)
        except WardenError as exc:
            future.set_exception(exc)
        return future

    def put_blob(self, kind: str, data: bytes) -> str:
        answer = self._call(lambda rid: wire.blob_request(rid, kind, data))
        if not isinstance(answer, str):
            raise AuditCommitError(f"audit writer: unexpected answer {answer}")
        return answer

    def _call(self, make: Callable[[int], bytes]) -> AppendResult | str:
        with self._sync_lock:
            if self._lost is not None:
                raise AuditCommitError(self._lost)
            if self._closed:
                raise AuditCommitError("audit store closed")
            if self._sync is None:
                self._sync = _SyncLink(self.socket_path)
            try:
                answer = self._sync.call(make)
            except AuditCommitError:
                self._sync.close()
                self._sync = None
                raise
        if isinstance(answer, WardenError):
            raise answer
        return answer

    def _link_lost(self, reason: str) -> None:
        if self._closed or self._lost is not None:
            return
        self._lost = reason
        if self.on_lost is not None:
            self.on_lost(reason)

    # -- reading (the read-only open; the tree catches up on demand) ----------------------
    def size(self) -> int:
        with self._tree_lock:
            self.reader.refresh()
            return self.reader.size()

    def entry(self, seq: int) -> StoredEntry | None:
        return self.reader.entry(seq)

    def entries_for(self, decision_id: str) -> list[StoredEntry]:
        return self.reader.entries_for(decision_id)

    def by_unique_key(self, key: str) -> StoredEntry | None:
        return self.reader.by_unique_key(key)

    def iter_entries(self, start: int = 0) -> Iterator[StoredEntry]:
        return self.reader.iter_entries(start)

    def entries_of_kind(self, kind: str) -> list[StoredEntry]:
        return self.reader.entries_of_kind(kind)

    def entries_between(
        self, since: str, until: str, kinds: Collection[str] | None = None
    ) -> Iterator[StoredEntry]:
        return self.reader.entries_between(since, until, kinds)

    def kinds_since(self, start: int) -> set[str]:
        return self.reader.kinds_since(start)

    def checkpoints(self) -> Iterator[StoredCheckpoint]:
        return self.reader.checkpoints()

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        return self.reader.latest_checkpoint()

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        with self._tree_lock:
            if size > self.reader.size():
                self.reader.refresh()
            return self.reader.inclusion_proof(index, size)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        with self._tree_lock:
            if size2 > self.reader.size():
                self.reader.refresh()
            return self.reader.consistency_proof(size1, size2)

    def review_queue(self, limit: int = 100) -> list[StoredEntry]:
        return self.reader.review_queue(limit)

    def get_blob(self, blob_id: str) -> tuple[str, bytes] | None:
        return self.reader.get_blob(blob_id)

    def close(self) -> None:
        """Close the writer connections (entries in flight fail) and the reader."""
        self._closed = True
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for link in list(self._links.values()):
            if link.loop is running:
                link.close()
            else:
                with contextlib.suppress(RuntimeError):  # its loop may be closed already
                    link.loop.call_soon_threadsafe(link.close)
        with self._sync_lock:
            if self._sync is not None:
                self._sync.close()
                self._sync = None
        self.reader.close()
