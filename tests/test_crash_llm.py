"""Crash with model calls in flight: `kill -9` the real server while claims wait on a slow
simulator. Every intent is durable before its call, so afterwards `warden audit
completeness` lists the calls that never got a final record (and exits 1 with no grace
period), every acknowledged decision is complete, and `warden routes verify`, cross-checked
against the simulators' access logs, finds no violation — and does find a forged one."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.helpers_llm import claim, start_world
from tests.helpers_server import WardenServer, create_key, run_cli
from tests.helpers_upstream import upstreams  # noqa: F401  (fixture)
from warden.audit.sqlite_store import SQLiteAuditStore

THREADS = 12
LATENCY_MS = 300


def test_kill_9_with_llm_calls_in_flight(upstreams: Any, tmp_path: Path) -> None:  # noqa: F811
    world = start_world(
        upstreams, tmp_path, **{n: {"latency_ms": LATENCY_MS} for n in ("llm-eu-1", "llm-us-1")}
    )
    data_dir = tmp_path / "data"
    key = create_key(data_dir, "svc", "service")
    since = datetime.now(UTC) - timedelta(minutes=1)
    acked: list[dict[str, Any]] = []
    unexpected: list[str] = []
    lock = threading.Lock()
    killed = threading.Event()
    with WardenServer(data_dir, tmp_path / "server.log", policy=world.policy) as server:
        server.start()

        def worker(n: int) -> None:
            with httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=10) as c:
                for i in range(1000):
                    request = claim("EU" if (n + i) % 3 else "US", claim_amount=50.0 + n + i)
                    try:
                        response = c.post("/v1/decisions", json=request)
                    except httpx.TransportError as exc:
                        if not killed.is_set():
                            unexpected.append(f"{type(exc).__name__}: {exc}")
                        return
                    with lock:
                        if response.status_code != 200:
                            unexpected.append(f"{response.status_code} {response.text[:300]}")
                            return
                        acked.append(response.json())

        threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(acked) < 2 * THREADS and time.monotonic() < deadline and not unexpected:
            time.sleep(0.05)
        time.sleep(LATENCY_MS / 2000)  # mid-call: the threads are waiting on the simulator
        killed.set()
        server.kill()
        for thread in threads:
            thread.join(timeout=15)
    assert unexpected == [], unexpected[:3]
    assert len(acked) >= THREADS

    today = datetime.now(UTC).date().isoformat()
    result = run_cli(
        "audit",
        "completeness",
        "--date",
        today,
        "--grace-minutes",
        "0",
        "--data-dir",
        str(data_dir),
        "--json",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    overdue = {row["decision_id"] for row in report["overdue"]}
    assert len(overdue) >= THREADS // 2, report  # the calls cut off by the kill
    assert report["complete"] >= len(acked)
    acked_ids = {a["decision_id"] for a in acked}
    assert not overdue & acked_ids
    # with a grace period the same calls are pending, not findings
    result = run_cli("audit", "completeness", "--date", today, "--data-dir", str(data_dir))
    assert result.returncode == 0 and f"{len(overdue)} pending" in result.stdout, result.stdout

    store = SQLiteAuditStore(data_dir, writable=False)
    try:
        for ack in acked:
            kinds = [e.kind for e in store.entries_for(ack["decision_id"])]
            assert kinds == ["intent", "decision"], (ack["decision_id"], kinds)
        for decision_id in overdue:  # the intent names the endpoint it was calling
            (intent,) = store.entries_for(decision_id)
            assert intent.kind == "intent" and intent.body()["endpoint"] in ("llm-eu-1", "llm-us-1")
    finally:
        store.close()

    until = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    logs = [str(p) for p in world.access_logs()]
    args = [
        "routes",
        "verify",
        "--since",
        since.isoformat(),
        "--until",
        until,
        "--data-dir",
        str(data_dir),
        "--policy",
        str(world.policy),
    ]
    for log in logs:
        args += ["--access-log", log]
    result = run_cli(*args, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    verified = json.loads(result.stdout)
    assert verified["jurisdictions"]["EU"]["share_in_allowed_zone"] == 1.0
    assert verified["access_log"]["with_decision_id"] >= len(acked) + len(overdue) - 2
    assert verified["access_log"]["unknown_decision"] == []

    # an EU decision that (per a forged upstream log line) reached the US endpoint
    eu_id = next(a["decision_id"] for a in acked if a["jurisdiction"] == "EU")
    forged = tmp_path / "forged.jsonl"
    forged.write_text(
        json.dumps(
            {
                "ts": datetime.now(UTC).isoformat(),
                "request_id": "x",
                "decision_id": eu_id,
                "region": "us-east-1",
                "path": "/v1/chat/completions",
                "status": 200,
                "latency_ms": 1.0,
                "model": "sim-triage-1",
            }
        )
        + "\n"
    )
    result = run_cli(*args, "--access-log", str(forged))
    assert result.returncode == 1, result.stdout
    assert "VIOLATION" in result.stdout and eu_id in result.stdout
