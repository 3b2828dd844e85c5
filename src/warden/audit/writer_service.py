"""The audit writer as a service: the one process that owns the writable SQLite store
serves appends to request workers over a Unix socket (`warden serve --workers N`).

Each connection is pipelined: a worker sends as many entries as it has in flight, and
each answer is written back when its commit has landed (durable), in commit order, not
request order. Group commit happens on the event loop itself: the entries that arrived in
one loop pass, from every connection, are committed in one transaction (`commit_now`);
while that commit waits for its fsync, the next entries queue up in the sockets and form
the next batch. No thread hand-off per batch, no delay to wait for company. A unique-key
conflict comes back as the AppendResult with `conflict` set, exactly as the in-process
store returns it; a failed commit as the same AuditCommitError. Answers settled in one
loop pass go out in one write per connection."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from pathlib import Path
from typing import cast

from warden.audit import wire
from warden.audit.entry import AppendResult, NewEntry
from warden.audit.sqlite_store import SQLiteAuditStore

log = logging.getLogger("warden.audit.writer")
#: under load, how long an entry may wait for others to join its commit (seconds)
COMMIT_DELAY = 0.001
#: a batch this large is committed at once
MAX_BATCH = 256


class _WriterProtocol(asyncio.Protocol):
    def __init__(self, service: WriterService) -> None:
        self.service = service
        self.loop = service.loop
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.out: list[bytes] = []
        self.flush_scheduled = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.service.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.service.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            frames = wire.split_frames(self.buffer)
        except ValueError as exc:
            log.warning("audit writer: dropping a connection that sent a bad frame: %s", exc)
            assert self.transport is not None
            self.transport.close()
            return
        for request_id, op, payload in frames:
            self._handle(request_id, op, payload)

    def _handle(self, request_id: int, op: int, payload: bytes) -> None:
        store = self.service.store
        try:
            if op == wire.APPEND:
                self.service.queue(self, request_id, wire.decode_append(payload))
            elif op == wire.BLOB:
                kind, data = wire.decode_blob(payload)
                done = self.loop.run_in_executor(None, store.put_blob, kind, data)
                done.add_done_callback(functools.partial(self._blob_answered, request_id))
            else:
                raise ValueError(f"unknown op {op}")
        except ValueError as exc:
            self._send(wire.error_answer(request_id, exc))

    def answered(self, request_id: int, outcome: AppendResult | BaseException) -> None:
        if isinstance(outcome, BaseException):
            self._send(wire.error_answer(request_id, outcome))
        else:
            self._send(wire.result_answer(request_id, outcome))

    def _blob_answered(self, request_id: int, future: asyncio.Future[str]) -> None:
        exc = future.exception()
        if exc is not None:
            self._send(wire.error_answer(request_id, exc))
        else:
            self._send(wire.blob_answer(request_id, future.result()))

    def _send(self, data: bytes) -> None:
        if self.closed:
            return  # the worker went away; its entries are committed all the same
        self.out.append(data)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        out, self.out = self.out, []
        if out and self.transport is not None and not self.closed:
            self.transport.write(b"".join(out))


class WriterService:
    """Serve `store` on the Unix socket at `path` (created 0600, replaced if stale)."""

    def __init__(
        self, store: SQLiteAuditStore, path: Path, *, commit_delay: float = COMMIT_DELAY
    ) -> None:
        self.store = store
        self.path = Path(path)
        self.loop = asyncio.get_running_loop()
        self.commit_delay = commit_delay
        self.connections: set[_WriterProtocol] = set()
        self._server: asyncio.AbstractServer | None = None
        self._waiting: list[tuple[_WriterProtocol, int, NewEntry]] = []
        self._last_batch = 1
        self._timer: asyncio.TimerHandle | None = None

    def queue(self, conn: _WriterProtocol, request_id: int, entry: NewEntry) -> None:
        """Take an entry for the next commit: at the end of this loop pass, or — when the
        last commit had company, i.e. under concurrent load — `commit_delay` later, so
        that more entries share its fixed cost (BEGIN/COMMIT, the checkpoint's signature,
        the fsync). One caller at a time never waits."""
        if not self._waiting:
            if self.commit_delay and self._last_batch > 1:
                self._timer = self.loop.call_later(self.commit_delay, self._commit)
            else:
                self.loop.call_soon(self._commit)
        self._waiting.append((conn, request_id, entry))
        if len(self._waiting) >= MAX_BATCH and self._timer is not None:
            self._timer.cancel()  # full: commit now
            self._timer = None
            self.loop.call_soon(self._commit)

    def _commit(self) -> None:
        self._timer = None
        batch, self._waiting = self._waiting, []
        if not batch:
            return
        self._last_batch = len(batch)
        try:
            outcomes = self.store.commit_now([entry for _, _, entry in batch])
        except Exception as exc:  # fail closed: every entry gets the error
            outcomes = [exc] * len(batch)
        for (conn, request_id, _), outcome in zip(batch, outcomes, strict=True):
            conn.answered(request_id, outcome)
        for conn in {conn for conn, _, _ in batch}:
            conn.flush()  # now, not on the next loop pass: these answers are durable

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old = os.umask(0o177)
        try:
            self._server = await self.loop.create_unix_server(
                lambda: _WriterProtocol(self), str(self.path), backlog=128
            )
        finally:
            os.umask(old)

    async def close(self) -> None:
        """Stop accepting, drop the connections (their committed entries stay), remove the
        socket file. The store itself is closed by its owner (which drains the queue)."""
        if self._server is not None:
            self._server.close()
            for conn in list(self.connections):
                if conn.transport is not None:
                    conn.flush()
                    conn.transport.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
