"""`warden review …`: the review queue and reviewer labels from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from warden.cli.main import DEFAULT_DATA_DIR, DataDir, one_line_errors

review_app = typer.Typer(help="The review queue and reviewer labels.", no_args_is_help=True)
console = Console()


@review_app.command("export")
@one_line_errors
def review_export(
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="jsonl | parquet")] = "jsonl",
    decision_type: Annotated[
        str | None, typer.Option("--decision-type", help="Only this decision type.")
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Export the labels of finalised reviews for retraining and calibration."""
    from warden.audit.tools import read_only
    from warden.review.labels import write_labels

    with read_only(data_dir) as store:
        count = write_labels(store.iter_entries(), fmt, out, decision_type)
    console.print(f"wrote {count} labels to {out} ({fmt})", highlight=False)


@review_app.command("queue")
@one_line_errors
def review_queue(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    policy: Annotated[Path | None, typer.Option("--policy", "-p", envvar="WARDEN_POLICY")] = None,
    limit: Annotated[int, typer.Option(help="How many cases.")] = 50,
) -> None:
    """Print the review queue in workbench order (overdue first, then score, amount)."""
    from warden.audit.tools import read_only
    from warden.auth import LOCAL_ADMIN
    from warden.gateway import DEFAULT_POLICY
    from warden.policy.loader import load_policy_file
    from warden.review.desk import ReviewDesk

    loaded = load_policy_file(policy or DEFAULT_POLICY)
    with read_only(data_dir) as store:
        items = ReviewDesk(store, loaded).queue(LOCAL_ADMIN, limit)
    table = Table("SLA", "decision_id", "type", "amount", "score", "status", "reason")
    for i in items:
        status = i["status"] + (f" ({i['claimed_by']})" if i["claimed_by"] else "")
        table.add_row(
            i["sla_left"],
            i["decision_id"],
            i["decision_type"],
            "" if i["amount"] is None else f"{i['amount']:,.2f}",
            "" if i["score"] is None else f"{i['score']:.3f}",
            status,
            i["reasons"][0] if i["reasons"] else "",
        )
    console.print(table)
