"""The `warden model` and `warden thresholds` commands (in-process, through Typer)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from warden.auth import KeyRing, Role
from warden.cli.main import app
from warden.models.registry import ModelRegistry

runner = CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1"})


def test_model_train_list_and_alias(registry: ModelRegistry) -> None:
    root = str(registry.root)
    trained = runner.invoke(
        app,
        ["model", "train", "--name", "fraud-cli", "--alias", "challenger", "--rows", "12000",
         "--data-dir", root],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    assert "registered fraud-cli version 1 as challenger" in trained.output
    assert "sha256:" in trained.output
    promoted = runner.invoke(
        app, ["model", "alias", "1", "champion", "--name", "fraud-cli", "--data-dir", root]
    )
    assert promoted.exit_code == 0 and "fraud-cli@champion → version 1" in promoted.output
    listed = runner.invoke(app, ["model", "list", "--name", "fraud-cli", "--data-dir", root])
    assert listed.exit_code == 0
    assert "challenger, champion" in listed.output and "payment/v1" in listed.output
    bad = runner.invoke(
        app, ["model", "alias", "1", "production", "--name", "fraud-cli", "--data-dir", root]
    )
    assert bad.exit_code == 2 and "alias must be one of champion, challenger" in bad.output


def test_thresholds_list_and_maker_checker_approve(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ring = KeyRing(data / "keys.yaml")
    data.mkdir()
    ada = ring.create("ada-admin", Role.ADMIN)
    bo = ring.create("bo-admin", Role.ADMIN)
    rita = ring.create("rita-reviewer", Role.REVIEWER)
    denied = runner.invoke(app, ["calibrate", "--api-key", rita, "--data-dir", str(data)])
    assert denied.exit_code == 2 and "may not admin" in denied.output
    proposed = runner.invoke(
        app, ["calibrate", "--api-key", ada, "--rows", "3000", "--data-dir", str(data)]
    )
    assert proposed.exit_code == 0, proposed.output
    assert "baseline: policy's static bands" in proposed.output
    version = proposed.output.split("proposed ")[1].split()[0]
    assert version.startswith("sha256:")
    listed = runner.invoke(app, ["thresholds", "list", "--data-dir", str(data)])
    assert version[:20] in listed.output and "ada-admin" in listed.output
    same = runner.invoke(
        app, ["thresholds", "approve", version, "--api-key", ada, "--data-dir", str(data)]
    )
    assert same.exit_code == 2 and "a second admin must approve" in same.output
    ok = runner.invoke(
        app, ["thresholds", "approve", version, "--api-key", bo, "--data-dir", str(data)]
    )
    assert ok.exit_code == 0 and f"activated {version} for payment_fraud" in ok.output
    listed = runner.invoke(app, ["thresholds", "list", "--data-dir", str(data)])
    assert "yes" in listed.output
