"""`warden redteam` end to end: the real command line, in-process (LLM decision types
answered by the upstream simulators it starts) and against a served gateway by URL whose
upstreams are simulator processes. A deliberately blind guard on an LLM decision type
fails the run on exactly that (decision type, surface)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import EXAMPLE_POLICY
from tests.helpers_llm import start_world
from tests.helpers_server import WardenServer, create_key, run_cli
from tests.helpers_upstream import upstreams  # noqa: F401  (fixture)

PER_SET = "24"
TRIAGE_GUARD = """    guard:
      text: {injection_threshold: 0.5, on_hit: review}

  # The OpenAI"""


#: thresholds far below what the guards measure, so small samples pass whatever their noise
LENIENT = """redteam:
  min_detection_rate:      {text: 0.5, document: 0.5, tool_args: 0.5, output: 0.5}
  max_false_positive_rate: {text: 0.2, document: 0.2, tool_args: 0.2, output: 0.2}
"""


def _policy(tmp_path: Path, raw: str | None = None, *, blind: bool = False) -> Path:
    """The example policy with lenient red-team thresholds and, if `blind`, claims_triage's
    text guard made blind (a threshold no injection score reaches in practice)."""
    text = raw if raw is not None else EXAMPLE_POLICY.read_text()
    head, found, _ = text.partition("\nredteam:\n")  # the last section of the file
    assert text.count(TRIAGE_GUARD) == 1 and found
    text = f"{head}\n{LENIENT}"
    if blind:
        text = text.replace(TRIAGE_GUARD, TRIAGE_GUARD.replace("0.5, on_hit", "1.0, on_hit"))
    path = tmp_path / ("blind.yaml" if blind else "lenient.yaml")
    path.write_text(text)
    return path


def _rows(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["decision_type"], r["surface"]): r for r in report["results"]}


def _json(stdout: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(stdout)
    return report


def test_every_decision_type_and_surface_in_process(tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    result = run_cli("redteam", "-p", str(policy), "--per-set", PER_SET, "--json", timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    report = _json(result.stdout)
    rows = _rows(report)
    assert set(rows) == {
        ("claims_intake", "text"),
        ("claims_intake", "document"),
        ("claims_intake", "tool_args"),
        ("claims_triage", "text"),
        ("assistant_chat", "text"),
        ("assistant_chat", "output"),
    }
    assert report["no_attack_surface"] == ["payment_fraud"]
    assert report["target"] == "in-process" and report["passed"] is True
    # the LLM decision types were answered by simulators, one per HTTP endpoint, named so
    assert set(report["simulators"]) == {"llm-eu-1", "llm-eu-2", "llm-us-1"}
    assert "upstream SIMULATORS" in result.stderr
    for row in rows.values():
        assert row["attacks"] > 0 and row["benign"] > 0 and not row["errors"]
        assert row["flagged_but_approved"] == 0 and row["min_detection"] == 0.5
    # the same sample goes through every door: one classifier, one text figure
    assert len({rows[(t, "text")]["detected"] for t in ("claims_intake", "claims_triage")}) == 1
    assert {t["surface"] for t in report["totals"]} == {"text", "document", "tool_args", "output"}


def test_blind_guard_on_an_llm_decision_type_fails_the_run(tmp_path: Path) -> None:
    policy = _policy(tmp_path, blind=True)
    result = run_cli("redteam", "-p", str(policy), "--per-set", PER_SET, timeout=240)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL claims_triage/text: detection 0.0%" in result.stdout
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL ")]
    assert len(failed) == 1, result.stdout  # the other decision types still pass

    as_json = run_cli("redteam", "-p", str(policy), "--per-set", PER_SET, "--json", timeout=240)
    assert as_json.returncode == 1
    report = _json(as_json.stdout)
    rows = _rows(report)
    assert rows[("claims_triage", "text")]["passed"] is False
    assert rows[("claims_triage", "text")]["detected"] == 0
    assert rows[("claims_intake", "text")]["passed"] is True
    text_total = next(t for t in report["totals"] if t["surface"] == "text")
    assert text_total["failed"] == ["claims_triage"] and text_total["passed"] is False


def test_per_decision_type_threshold_from_the_policy_decides(tmp_path: Path) -> None:
    """Asking more of one decision type than its guard gives fails that one alone."""
    text = _policy(tmp_path).read_text() + (
        "  decision_types:\n"
        "    assistant_chat:\n"
        "      max_false_positive_rate: {output: 0.0}\n"
        "      min_detection_rate: {text: 1.0}\n"
    )
    policy = tmp_path / "strict.yaml"
    policy.write_text(text)
    result = run_cli("redteam", "-p", str(policy), "--per-set", PER_SET, "--json", timeout=240)
    report = _json(result.stdout)
    rows = _rows(report)
    chat = rows[("assistant_chat", "text")]
    assert chat["min_detection"] == 1.0 and rows[("assistant_chat", "output")]["max_fpr"] == 0.0
    assert rows[("claims_triage", "text")]["min_detection"] == 0.5
    assert rows[("claims_triage", "text")]["passed"] is True
    assert chat["detection_rate"] < 1.0, "no jailbreak missed: pick a stricter override"
    assert result.returncode == 1 and chat["passed"] is False


def test_against_a_served_gateway_by_url(upstreams: Any, tmp_path: Path) -> None:  # noqa: F811
    """The gateway's own upstreams (scripted simulators) answer its LLM decision types;
    the red team sees only HTTP: POST /v1/decisions, POST /v1/chat/completions with the
    Warden headers, and GET /v1/decisions/{id} for the audit record. Its key has the
    `redteam` role: every probe is recorded as an exercise, and none reaches the review
    queue or the guard statistics; a service key is refused before any probe is sent."""
    opts = {"scripted": True}
    world = start_world(
        upstreams, tmp_path, **{n: opts for n in ("llm-eu-1", "llm-eu-2", "llm-us-1")}
    )
    blind = _policy(tmp_path, world.policy.read_text(), blind=True)
    data_dir = tmp_path / "data"
    key = create_key(data_dir, "red-1", "redteam")
    service = create_key(data_dir, "svc-1", "service")
    reviewer = create_key(data_dir, "rita", "reviewer")
    with WardenServer(data_dir, tmp_path / "server.log", policy=blind) as server:
        server.start()
        size_before = httpx.get(f"{server.url}/healthz", timeout=5).json()["audit_entries"]
        args = ["redteam", "-p", str(blind), "--url", server.url, "--api-key"]
        as_service = run_cli(*args, service, "--per-set", "2", timeout=120)
        bogus = run_cli(*args, "wk_not_a_key", "--per-set", "2", timeout=120)
        size_after_refusals = httpx.get(f"{server.url}/healthz", timeout=5).json()["audit_entries"]
        result = run_cli(
            *args, key, "--per-set", PER_SET, "--scripted-upstreams", "--json", timeout=240
        )
        queue = httpx.get(
            f"{server.url}/v1/review/queue", headers={"X-API-Key": reviewer}, timeout=10
        ).json()["items"]
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert result.returncode == 1, result.stdout + result.stderr + server.log()
    # a service key, or a key the gateway does not know, stops the run before any probe,
    # with one line saying why
    assert as_service.returncode == 2, as_service.stdout + as_service.stderr
    assert "has role 'service'" in as_service.stderr and "role redteam" in as_service.stderr
    assert bogus.returncode == 2 and "HTTP 401 (unknown API key)" in bogus.stderr, bogus.stderr
    assert size_after_refusals == size_before
    # the probes that went to review are exercises: recorded, never queued
    assert queue == []
    went_to_review = [
        line
        for line in metrics.splitlines()
        if line.startswith("warden_exercise_decisions_total{") and 'outcome="review"' in line
    ]
    assert went_to_review and all(float(x.rsplit(" ", 1)[1]) > 0 for x in went_to_review)
    assert 'warden_guard_checks_total{surface="text"}' not in metrics
    stats = run_cli("guard", "stats", "--data-dir", str(data_dir))
    assert "red-team exercise decisions not counted" in stats.stdout, stats.stdout
    cells = {
        row[0]: row[1:]
        for line in stats.stdout.splitlines()
        if len(row := [c.strip() for c in line.strip("│ ").split("│")]) > 3
    }
    assert cells["text"][:2] == ["0", "0"], stats.stdout  # surface: checked, hits
    report = _json(result.stdout)
    assert report["target"] == server.url and report["simulators"] == {}
    rows = _rows(report)
    assert rows[("claims_triage", "text")]["passed"] is False  # the blind guard
    assert rows[("claims_triage", "text")]["attacks"] == int(PER_SET)
    for key_ in [
        ("assistant_chat", "text"),
        ("assistant_chat", "output"),
        ("claims_intake", "text"),
    ]:
        assert rows[key_]["passed"] is True, rows[key_]
    # the benign triage claims really reached the gateway's upstream simulators
    served = world.requests_by_region()["eu-west-1"]
    assert len(served) >= int(PER_SET), served[:3]
