"""What the `warden audit` and `warden policy show` commands do, on a data directory
opened read-only (safe while a server is running on it)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from warden.audit.checkpoint import CheckpointVerifier
from warden.audit.entry import StoredCheckpoint, StoredEntry, record_document
from warden.audit.merkle import leaf_hash
from warden.audit.sqlite_store import SQLiteAuditStore
from warden.audit.verify import VerifyReport, verify_log
from warden.auth import LOCAL_ADMIN
from warden.errors import NotFoundError, WardenError


@contextmanager
def read_only(data_dir: Path) -> Iterator[SQLiteAuditStore]:
    store = SQLiteAuditStore(data_dir, writable=False)
    try:
        yield store
    finally:
        store.close()


def show(data_dir: Path, decision_id: str) -> dict[str, Any]:
    with read_only(data_dir) as store:
        entries = store.entries_for(decision_id)
        if not entries:
            raise NotFoundError(f"no decision with id {decision_id!r} in {data_dir}")
        return record_document(decision_id, entries)


def prove(data_dir: Path, decision_id: str) -> tuple[dict[str, Any], str]:
    from warden.gateway import Gateway, verify_proof_document

    with read_only(data_dir) as store:
        doc = Gateway.proof_for(store, decision_id, LOCAL_ADMIN)
        return doc, verify_proof_document(doc, store.vkey)


def latest_checkpoint(data_dir: Path) -> tuple[str, str]:
    with read_only(data_dir) as store:
        cp = store.latest_checkpoint()
        if cp is None:
            raise NotFoundError("the audit log has no checkpoint yet")
        return cp.note, store.vkey


def policy_blob(data_dir: Path, version: str) -> bytes:
    with read_only(data_dir) as store:
        found = store.get_blob(version)
        if found is None or found[0] != "policy":
            raise NotFoundError(f"no stored policy with version {version!r}")
        return found[1]


def export(data_dir: Path, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    with read_only(data_dir) as store:
        n = 0
        with (out / "entries.jsonl").open("wb") as fh:
            for entry in store.iter_entries():
                fh.write(entry.data + b"\n")
                n += 1
        with (out / "checkpoints.jsonl").open("w") as fh:
            for cp in store.checkpoints():
                fh.write(
                    json.dumps(
                        {
                            "size": cp.size,
                            "root": base64.b64encode(cp.root).decode(),
                            "created_at": cp.created_at,
                            "note": cp.note,
                        }
                    )
                    + "\n"
                )
        (out / "vkey.txt").write_text(store.vkey + "\n")
        (out / "origin.txt").write_text(store.origin + "\n")
    (out / "README.txt").write_text(
        "Warden audit log export.\n"
        "entries.jsonl: one entry per line, the RFC 8785 canonical JSON bytes that are the\n"
        "  RFC 6962 Merkle leaves (leaf hash = SHA-256(0x00 || line bytes)).\n"
        "checkpoints.jsonl: C2SP signed-note checkpoints (origin, size, base64 root),\n"
        "  Ed25519-signed by the key in vkey.txt.\n"
        "Check with: warden audit verify --export <this directory>\n"
    )
    return n


def _export_entries(out: Path) -> Iterator[StoredEntry]:
    with (out / "entries.jsonl").open("rb") as fh:
        for position, line in enumerate(fh):
            data = line.rstrip(b"\n")
            try:
                env = json.loads(data)
                yield StoredEntry(
                    int(env["seq"]),
                    str(env["kind"]),
                    env["decision_id"],
                    str(env["ts"]),
                    leaf_hash(data),
                    data,
                )
            except (ValueError, KeyError, TypeError):
                yield StoredEntry(position, "?", None, "?", leaf_hash(data), data)


def _export_checkpoints(out: Path) -> list[StoredCheckpoint]:
    cps = []
    for line in (out / "checkpoints.jsonl").read_text().splitlines():
        item = json.loads(line)
        cps.append(
            StoredCheckpoint(
                int(item["size"]), base64.b64decode(item["root"]), item["note"], item["created_at"]
            )
        )
    return cps


def verify(
    data_dir: Path,
    *,
    vkey: str | None = None,
    export_dir: Path | None = None,
    console: Console | None = None,
) -> VerifyReport:
    columns = (TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=console is None) as progress:
        if export_dir is not None:
            if not (export_dir / "entries.jsonl").exists():
                raise WardenError(f"{export_dir}: not a Warden export (no entries.jsonl)")
            key = vkey or (export_dir / "vkey.txt").read_text().strip()
            origin = (export_dir / "origin.txt").read_text().strip()
            total = sum(1 for _ in (export_dir / "entries.jsonl").open("rb"))
            task = progress.add_task("verify", total=total)
            return verify_log(
                _export_entries(export_dir),
                _export_checkpoints(export_dir),
                CheckpointVerifier(key),
                origin=origin,
                progress=lambda n: progress.update(task, completed=n),
            )
        with read_only(data_dir) as store:
            key = vkey or store.vkey
            if not key:
                raise WardenError(f"{data_dir}: no verifier key found; pass --vkey")
            task = progress.add_task("verify", total=store.size())
            return verify_log(
                store.iter_entries(),
                store.checkpoints(),
                CheckpointVerifier(key),
                origin=store.origin,
                progress=lambda n: progress.update(task, completed=n),
            )
