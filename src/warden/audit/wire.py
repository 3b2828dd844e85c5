"""The audit writer's wire format: length-prefixed binary frames over a Unix socket, between
request workers (`warden.audit.remote_store`) and the one process that owns the writable
store (`warden.audit.writer_service`).

    frame    = length:u32 (of the rest) | request_id:u64 | op-or-status:u8 | fields
    field    = length:i32 (-1 = None) | bytes

Requests:  APPEND  kind, decision_id, unique_key, outcome, body
           BLOB    kind, data
Answers:   OK        ts, seq, batch_size (seq and batch_size as decimal text)
           CONFLICT  ts, then the entry holding the key: seq, kind, decision_id, ts,
                     leaf_hash, data
           BLOB_OK   blob_id
           ERROR     error type name (one of ERROR_TYPES), message

No pickle: a frame only ever decodes to bytes and strings, whoever sent it."""

from __future__ import annotations

import struct

from warden.audit.entry import AppendResult, NewEntry, StoredEntry
from warden.errors import AuditCommitError, WardenError

APPEND = 1
BLOB = 2

OK = 10
CONFLICT = 11
BLOB_OK = 12
ERROR = 13

#: errors that cross the socket as themselves; anything else arrives as AuditCommitError
ERROR_TYPES: dict[str, type[WardenError]] = {
    "AuditCommitError": AuditCommitError,
    "WardenError": WardenError,
}
MAX_FRAME = 256 * 1024 * 1024

_HEAD = struct.Struct("!IQB")  # length, request id, op / status
_LEN = struct.Struct("!i")
HEAD_SIZE = _HEAD.size


def _fields(*values: bytes | None) -> bytes:
    parts = []
    for value in values:
        if value is None:
            parts.append(_LEN.pack(-1))
        else:
            parts.append(_LEN.pack(len(value)))
            parts.append(value)
    return b"".join(parts)


def _text(value: str | None) -> bytes | None:
    return None if value is None else value.encode()


def frame(request_id: int, op: int, *values: bytes | None) -> bytes:
    payload = _fields(*values)
    return _HEAD.pack(len(payload) + HEAD_SIZE - 4, request_id, op) + payload


def read_fields(payload: bytes, count: int) -> list[bytes | None]:
    """`count` fields from a frame's payload (after the head)."""
    out: list[bytes | None] = []
    offset = 0
    for _ in range(count):
        if offset + 4 > len(payload):
            raise ValueError(f"audit wire: frame ends before field {len(out) + 1} of {count}")
        (length,) = _LEN.unpack_from(payload, offset)
        offset += 4
        if length < 0:
            out.append(None)
        else:
            if offset + length > len(payload):
                raise ValueError("audit wire: field runs past the end of its frame")
            out.append(bytes(payload[offset : offset + length]))
            offset += length
    if offset != len(payload):
        raise ValueError("audit wire: trailing bytes after the last field")
    return out


def split_frames(buffer: bytearray) -> list[tuple[int, int, bytes]]:
    """Take every complete frame off the front of `buffer`: (request id, op, payload)."""
    frames = []
    offset = 0
    while len(buffer) - offset >= HEAD_SIZE:
        length, request_id, op = _HEAD.unpack_from(buffer, offset)
        if length > MAX_FRAME:
            raise ValueError(f"audit wire: frame of {length} bytes is over the limit")
        end = offset + 4 + length
        if end > len(buffer):
            break
        frames.append((request_id, op, bytes(buffer[offset + HEAD_SIZE : end])))
        offset = end
    del buffer[:offset]
    return frames


# -- requests -------------------------------------------------------------------------
def append_request(request_id: int, entry: NewEntry) -> bytes:
    return frame(
        request_id,
        APPEND,
        entry.kind.encode(),
        _text(entry.decision_id),
        _text(entry.unique_key),
        _text(entry.outcome),
        entry.body,
    )


def decode_append(payload: bytes) -> NewEntry:
    kind, decision_id, unique_key, outcome, body = read_fields(payload, 5)
    if kind is None or body is None:
        raise ValueError("audit wire: an append needs a kind and a body")
    return NewEntry(
        kind.decode(),
        None if decision_id is None else decision_id.decode(),
        body,
        unique_key=None if unique_key is None else unique_key.decode(),
        outcome=None if outcome is None else outcome.decode(),
    )


def blob_request(request_id: int, kind: str, data: bytes) -> bytes:
    return frame(request_id, BLOB, kind.encode(), data)


def decode_blob(payload: bytes) -> tuple[str, bytes]:
    kind, data = read_fields(payload, 2)
    if kind is None or data is None:
        raise ValueError("audit wire: a blob needs a kind and data")
    return kind.decode(), data


# -- answers --------------------------------------------------------------------------
def result_answer(request_id: int, result: AppendResult) -> bytes:
    ts = result.ts.encode()
    held = result.conflict
    if held is None:
        return frame(request_id, OK, ts, str(result.seq).encode(), str(result.batch_size).encode())
    return frame(
        request_id,
        CONFLICT,
        ts,
        str(held.seq).encode(),
        held.kind.encode(),
        _text(held.decision_id),
        held.ts.encode(),
        held.leaf_hash,
        held.data,
    )


def error_answer(request_id: int, exc: BaseException) -> bytes:
    name = type(exc).__name__ if type(exc).__name__ in ERROR_TYPES else "AuditCommitError"
    message = exc.message if isinstance(exc, WardenError) else f"audit commit failed: {exc}"
    return frame(request_id, ERROR, name.encode(), message.encode())


def blob_answer(request_id: int, blob_id: str) -> bytes:
    return frame(request_id, BLOB_OK, blob_id.encode())


def decode_answer(status: int, payload: bytes) -> AppendResult | str | WardenError:
    """An append's AppendResult, a blob's id, or the error to raise."""
    if status == OK:
        ts, seq, batch = read_fields(payload, 3)
        assert ts is not None and seq is not None and batch is not None
        return AppendResult(int(seq), ts.decode(), batch_size=int(batch))
    if status == CONFLICT:
        ts, seq, kind, decision_id, held_ts, lh, data = read_fields(payload, 7)
        assert ts and seq and kind and held_ts and lh is not None and data is not None
        held = StoredEntry(
            int(seq),
            kind.decode(),
            None if decision_id is None else decision_id.decode(),
            held_ts.decode(),
            lh,
            data,
        )
        return AppendResult(-1, ts.decode(), conflict=held)
    if status == BLOB_OK:
        (blob_id,) = read_fields(payload, 1)
        assert blob_id is not None
        return blob_id.decode()
    if status == ERROR:
        name, message = read_fields(payload, 2)
        error_type = ERROR_TYPES.get((name or b"").decode(), AuditCommitError)
        return error_type((message or b"").decode())
    raise ValueError(f"audit wire: unknown answer status {status}")
