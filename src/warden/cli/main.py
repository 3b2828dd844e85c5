"""The `warden` command line: commands only; the work happens in the library."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from warden.cli.dev import dev_app
from warden.errors import WardenError

app = typer.Typer(
    help="Warden — an audited decision gateway for AI in financial services.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
audit_app = typer.Typer(help="Inspect, prove and verify the audit log.", no_args_is_help=True)
policy_app = typer.Typer(help="Check and fetch policy files.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
guard_app = typer.Typer(
    help="Adversarial-input guard: statistics and red-team runs.", no_args_is_help=True
)
app.add_typer(audit_app, name="audit")
app.add_typer(policy_app, name="policy")
app.add_typer(keys_app, name="keys")
app.add_typer(guard_app, name="guard")
app.add_typer(dev_app, name="dev")

console = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir", "-d", envvar="WARDEN_DATA_DIR", help="Where the audit log and keys live."
    ),
]
PolicyOpt = Annotated[
    Path | None,
    typer.Option(
        "--policy", "-p", envvar="WARDEN_POLICY", help="Policy file (default: the bundled example)."
    ),
]
DEFAULT_DATA_DIR: Path = Path("warden-data")


def one_line_errors(fn: F) -> F:
    """Turn expected failures into one clear line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except WardenError as exc:
            err.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False)
            raise typer.Exit(2) from None
        except (OSError, ValueError) as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@one_line_errors
def serve(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    policy: PolicyOpt = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[
        str,
        typer.Option(
            help="Request worker processes sharing the port and one audit writer "
            "(a number, or 'auto' = one per CPU; 1 = a single process)."
        ),
    ] = "1",
) -> None:
    """Run the HTTP API (OpenAPI at /docs) on the embedded SQLite audit store."""
    from warden.server import serve as run_server
    from warden.supervisor import worker_count

    run_server(data_dir, policy, host, port, worker_count(workers))


@app.command()
@one_line_errors
def decide(
    file: Annotated[
        Path, typer.Argument(help="A JSON request, a JSON array, or JSON lines; - for stdin.")
    ],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    policy: PolicyOpt = None,
    url: Annotated[str | None, typer.Option(help="Send to a running gateway instead.")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="WARDEN_API_KEY")] = None,
) -> None:
    """Decide one or more requests and print the outcomes."""
    from warden.client import decide_requests, read_requests

    requests = read_requests(file)
    results = decide_requests(requests, data_dir=data_dir, policy=policy, url=url, api_key=api_key)
    table = Table("decision_id", "outcome", "score", "reasons")
    failed = 0
    for result in results:
        if "error" in result:
            failed += 1
            error = result["error"]
            table.add_row(
                error.get("decision_id", "-"), f"[red]{error['code']}[/]", "", error["message"]
            )
        else:
            table.add_row(
                result["decision_id"],
                result["outcome"],
                f"{result['score']}",
                "; ".join(result["reasons"]) or "-",
            )
    console.print(table)
    if failed:
        raise typer.Exit(1)


@audit_app.command("show")
@one_line_errors
def audit_show(decision_id: str, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Print the full audit record of a decision (and its reviews)."""
    from warden.audit.tools import show

    console.print_json(json.dumps(show(data_dir, decision_id)))


@audit_app.command("verify")
@one_line_errors
def audit_verify(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    vkey: Annotated[
        str | None,
        typer.Option(help="Pin the checkpoint verifier key (default: the data directory's)."),
    ] = None,
    export: Annotated[Path | None, typer.Option(help="Verify an export directory instead.")] = None,
) -> None:
    """Recompute the Merkle tree and check it against every signed checkpoint."""
    from warden.audit.tools import verify

    report = verify(data_dir, vkey=vkey, export_dir=export, console=err)
    if report.ok:
        console.print(
            f"[green]OK[/] {report.entries} entries, {report.checkpoints} signed "
            f"checkpoints verified (latest covers {report.latest_size})"
        )
        return
    for problem in report.problems:  # problem text may come from an attacker: never markup
        console.print(f"[red]FAIL[/] {escape(problem)}", highlight=False)
    if report.more_problems:
        console.print(f"[red]FAIL[/] … and {report.more_problems} more problems")
    raise typer.Exit(1)


@audit_app.command("prove")
@one_line_errors
def audit_prove(
    decision_id: str,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Print and check the inclusion proof of a decision against the latest checkpoint."""
    from warden.audit.tools import prove

    doc, summary = prove(data_dir, decision_id)
    if json_out:
        console.print_json(json.dumps(doc))
    else:
        console.print(f"leaf index {doc['leaf_index']} of tree size {doc['tree_size']}")
        console.print(f"leaf hash  {doc['leaf_hash']}")
        for i, h in enumerate(doc["proof"]):
            console.print(f"proof[{i:2}]  {h}")
        console.print(doc["checkpoint"], highlight=False, markup=False)
    console.print(f"[green]verified:[/] {summary}")


@audit_app.command("checkpoint")
@one_line_errors
def audit_checkpoint(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Print the latest signed checkpoint (C2SP signed note) and the verifier key."""
    from warden.audit.tools import latest_checkpoint

    note, vkey = latest_checkpoint(data_dir)
    sys.stdout.write(note)
    err.print(f"verifier key: {vkey}", highlight=False)


@audit_app.command("export")
@one_line_errors
def audit_export(
    out: Annotated[Path, typer.Argument(help="Directory to write (created).")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Export entries, checkpoints and the verifier key for a third party."""
    from warden.audit.tools import export

    n = export(data_dir, out)
    console.print(
        f"exported {n} entries to {out} (check with `warden audit verify --export {out}`)"
    )


@policy_app.command("check")
@one_line_errors
def policy_check(file: Path) -> None:
    """Validate a policy file and print its version."""
    from warden.policy.loader import load_policy_file

    loaded = load_policy_file(file)
    console.print(
        f"[green]OK[/] {file}: {len(loaded.decision_types)} decision type(s), "
        f"version {loaded.version}"
    )
    console.print(
        f"{len(loaded.routes.endpoints)} model endpoint(s), residency policy version "
        f"{loaded.routes.version}",
        highlight=False,
    )


@policy_app.command("show")
@one_line_errors
def policy_show(version: str, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Print a stored policy file by its version (sha256:…), byte for byte."""
    from warden.audit.tools import policy_blob

    sys.stdout.write(policy_blob(data_dir, version).decode())


@keys_app.command("create")
@one_line_errors
def keys_create(
    name: str,
    role: Annotated[
        str,
        typer.Option(
            help="service | reviewer | auditor | admin | redteam (decides as red-team "
            "exercises: recorded, never queued for review)"
        ),
    ],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Create an API key; the key is printed once and stored hashed."""
    from warden.auth import KeyRing, Role

    try:
        parsed = Role(role)
    except ValueError:
        known = ", ".join(r.value for r in Role)
        raise WardenError(f"--role: unknown role {role!r} ({known})") from None
    key = KeyRing(data_dir / "keys.yaml").create(name, parsed)
    console.print(key, highlight=False)


@guard_app.command("stats")
@one_line_errors
def guard_stats_cmd(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Per-surface checks, hits, hit rates and where flagged decisions went (from the log)."""
    from warden.audit.tools import read_only
    from warden.guard.stats import guard_stats, stats_table

    with read_only(data_dir) as store:
        stats = guard_stats(store.iter_entries())
    console.print(stats_table(stats))
    if stats.exercises:
        console.print(
            f"{stats.exercises} red-team exercise decisions not counted "
            "(`warden redteam` reports those)"
        )


@app.command()
@one_line_errors
def demo(
    data_dir: DataDir = Path("warden-demo"),
    requests: Annotated[int, typer.Option("--requests", "-n", help="How many payments.")] = 5000,
    concurrency: Annotated[int, typer.Option(help="Requests in flight.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed of the payment stream.")] = 7,
    fresh: Annotated[bool, typer.Option(help="Start from an empty data directory.")] = True,
    claims: Annotated[int, typer.Option(help="How many insurance claims (0: none).")] = 300,
    triage: Annotated[
        int, typer.Option(help="How many claims to triage with simulated models (0: none).")
    ] = 120,
) -> None:
    """Run a seeded card-payment stream through the pipeline and show the audit trail."""
    from warden.demo.run import run_demo

    run_demo(
        data_dir,
        claims=claims,
        triage=triage,
        requests=requests,
        concurrency=concurrency,
        seed=seed,
        fresh=fresh,
        console=console,
    )


import warden.cli.redteam  # noqa: E402  (registers redteam)
import warden.cli.residency  # noqa: E402, F401  (registers audit completeness, routes verify)

# command groups in their own modules (they use the options and helpers above)
from warden.cli.models import (  # noqa: E402
    audit_reproduce,
    bands_app,
    calibrate,
    model_app,
    thresholds_app,
)
from warden.cli.review import review_app  # noqa: E402

app.add_typer(review_app, name="review")
app.add_typer(model_app, name="model")
app.add_typer(thresholds_app, name="thresholds")
app.add_typer(bands_app, name="bands")
app.command("calibrate")(calibrate)
audit_app.command("reproduce")(audit_reproduce)


def main() -> None:  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
