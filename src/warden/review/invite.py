"""Tell a person how to open the workbench on a data directory: create log-in keys and
print the command, the URL and the keys (shown once; only their hashes are stored)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from warden.auth import KeyRing, Role

#: who the demo invites: two reviewers (four eyes needs two), an auditor and an admin
DEMO_PEOPLE: tuple[tuple[str, Role], ...] = (
    ("reviewer-1", Role.REVIEWER),
    ("reviewer-2", Role.REVIEWER),
    ("auditor-1", Role.AUDITOR),
    ("admin-1", Role.ADMIN),
)


def create_keys(
    data_dir: Path, people: tuple[tuple[str, Role], ...] = DEMO_PEOPLE
) -> list[tuple[str, Role, str]]:
    """New keys for these people; a name already taken gets a numeric suffix."""
    ring = KeyRing(data_dir / "keys.yaml")
    taken = {p.name for p in ring.principals()}
    created = []
    for name, role in people:
        unique, n = name, 1
        while unique in taken:
            n += 1
            unique = f"{name}-{n}"
        taken.add(unique)
        created.append((unique, role, ring.create(unique, role)))
    return created


def print_invite(
    console: Console,
    data_dir: Path,
    queued: int,
    *,
    policy: Path | None = None,
    port: int = 8000,
    people: tuple[tuple[str, Role], ...] = DEMO_PEOPLE,
) -> list[tuple[str, Role, str]]:
    keys = create_keys(data_dir, people)
    serve = f"warden serve --data-dir {data_dir}" + (f" --policy {policy}" if policy else "")
    console.rule("[bold]Review workbench")
    console.print(
        f"{queued} case(s) wait in the review queue. Start the gateway and open the workbench:\n"
        f"\n  [bold]{serve} --port {port}[/]\n"
        f"  then open [bold]http://127.0.0.1:{port}/workbench/[/] and log in with a key:\n",
        highlight=False,
    )
    table = Table("name", "role", "API key (shown once)")
    for name, role, key in keys:
        table.add_row(name, role.value, key)
    console.print(table)
    console.print(
        "Cases above the four-eyes limit need both reviewers; the auditor reads only; "
        "the admin page exports the labels (also: [bold]warden review export "
        f"--data-dir {data_dir} --format parquet --out labels.parquet[/]).",
        highlight=False,
    )
    return keys
