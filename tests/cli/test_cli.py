"""The `warden` command line, run as a real subprocess where exit codes and output matter."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_POLICY, payment, review_payment

WARDEN = [sys.executable, "-m", "warden"]


def run(
    *args: str, cwd: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [*WARDEN, *args], capture_output=True, text=True, cwd=cwd, env=env, input=stdin, timeout=120
    )


@pytest.fixture
def decided(tmp_path: Path) -> tuple[Path, list[str]]:
    data = tmp_path / "data"
    requests = tmp_path / "requests.jsonl"
    requests.write_text(
        "\n".join(json.dumps(r) for r in (payment(), review_payment(), payment(jurisdiction=None)))
    )
    result = run("decide", str(requests), "--data-dir", str(data))
    assert result.returncode == 1, result.stderr  # one refused request → non-zero
    ids = [
        line.split()[1]
        for line in result.stdout.splitlines()
        if line.count("-") >= 4 and "│" in line
    ]
    assert "auto_approve" in result.stdout and "review" in result.stdout
    assert "residency.unlabeled" in result.stdout
    return data, ids


def test_policy_check_ok_and_typo_is_one_clear_line(tmp_path: Path) -> None:
    ok = run("policy", "check", str(EXAMPLE_POLICY))
    assert ok.returncode == 0 and "version sha256:" in ok.stdout
    broken = tmp_path / "p.yaml"
    broken.write_text(EXAMPLE_POLICY.read_text().replace("sla_minutes:", "sla_minute:"))
    bad = run("policy", "check", str(broken))
    assert bad.returncode == 2
    assert "review.sla_minute: unknown key 'sla_minute' (did you mean 'sla_minutes'?)" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) <= 2
    assert "residency policy version sha256:" in ok.stdout
    # a route that would send EU data to a US endpoint never loads
    text = EXAMPLE_POLICY.read_text()
    route = "endpoints: [llm-eu-1, llm-eu-2]}"
    line = text[: text.index(route)].count("\n") + 1
    broken.write_text(text.replace(route, "endpoints: [llm-eu-1, llm-us-1]}"))
    bad = run("policy", "check", str(broken))
    assert bad.returncode == 2, bad.stdout
    assert f"p.yaml:{line}: residency.EU.routes[0].endpoints[1]: endpoint 'llm-us-1'" in bad.stderr


def test_audit_commands(decided: tuple[Path, list[str]], tmp_path: Path) -> None:
    data, ids = decided
    decision_id = ids[0]
    show = run("audit", "show", decision_id, "--data-dir", str(data))
    assert show.returncode == 0 and '"kind": "decision"' in show.stdout
    prove = run("audit", "prove", decision_id, "--data-dir", str(data))
    assert prove.returncode == 0 and "verified:" in prove.stdout
    checkpoint = run("audit", "checkpoint", "--data-dir", str(data))
    assert checkpoint.returncode == 0 and "\n— warden.local/" in checkpoint.stdout
    verify = run("audit", "verify", "--data-dir", str(data))
    assert verify.returncode == 0 and verify.stdout.startswith("OK")
    out = tmp_path / "export"
    export = run("audit", "export", str(out), "--data-dir", str(data))
    assert export.returncode == 0
    again = run("audit", "verify", "--export", str(out))
    assert again.returncode == 0, again.stdout
    lines = (out / "entries.jsonl").read_bytes().splitlines()
    lines[1] = lines[1].replace(b'"EU"', b'"US"')
    (out / "entries.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    tampered = run("audit", "verify", "--export", str(out))
    assert tampered.returncode == 1 and "FAIL" in tampered.stdout


def test_policy_show_returns_the_stored_file(decided: tuple[Path, list[str]]) -> None:
    data, _ = decided
    from warden.canonical import content_id

    version = content_id(EXAMPLE_POLICY.read_bytes())
    shown = run("policy", "show", version, "--data-dir", str(data))
    assert shown.returncode == 0 and shown.stdout == EXAMPLE_POLICY.read_text()
    missing = run("policy", "show", "sha256:00", "--data-dir", str(data))
    assert missing.returncode == 2 and "no stored policy" in missing.stderr


def test_errors_are_one_line(tmp_path: Path) -> None:
    nothing = run("audit", "show", "x", "--data-dir", str(tmp_path / "none"))
    assert nothing.returncode == 2 and "no audit log" in nothing.stderr
    assert "Traceback" not in nothing.stderr
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{\n nope")
    result = run("decide", str(bad_json), "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2 and "not valid JSON" in result.stderr


def test_keys_create(tmp_path: Path) -> None:
    created = run("keys", "create", "payments", "--role", "service", "--data-dir", str(tmp_path))
    assert created.returncode == 0 and created.stdout.startswith("wk_ser_")
    again = run("keys", "create", "payments", "--role", "service", "--data-dir", str(tmp_path))
    assert again.returncode == 2 and "exists already" in again.stderr
    bad = run("keys", "create", "x", "--role", "root", "--data-dir", str(tmp_path))
    assert bad.returncode == 2 and "unknown role 'root'" in bad.stderr
    assert "redteam" in bad.stderr  # the message lists the roles there are
    red = run("keys", "create", "red", "--role", "redteam", "--data-dir", str(tmp_path))
    assert red.returncode == 0 and red.stdout.startswith("wk_red_")


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    result = run("demo", "--requests", "400", "--data-dir", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    for expected in (
        "Decisions per band and jurisdiction",
        "residency.unlabeled",
        "p99",
        "verify: OK",
        "Full audit record",
        "verified: entry",
        "Claims triage outcomes per jurisdiction",
        "Routing per jurisdiction",
        "OK every model call went to a zone its jurisdiction allows",
        "Review workbench",
        "/workbench/",
        "fraud-lgbm@champion = version 1",
        "fraud-lgbm@challenger = version 2",
        "activated by demo-model-risk-officer",
        "fields compared, identical",
    ):
        assert expected in out, expected
    assert "llm-eu-2" in out and "llm-us-1" in out  # the EU primary was killed halfway
    # the printed log-in keys work: the demo created them in its data directory
    from warden.auth import KeyRing

    ring = KeyRing(tmp_path / "demo" / "keys.yaml")
    people = r"(reviewer-1|reviewer-2|auditor-1|admin-1)\W+(reviewer|auditor|admin)"
    printed = re.findall(people + r"\W+(wk_[A-Za-z0-9_-]+)", out)
    assert [(name, role) for name, role, _ in printed] == [
        ("reviewer-1", "reviewer"),
        ("reviewer-2", "reviewer"),
        ("auditor-1", "auditor"),
        ("admin-1", "admin"),
    ]
    for name, _, key in printed:
        assert ring.authenticate(key).name == name
