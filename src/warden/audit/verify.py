"""Recompute the Merkle tree from the stored entries and check it against every signed
checkpoint. Names what is wrong: an edited, missing, moved, re-ordered or forged entry,
a checkpoint whose root or signature does not match, entries beyond the last checkpoint.

Works on anything that yields entries and checkpoints, so an export can be verified by a
third party with the same code."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from warden.audit.checkpoint import CheckpointError, CheckpointVerifier
from warden.audit.entry import StoredCheckpoint, StoredEntry
from warden.audit.merkle import RootAccumulator, leaf_hash
from warden.canonical import canonical_json

MAX_PROBLEMS = 50


@dataclass
class VerifyReport:
    entries: int = 0
    checkpoints: int = 0
    checkpoints_ok: int = 0
    latest_size: int = 0
    problems: list[str] = field(default_factory=list)
    more_problems: int = 0
    gaps: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)
        else:
            self.more_problems += 1


def _check_entry(entry: StoredEntry, previous: int, report: VerifyReport) -> None:
    """Check one stored entry; `previous` is the seq of the entry before it (-1 at start)."""
    where = f"entry {entry.seq}"
    if entry.seq != previous + 1:
        if entry.seq > previous + 1:
            first = previous + 1
            missing = f"{first}" if entry.seq == first + 1 else f"{first}..{entry.seq - 1}"
            report.gaps += 1
            report.problem(
                f"entry {missing} missing: the log jumps from {previous} to {entry.seq} "
                "(rows deleted)"
            )
        else:
            report.problem(f"{where}: out of order after entry {previous}")
    try:
        envelope = json.loads(entry.data)
    except ValueError:
        report.problem(f"{where}: not valid JSON (record bytes edited)")
        return
    if not isinstance(envelope, dict) or set(envelope) != {
        "body",
        "decision_id",
        "kind",
        "seq",
        "ts",
    }:
        report.problem(f"{where}: not a Warden entry envelope (record edited or forged)")
        return
    if canonical_json(envelope) != entry.data:
        report.problem(f"{where}: bytes are not canonical JSON (record edited)")
    if envelope["seq"] != entry.seq:
        report.problem(
            f"{where}: the record inside says it is entry {envelope['seq']} (rows swapped or moved)"
        )
    if envelope["kind"] != entry.kind or envelope["decision_id"] != entry.decision_id:
        report.problem(f"{where}: index columns disagree with the record (row edited)")
    if leaf_hash(entry.data) != entry.leaf_hash:
        report.problem(f"{where}: record does not hash to its stored leaf hash (record edited)")


def verify_log(
    entries: Iterable[StoredEntry],
    checkpoints: Iterable[StoredCheckpoint],
    verifier: CheckpointVerifier,
    *,
    origin: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    report = VerifyReport()
    pending = sorted(checkpoints, key=lambda c: c.size)
    report.checkpoints = len(pending)
    by_size = iter(pending)
    next_cp = next(by_size, None)
    acc = RootAccumulator()

    def check_checkpoint(cp: StoredCheckpoint) -> None:
        try:
            signed = verifier.verify(cp.note)
        except CheckpointError as exc:
            report.problem(f"checkpoint at size {cp.size}: signature check failed: {exc}")
            return
        if origin is not None and signed.origin != origin:
            report.problem(
                f"checkpoint at size {cp.size}: origin {signed.origin!r} is not "
                f"this log's ({origin!r})"
            )
        if signed.size != cp.size or signed.root != cp.root:
            report.problem(
                f"checkpoint at size {cp.size}: signed note says size "
                f"{signed.size}, stored columns were edited"
            )
        if acc.root() != signed.root:
            report.problem(
                f"checkpoint at size {signed.size} (signed {cp.created_at}): the log's "
                f"first {signed.size} entries do not hash to the signed root — the log "
                "was altered at or before this point"
            )
            return
        report.checkpoints_ok += 1

    previous = -1
    for position, entry in enumerate(entries):
        while next_cp is not None and next_cp.size == position:
            check_checkpoint(next_cp)
            next_cp = next(by_size, None)
        _check_entry(entry, previous, report)
        previous = entry.seq
        acc.append(leaf_hash(entry.data))
        report.entries = position + 1
        if progress is not None and position % 4096 == 0:
            progress(position)
    while next_cp is not None and next_cp.size == report.entries:
        check_checkpoint(next_cp)
        next_cp = next(by_size, None)
    if next_cp is not None:
        why = "entries were deleted" if report.gaps else "entries removed from the end"
        report.problem(
            f"checkpoint at size {next_cp.size} but the log has only "
            f"{report.entries} entries ({why})"
        )
    if pending:
        report.latest_size = pending[-1].size
        if pending[-1].size < report.entries:
            report.problem(
                f"entries {pending[-1].size}..{report.entries - 1} are not covered by any "
                "signed checkpoint (appended outside Warden, or forged)"
            )
    elif report.entries:
        report.problem("the log has entries but no signed checkpoint at all")
    return report
