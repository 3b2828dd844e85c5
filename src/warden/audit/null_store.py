"""An audit store that keeps nothing: for measuring what durability costs (benchmarks
only — a gateway must never run on it).

It behaves like a store to its callers — an asyncio caller is resumed on a later loop
iteration, all entries submitted in one iteration together, as the real store resumes a
whole group commit with one wake-up — so a benchmark compares writing and fsync, not
"never suspending" against "suspending"."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterator
from concurrent.futures import Future

from warden.audit.entry import AppendResult, NewEntry, StoredCheckpoint, StoredEntry


class NullAuditStore:
    origin = "null"
    vkey = ""

    def __init__(self) -> None:
        self._size = 0
        self._waiting: list[tuple[asyncio.Future[AppendResult], AppendResult]] = []

    def submit(self, entry: NewEntry) -> Future[AppendResult]:
        future: Future[AppendResult] = Future()
        future.set_result(AppendResult(self._size, ""))
        self._size += 1
        return future

    def submit_async(self, entry: NewEntry) -> asyncio.Future[AppendResult]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[AppendResult] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._settle)
        self._waiting.append((future, self.submit(entry).result()))
        return future

    def _settle(self) -> None:
        waiting, self._waiting = self._waiting, []
        for future, result in waiting:
            if not future.done():
                future.set_result(result)

    def size(self) -> int:
        return self._size

    def entry(self, seq: int) -> StoredEntry | None:
        return None

    def entries_for(self, decision_id: str) -> list[StoredEntry]:
        return []

    def by_unique_key(self, key: str) -> StoredEntry | None:
        return None

    def iter_entries(self, start: int = 0) -> Iterator[StoredEntry]:
        return iter(())

    def checkpoints(self) -> Iterator[StoredCheckpoint]:
        return iter(())

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        return None

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return []

    def review_queue(self, limit: int = 100) -> list[StoredEntry]:
        return []

    def entries_between(
        self, since: str, until: str, kinds: Collection[str] | None = None
    ) -> Iterator[StoredEntry]:
        return iter(())

    def entries_of_kind(self, kind: str) -> list[StoredEntry]:
        return []

    def put_blob(self, kind: str, data: bytes) -> str:
        from warden.canonical import content_id

        return content_id(data)

    def get_blob(self, blob_id: str) -> tuple[str, bytes] | None:
        return None

    def close(self) -> None:
        pass
