"""`warden redteam`: the command only (probes: `warden.guard.redteam`; the run and the
verdicts: `warden.guard.redteam_run`). Imported by `cli/main.py`, which registers it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from warden.cli.main import PolicyOpt, app, console, err, one_line_errors
from warden.errors import WardenError

if TYPE_CHECKING:
    from warden.guard.redteam_run import Report


@app.command()
@one_line_errors
def redteam(
    policy: PolicyOpt = None,
    url: Annotated[str | None, typer.Option(help="Attack a running gateway instead.")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="WARDEN_API_KEY")] = None,
    per_set: Annotated[
        int, typer.Option(min=1, max=2000, help="Probes per attack or benign set.")
    ] = 120,
    seed: Annotated[
        int, typer.Option(help="Seed of the corpus sample (the same for every decision type).")
    ] = 5,
    scripted_upstreams: Annotated[
        bool,
        typer.Option(
            "--scripted-upstreams",
            help="With --url: the gateway's upstreams are simulators started with "
            "--scripted, so the output surface can be probed too.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    data_dir: Annotated[
        Path | None, typer.Option(help="Keep the in-process run's audit log here.")
    ] = None,
) -> None:
    """Run the attack corpora and benign sets against every guarded surface of every
    decision type; exit 1 when any misses the policy's red-team thresholds."""
    from warden.gateway import DEFAULT_POLICY
    from warden.guard.redteam import build_probes, plan
    from warden.guard.redteam_run import run_redteam
    from warden.policy.loader import load_policy_file

    loaded = load_policy_file(policy or DEFAULT_POLICY)
    output = url is None or scripted_upstreams
    targets = plan(loaded, output=output)
    probes = build_probes(loaded, per_set=per_set, seed=seed, output=output)
    if not probes:
        raise WardenError(
            "no decision type has a text, document, tool_args or output surface to attack"
        )

    def announce(sims: dict[str, str]) -> None:
        listed = ", ".join(f"{name} → {u}" for name, u in sims.items())
        err.print(f"LLM decision types answered by upstream SIMULATORS: {listed}", highlight=False)

    with Progress(
        TextColumn("red team"), BarColumn(), MofNCompleteColumn(), console=err
    ) as progress:
        task = progress.add_task("probes", total=len(probes))
        report = run_redteam(
            loaded,
            probes,
            targets,
            data_dir=data_dir,
            url=url,
            api_key=api_key,
            progress=lambda: progress.advance(task),
            on_simulators=announce,
        )
    if as_json:
        doc = {**report.as_dict(), "per_set": per_set, "seed": seed, "probes": len(probes)}
        console.print_json(json.dumps(doc))
    else:
        _print_report(report, per_set, seed, len(probes))
    if not report.passed:
        raise typer.Exit(1)


def _print_report(report: Report, per_set: int, seed: int, n_probes: int) -> None:
    where = (
        report.target
        if report.target != "in-process"
        else "the in-process gateway"
        + (" (LLMs: upstream simulators)" if report.simulators else "")
    )
    table = Table(
        "decision type",
        "surface",
        "attacks",
        "detected",
        "benign",
        "FPR",
        "needs",
        "verdict",
        title=f"Red team against {where}",
        caption=f"{n_probes} probes: up to {per_set} per attack or benign set, the same "
        f"sample (seed {seed}) for every decision type",
    )
    for r in report.results:
        table.add_row(
            r.decision_type,
            r.surface,
            str(r.attacks),
            f"{r.detected} ({r.detection_rate:.1%})",
            str(r.benign),
            f"{r.false_positives} ({r.false_positive_rate:.1%})",
            f"≥{r.min_detection:.0%} / ≤{r.max_fpr:.0%}",
            "[green]pass[/]" if r.passed else "[red]FAIL[/]",
        )
    table.add_section()
    for t in report.totals:
        table.add_row(
            "[b]total[/]",
            t.surface,
            str(t.attacks),
            f"{t.detected} ({t.detection_rate:.1%})",
            str(t.benign),
            f"{t.false_positives} ({t.false_positive_rate:.1%})",
            "each",
            "[green]pass[/]" if t.passed else f"[red]FAIL[/] ({', '.join(t.failed)})",
        )
    # a CI log is not a terminal (Rich assumes 80 columns there): do not truncate the names
    wide = console if console.is_terminal else Console(width=max(console.width, 120))
    wide.print(table)
    for target in report.targets:
        if not target.surfaces:
            console.print(
                f"{target.decision_type}: structured fields only, no surface to attack",
                highlight=False,
            )
        for surface, reason in target.skipped.items():
            console.print(
                f"[yellow]not probed[/] {target.decision_type}/{surface}: {reason}",
                highlight=False,
            )
    for r in report.results:
        if r.unreached:
            console.print(
                f"{r.decision_type}/{r.surface}: {r.unreached} probes stopped before a model "
                "answered (not counted)",
                highlight=False,
            )
        if not r.passed:
            console.print(
                f"[red]FAIL[/] {r.decision_type}/{r.surface}: " + "; ".join(r.problems()),
                highlight=False,
            )
