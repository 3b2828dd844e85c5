"""The demo's model steps: train the payment-fraud model (or load it, when the data
directory's MLflow registry has it), then calibrate the bands on labelled outcomes and have
a second admin activate them (maker-checker), so the stream runs through calibrated bands."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from rich.console import Console

from warden.auth import Principal, Role
from warden.gateway import Gateway
from warden.models.registry import ModelRegistry

#: what the demo keeps when it starts from a fresh data directory (training is the slow part)
REGISTRY_FILES = ("mlflow.db", "mlartifacts")
PROPOSER = Principal("demo-risk-analyst", Role.ADMIN)
APPROVER = Principal("demo-model-risk-officer", Role.ADMIN)


def prepare_model(data_dir: Path, console: Console) -> None:
    from warden.models.serving import ensure_model, train_and_register
    from warden.models.train import TrainConfig

    started = time.perf_counter()
    registry = ModelRegistry(data_dir)
    version, trained = ensure_model(registry)
    took = time.perf_counter() - started
    verb = "trained and registered" if trained else "loaded from the registry"
    console.print(
        f"model           fraud-lgbm@champion = version {version.version} ({verb} in "
        f"{took:.1f}s; MLflow sqlite:///{data_dir.resolve() / 'mlflow.db'})\n"
        f"                artifact {version.sha256}",
        highlight=False,
    )
    if trained:  # a challenger beside it: another seed, the same data (not served)
        challenger, _ = train_and_register(
            registry, "fraud-lgbm", ("challenger",), TrainConfig(seed=TrainConfig().seed + 1)
        )
        console.print(
            f"                fraud-lgbm@challenger = version {challenger.version} "
            f"({challenger.sha256}); promote with: warden model alias "
            f"{challenger.version} champion --data-dir {data_dir}",
            highlight=False,
        )


def calibrate_bands(gateway: Gateway, data_dir: Path, console: Console, rows: int = 20_000) -> None:
    """Propose calibrated thresholds for payment_fraud and activate them as a second admin,
    unless the active version already fits the loaded model and rules."""
    from warden.gates.bands import applicable

    compiled = gateway.policy.decision_types["payment_fraud"]
    model = gateway.models.get(compiled.spec.model or "")
    active = gateway.bands.thresholds.get("payment_fraud")
    fit = {"rules_version": compiled.rules_version, "model": model.as_record() if model else None}
    if active is not None and applicable(active, fit):
        console.print(f"thresholds      {active.version} (active, fitted for this model)")
        return
    started = time.perf_counter()
    proposed = asyncio.run(gateway.calibrate_thresholds(PROPOSER, "payment_fraud", rows=rows))
    version = proposed["thresholds_version"]
    asyncio.run(gateway.approve_thresholds(version, APPROVER))
    report = Path(proposed["report"][0]).parent if proposed["report"] else data_dir
    s = proposed["summary"]
    console.print(
        f"thresholds      {version}: approve ≤ {s['chosen']['approve_at_or_below']:.4f}, "
        f"decline ≥ {s['chosen']['decline_at_or_above']:.4f} on the calibrated score "
        f"(isotonic; {time.perf_counter() - started:.1f}s)\n"
        f"                proposed by {PROPOSER.name}, activated by {APPROVER.name} "
        "(maker-checker, both in the audit log)\n"
        f"                held out: PR-AUC {s['pr_auc']:.3f}, ECE {s['ece_raw']:.4f} → "
        f"{s['ece_calibrated']:.4f}; cost per decision {s['chosen']['cost_per_decision']:.3f} "
        f"vs {s['baseline_static_bands']['cost_per_decision']:.3f} (static bands) and "
        f"{s['baseline_single_threshold']['cost_per_decision']:.3f} (one threshold)\n"
        f"                report {report}/",
        highlight=False,
    )


def print_reproduced(gateway: Gateway, decision_id: str | None, console: Console) -> None:
    from warden.auth import LOCAL_ADMIN

    if decision_id is None:
        return
    report = gateway.reproduce(decision_id, LOCAL_ADMIN)
    verdict = "[green]identical[/]" if report["identical"] else "[red]NOT identical[/]"
    console.print(
        f"reproduced {decision_id}: {report['compared']} fields compared, {verdict}\n"
        "  (re-run from its record with the stored policy, the model artefact fetched by its "
        f"hash and the thresholds version; also: warden audit reproduce {decision_id})",
        highlight=False,
    )
