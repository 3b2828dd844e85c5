"""The remote audit store against the real writer service: a writable SQLite store served
on a real Unix socket (its own event loop thread, as in the parent process), used by a
RemoteAuditStore from another loop, as a worker uses it."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from warden.audit import wire
from warden.audit.checkpoint import CheckpointVerifier
from warden.audit.entry import NewEntry
from warden.audit.merkle import leaf_hash, verify_inclusion
from warden.audit.remote_store import RemoteAuditStore
from warden.audit.sqlite_store import SQLiteAuditStore
from warden.audit.writer_service import WriterService
from warden.errors import AuditCommitError


class Writer:
    """The parent's side: the store and its service on a loop in a thread."""

    def __init__(self, data_dir: Path) -> None:
        self.store = SQLiteAuditStore(data_dir)
        self.path = data_dir / "audit.sock"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.service = self.call(self._start())

    async def _start(self) -> WriterService:
        service = WriterService(self.store, self.path)
        await service.start()
        return service

    def call(self, coro: object) -> WriterService:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)  # type: ignore[arg-type]

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.service.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.store.close()


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[Writer]:
    w = Writer(tmp_path)
    yield w
    if w.thread.is_alive():
        w.stop()


def entry(i: int, **kw: object) -> NewEntry:
    return NewEntry.of("decision", f"d-{i}", {"n": i, "text": "é ✓"}, **kw)  # type: ignore[arg-type]


def test_pipelined_appends_conflicts_blobs_and_reads(writer: Writer, tmp_path: Path) -> None:
    remote = RemoteAuditStore(tmp_path, writer.path)
    assert remote.origin == writer.store.origin and remote.vkey == writer.store.vkey

    async def many() -> list[int]:
        results = await asyncio.gather(*(remote.submit_async(entry(i)) for i in range(300)))
        return [r.seq for r in results]

    seqs = asyncio.run(many())
    assert sorted(seqs) == list(range(300))
    assert remote.size() == 300  # the read side catches up with the writer

    first = remote.submit(entry(1000, unique_key="idem:svc:k1")).result()
    assert first.conflict is None

    async def again() -> None:
        result = await remote.submit_async(entry(1001, unique_key="idem:svc:k1"))
        assert result.conflict is not None  # the holder comes back, as in-process
        assert result.conflict.seq == first.seq
        assert result.conflict.body() == {"n": 1000, "text": "é ✓"}

    asyncio.run(again())
    blob_id = remote.put_blob("document", b"%PDF-1.7 bytes")
    assert remote.get_blob(blob_id) == ("document", b"%PDF-1.7 bytes")

    stored = remote.entry(first.seq)
    assert stored is not None
    checkpoint = remote.latest_checkpoint()
    assert checkpoint is not None and checkpoint.size == remote.size() == 301
    signed = CheckpointVerifier(remote.vkey).verify(checkpoint.note)
    proof = remote.inclusion_proof(stored.seq, signed.size)
    verify_inclusion(leaf_hash(stored.data), stored.seq, signed.size, proof, signed.root)
    remote.close()


def test_a_lost_writer_fails_everything_in_flight_and_after(writer: Writer, tmp_path: Path) -> None:
    remote = RemoteAuditStore(tmp_path, writer.path)
    lost: list[str] = []
    remote.on_lost = lost.append

    async def scenario() -> None:
        await remote.connect()
        assert (await remote.submit_async(entry(1))).seq == 0
        writer.stop()  # the writer process is gone
        for _ in range(100):
            if lost:
                break
            await asyncio.sleep(0.02)
        with pytest.raises(AuditCommitError):
            await remote.submit_async(entry(2))

    asyncio.run(scenario())
    assert lost and "audit writer connection lost" in lost[0]
    with pytest.raises(AuditCommitError):
        remote.submit(entry(3)).result()
    remote.close()


def test_a_bad_frame_drops_only_that_connection(writer: Writer, tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(str(writer.path))
        raw.sendall(wire.frame(1, wire.APPEND, b"decision"))  # four fields missing
        answer = raw.recv(4096)
        [(request_id, status, payload)] = wire.split_frames(bytearray(answer))
        error = wire.decode_answer(status, payload)
        assert request_id == 1 and isinstance(error, AuditCommitError)
        raw.sendall(b"\xff\xff\xff\xff" + b"\0" * 9)  # a frame over the size limit
        assert raw.recv(4096) == b""  # closed
    remote = RemoteAuditStore(tmp_path, writer.path)
    assert remote.submit(entry(1)).result().seq == 0  # the service is still serving
    remote.close()


class _CountingTransport:
    """The link's transport, counting its writes."""

    def __init__(self, inner: asyncio.Transport) -> None:
        self.inner = inner
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.inner.write(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_entries_submitted_in_one_loop_pass_go_out_in_one_write(
    writer: Writer, tmp_path: Path
) -> None:
    remote = RemoteAuditStore(tmp_path, writer.path)

    async def scenario() -> list[bytes]:
        await remote.connect()
        link = remote._links[asyncio.get_running_loop()]
        assert link.transport is not None
        counting = _CountingTransport(link.transport)
        link.transport = counting  # type: ignore[assignment]
        futures = [remote.submit_async(entry(i)) for i in range(5)]  # one pass
        results = await asyncio.gather(*futures)
        assert [r.seq for r in results] == [0, 1, 2, 3, 4]
        later = await remote.submit_async(entry(5))  # a pass of its own
        assert later.seq == 5
        return counting.writes

    writes = asyncio.run(scenario())
    assert len(writes) == 2, [len(w) for w in writes]
    assert len(wire.split_frames(bytearray(writes[0]))) == 5
    remote.close()


def test_a_store_closed_while_its_link_connects_writes_nothing(
    writer: Writer, tmp_path: Path
) -> None:
    """The callers are told "closed"; the entries must not be committed behind their back."""
    remote = RemoteAuditStore(tmp_path, writer.path)

    async def scenario() -> None:
        future = remote.submit_async(entry(1))  # the link starts connecting
        remote.close()
        with pytest.raises(AuditCommitError):
            await future
        await asyncio.sleep(0.2)  # time for a connection that should not be made

    asyncio.run(scenario())
    assert writer.store.size() == 0
