"""`warden model …`, `warden calibrate`, `warden thresholds …`, `warden bands report` and
`warden audit reproduce`: commands only; the work is in warden.models and warden.audit."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from warden.cli.main import DEFAULT_DATA_DIR, DataDir, PolicyOpt, one_line_errors

model_app = typer.Typer(help="Train and register scoring models (MLflow).", no_args_is_help=True)
thresholds_app = typer.Typer(
    help="Calibrated band thresholds: list, approve (maker-checker).", no_args_is_help=True
)
bands_app = typer.Typer(help="Band monitoring and reviewer statistics.", no_args_is_help=True)
console = Console()

ApiKey = Annotated[
    str,
    typer.Option(
        "--api-key", envvar="WARDEN_API_KEY", help="An admin's API key (who proposes/approves)."
    ),
]


def _admin(data_dir: Path, api_key: str) -> object:
    from warden.auth import KeyRing, Permission

    principal = KeyRing(data_dir / "keys.yaml").authenticate(api_key)
    principal.require(Permission.ADMIN)
    return principal


@model_app.command("train")
@one_line_errors
def model_train(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    name: Annotated[str, typer.Option(help="Registered model name.")] = "fraud-lgbm",
    alias: Annotated[str, typer.Option(help="champion or challenger.")] = "champion",
    rows: Annotated[int, typer.Option(help="Rows of the synthetic stream.")] = 40_000,
    stream_seed: Annotated[int, typer.Option(help="Seed of the synthetic stream.")] = 20_261_201,
    seed: Annotated[int, typer.Option(help="LightGBM seed.")] = 7,
) -> None:
    """Train the payment-fraud model on the seeded stream and register it (MLflow)."""
    from warden.models.registry import ModelRegistry
    from warden.models.serving import train_and_register
    from warden.models.train import TrainConfig

    config = TrainConfig(rows=rows, stream_seed=stream_seed, seed=seed)
    version, model = train_and_register(ModelRegistry(data_dir), name, (alias,), config)
    console.print(
        f"registered {name} version {version.version} as {alias}: {model.sha256}\n"
        f"test PR-AUC {model.metrics['test_pr_auc']:.4f}, "
        f"ROC-AUC {model.metrics['test_roc_auc']:.4f}",
        highlight=False,
    )


@model_app.command("list")
@one_line_errors
def model_list(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    name: Annotated[str, typer.Option(help="Registered model name.")] = "fraud-lgbm",
) -> None:
    """Registered versions, their aliases and artifact hashes."""
    from warden.models.registry import ModelRegistry

    table = Table("version", "aliases", "sha256", "feature set", "run")
    for v in ModelRegistry(data_dir).versions(name):
        table.add_row(v.version, ", ".join(v.aliases), v.sha256, v.feature_set, v.run_id)
    console.print(table)


@model_app.command("alias")
@one_line_errors
def model_alias(
    version: str,
    alias: str,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    name: Annotated[str, typer.Option(help="Registered model name.")] = "fraud-lgbm",
) -> None:
    """Point an alias (champion, challenger) at a version."""
    from warden.models.registry import ModelRegistry

    ModelRegistry(data_dir).set_alias(name, alias, version)
    console.print(f"{name}@{alias} → version {version}", highlight=False)


@one_line_errors
def calibrate(
    api_key: ApiKey,
    decision_type: Annotated[str, typer.Option(help="Decision type.")] = "payment_fraud",
    data_dir: DataDir = DEFAULT_DATA_DIR,
    policy: PolicyOpt = None,
    rows: Annotated[int, typer.Option(help="Generated labelled rows (0: labels only).")] = 40_000,
    seed: Annotated[int, typer.Option(help="Seed of the generated rows.")] = 424_242,
    review_capacity: Annotated[
        float | None, typer.Option(help="Cap on the review band's share (default: policy).")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Report folder (PNG plots).")] = None,
) -> None:
    """Calibrate scores and propose cost-minimising thresholds (a second admin approves).
    With a server running on the data directory, use POST /v1/thresholds/calibrate."""
    from warden.auth import Principal
    from warden.gateway import Gateway

    admin = _admin(data_dir, api_key)
    assert isinstance(admin, Principal)
    with Gateway.open(data_dir, policy) as gateway:
        proposed = asyncio.run(
            gateway.calibrate_thresholds(
                admin, decision_type, rows=rows, seed=seed,
                review_capacity=review_capacity, report_dir=report,
            )
        )  # fmt: skip
    paths = proposed["report"]
    s = proposed["summary"]
    table = Table("thresholds", "approve ≤", "decline ≥", "review share", "cost / decision")
    for label, key in (
        ("chosen (calibrated)", "chosen"),
        ("baseline: policy's static bands", "baseline_static_bands"),
        ("baseline: one threshold, no review", "baseline_single_threshold"),
    ):
        c = s[key]
        table.add_row(
            label, f"{c['approve_at_or_below']:.4f}", f"{c['decline_at_or_above']:.4f}",
            f"{c['review_share']:.2%}", f"{c['cost_per_decision']:.4f}",
        )  # fmt: skip
    console.print(table)
    console.print(
        f"held out: {s['held_out_rows']} rows, PR-AUC {s['pr_auc']:.4f}, "
        f"ECE {s['ece_raw']:.4f} → {s['ece_calibrated']:.4f}\n"
        f"proposed {proposed['thresholds_version']} (audit seq {proposed['proposal_seq']}); "
        f"a second admin activates it: warden thresholds approve {proposed['thresholds_version']}"
        f"\nreport: {', '.join(str(p) for p in paths)}",
        highlight=False,
    )


@thresholds_app.command("list")
@one_line_errors
def thresholds_list(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Proposed thresholds versions and which one is active per decision type."""
    from warden.audit.tools import read_only
    from warden.models.thresholds import proposals

    table = Table("seq", "decision type", "version", "approve ≤", "decline ≥", "by", "active")
    with read_only(data_dir) as store:
        for p in proposals(store):
            table.add_row(
                str(p["seq"]), p["decision_type"], p["thresholds_version"],
                str(p["bands"]["approve_at_or_below"]), str(p["bands"]["decline_at_or_above"]),
                p["proposed_by"], "yes" if p["active"] else "",
            )  # fmt: skip
    console.print(table)


@thresholds_app.command("approve")
@one_line_errors
def thresholds_approve(
    version: str, api_key: ApiKey, data_dir: DataDir = DEFAULT_DATA_DIR, policy: PolicyOpt = None
) -> None:
    """Activate a proposed thresholds version (not by the admin who proposed it)."""
    from warden.auth import Principal
    from warden.gateway import Gateway

    admin = _admin(data_dir, api_key)
    assert isinstance(admin, Principal)
    with Gateway.open(data_dir, policy) as gateway:
        result = asyncio.run(gateway.approve_thresholds(version, admin))
    console.print(
        f"activated {result['thresholds_version']} for {result['decision_type']} "
        f"(audit seq {result['activation_seq']}; replaces {result['replaces']})",
        highlight=False,
    )


@bands_app.command("report")
@one_line_errors
def bands_report(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    window: Annotated[int, typer.Option(help="Decisions per window.")] = 500,
    out: Annotated[Path | None, typer.Option(help="Folder for the PNG plots.")] = None,
) -> None:
    """Review share per window against its control limit; reviewer override rate and
    model–reviewer agreement (from the audit log)."""
    from warden.audit.tools import read_only
    from warden.models.report import bands_report as build

    with read_only(data_dir) as store:
        report = build(store, window, out or data_dir / "reports" / "bands")
    console.print_json(json.dumps(report["summary"]))
    console.print(f"plots: {', '.join(report['plots'])}", highlight=False)


@one_line_errors
def audit_reproduce(
    decision_id: str,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Re-run a decision from its record (stored policy, model, thresholds) and compare."""
    from warden.audit.reproduce import reproduce
    from warden.audit.tools import read_only

    with read_only(data_dir) as store:
        report = reproduce(store, decision_id).as_dict()
    if as_json:
        console.print_json(json.dumps(report))
    else:
        table = Table("field", "recorded", "reproduced", "result")
        for f in report["fields"]:
            mark = {"same": "[green]identical", "different": "[red]DIFFERENT"}.get(
                f["status"], "[dim]skipped (timing)"
            )
            table.add_row(f["path"], _short(f["recorded"]), _short(f["reproduced"]), mark)
        console.print(table)
        console.print(
            f"policy {report['policy_version']}, model {report['model']}, "
            f"thresholds {report['thresholds_version']}",
            highlight=False,
        )
        verdict = "[green]identical[/]" if report["identical"] else "[red]NOT identical[/]"
        console.print(f"{report['compared']} fields compared: {verdict}")
    if not report["identical"]:
        raise typer.Exit(1)


def _short(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "…"
