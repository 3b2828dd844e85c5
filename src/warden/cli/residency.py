"""`warden audit completeness` and `warden routes verify`: commands only (the checks are
`warden.audit.completeness` and `warden.endpoints.verify`). Imported by `cli/main.py`,
which registers them."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from warden.cli.main import (
    DEFAULT_DATA_DIR,
    DataDir,
    PolicyOpt,
    app,
    audit_app,
    console,
    one_line_errors,
)
from warden.errors import RequestError

routes_app = typer.Typer(help="Prove where model calls went (residency).", no_args_is_help=True)
app.add_typer(routes_app, name="routes")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]


def _when(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RequestError(f"{name}: not an ISO 8601 date or time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@audit_app.command("completeness")
@one_line_errors
def audit_completeness(
    day: Annotated[str, typer.Option("--date", help="UTC day, YYYY-MM-DD (default: today).")] = "",
    grace_minutes: Annotated[
        float, typer.Option(min=0, help="Intents younger than this may still be in flight.")
    ] = 15.0,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Model calls with an intent entry but no final record; exit 1 if any is older than
    the grace period."""
    from warden.audit.completeness import check_completeness
    from warden.audit.tools import read_only

    try:
        when = date.fromisoformat(day) if day else datetime.now(UTC).date()
    except ValueError:
        raise RequestError(f"--date: not a YYYY-MM-DD date: {day!r}") from None
    with read_only(data_dir) as store:
        report = check_completeness(store, when, grace_minutes=grace_minutes)
    if as_json:
        console.print_json(json.dumps(report.as_dict()))
    else:
        console.print(
            f"{report.day}: {report.intents} intents for {report.decisions_with_intents} "
            f"decisions; {report.complete} complete, {len(report.pending)} pending (younger "
            f"than {grace_minutes:g} min), {len(report.overdue)} incomplete past the grace "
            "period",
            highlight=False,
        )
        rows = [("overdue", r) for r in report.overdue] + [("pending", r) for r in report.pending]
        if rows:
            table = Table("status", "decision_id", "intent at", "endpoint(s)", "age min")
            for status, row in rows:
                table.add_row(
                    status,
                    row["decision_id"],
                    row["ts"],
                    ", ".join(map(str, row["endpoints"])),
                    f"{row['age_minutes']:.1f}",
                )
            console.print(table)
    if not report.ok:
        raise typer.Exit(1)


@routes_app.command("verify")
@one_line_errors
def routes_verify(
    since: Annotated[str, typer.Option(help="Start (ISO 8601, UTC unless it says).")],
    until: Annotated[str, typer.Option(help="End, exclusive (ISO 8601).")],
    access_log: Annotated[
        list[Path] | None,
        typer.Option("--access-log", help="An upstream's JSON-lines access log (repeatable)."),
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    policy: PolicyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Per jurisdiction: requests, share served in an allowed zone, violations; with access
    logs, cross-check every upstream request against its decision's jurisdiction. Exit 1 on
    any violation."""
    from warden.audit.tools import read_only
    from warden.endpoints.verify import access_log_line, routes_table, verify_routes
    from warden.gateway import DEFAULT_POLICY
    from warden.policy.loader import load_policy_file

    loaded = load_policy_file(policy or DEFAULT_POLICY)
    start, end = _when(since, "--since"), _when(until, "--until")
    with read_only(data_dir) as store:
        report = verify_routes(store, loaded.policy, start, end, access_log or [])
    if as_json:
        console.print_json(json.dumps(report.as_dict()))
    else:
        console.print(routes_table(report))
        console.print(
            f"unlabeled requests refused: {report.unlabeled}; unknown jurisdiction: "
            f"{report.unknown_jurisdiction}",
            highlight=False,
        )
        line = access_log_line(report)
        if line is not None:
            console.print(line, highlight=False)
        for v in report.violations:
            console.print(f"[red]VIOLATION[/] {escape(json.dumps(v))}", highlight=False)
        if report.ok:
            console.print("[green]OK[/] every model call went to an allowed zone")
    if not report.ok:
        raise typer.Exit(1)
