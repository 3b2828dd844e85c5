"""Audit log entries: what callers submit and what the store holds.

A stored entry's bytes are the RFC 8785 canonical JSON of the envelope
`{"body", "decision_id", "kind", "seq", "ts"}`; those bytes are the Merkle leaf. The
sequence number and the timestamp live inside the leaf, so moving or re-dating an entry
changes its hash."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from warden.canonical import canonical_json

KINDS = (
    "decision",
    "refusal",
    "review",
    "policy",
    #: `intent`: written and made durable before an external model call (completeness check)
    "intent",
    # the review workbench: a claim locks a case to a reviewer, a release frees it, and a
    # first review under four eyes is pending until a different reviewer's `review`
    "review_claim",
    "review_release",
    "review_first",
    # threshold versions: `proposed` by one admin, `activated` by a second (maker-checker)
    "thresholds",
)


@dataclass(frozen=True)
class NewEntry:
    kind: str
    decision_id: str | None
    body: bytes  # canonical JSON of the entry's body
    #: at most one entry may ever carry a given unique key (idempotency, one review per case)
    unique_key: str | None = None
    #: denormalised for indexing only (e.g. the review queue); the leaf is the truth
    outcome: str | None = None

    @classmethod
    def of(cls, kind: str, decision_id: str | None, body: dict[str, Any], **kw: Any) -> NewEntry:
        return cls(kind, decision_id, canonical_json(body), **kw)


@dataclass(frozen=True)
class StoredEntry:
    seq: int
    kind: str
    decision_id: str | None
    ts: str
    leaf_hash: bytes
    data: bytes

    def envelope(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.data)
        return value

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = self.envelope()["body"]
        return body


@dataclass(frozen=True)
class StoredCheckpoint:
    size: int
    root: bytes
    note: str
    created_at: str


@dataclass
class AppendResult:
    seq: int
    ts: str
    #: set when the unique key was taken: the entry that holds it (nothing was written)
    conflict: StoredEntry | None = None
    batch_size: int = field(default=1)


_ENCODE_STRING = json.JSONEncoder(ensure_ascii=False).encode
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_:.+ ")


def _string(value: str | None) -> bytes:
    """JCS form of a short string: ids and kinds are plain ASCII and need no escaping;
    anything else goes through json's escaping, which is JCS's (see warden.canonical)."""
    if value is None:
        return b"null"
    if _PLAIN.issuperset(value):
        return b'"' + value.encode() + b'"'
    return _ENCODE_STRING(value).encode()


def envelope_bytes(entry: NewEntry, seq: int, ts_json: bytes) -> bytes:
    """Compose the canonical envelope around an already-canonical body.

    Canonical JSON of an object is its members in sorted key order, each value in canonical
    form, so splicing the canonical body in is exactly RFC 8785 output (a test checks it
    against the reference implementation)."""
    return b"".join(
        (
            b'{"body":',
            entry.body,
            b',"decision_id":',
            _string(entry.decision_id),
            b',"kind":',
            _string(entry.kind),
            b',"seq":',
            str(seq).encode(),
            b',"ts":',
            ts_json,
            b"}",
        )
    )


def record_document(decision_id: str, entries: list[StoredEntry]) -> dict[str, Any]:
    """Everything the log holds about one decision, as the API and CLI show it."""
    return {
        "decision_id": decision_id,
        "entries": [
            {
                "seq": e.seq,
                "kind": e.kind,
                "ts": e.ts,
                "leaf_hash": e.leaf_hash.hex(),
                "body": e.body(),
            }
            for e in entries
        ],
    }


def final_record(entries: list[StoredEntry]) -> StoredEntry:
    """The decision's own record among its entries: the `decision` (or `refusal`) entry.
    A model-calling decision has an `intent` entry before it, and reviews, claims and
    actions follow it, so the first entry is not always the record. With no record (an
    intent cut off by a crash) the first entry is returned."""
    for entry in entries:
        if entry.kind in ("decision", "refusal"):
            return entry
    return entries[0]


def store_ts(moment: datetime) -> str:
    """`moment` as the log writes entry times (UTC, microseconds, `Z`): such strings sort
    in time order, which is what `entries_between` relies on."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
