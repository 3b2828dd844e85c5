"""`warden serve --workers 2`: real worker processes sharing one port and feeding one audit
writer, in front of real simulator processes. Both workers serve decisions and chat
completions; the log stays one consistent log (verify passes, seq contiguous, checkpoints
valid); idempotency keys hold across workers; a worker killed with -9 is restarted and
nothing acknowledged is lost; SIGTERM stops everything cleanly; a killed parent takes its
workers with it; a thresholds activation made through one worker reaches the other; both
workers' band monitors show the same window (the shared series board)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import payment
from tests.helpers_llm import World, claim, served_world, start_world
from tests.helpers_server import WardenServer, create_key, run_cli
from tests.helpers_upstream import upstreams  # noqa: F401  (fixture)
from warden.audit.sqlite_store import SQLiteAuditStore
from warden.audit.tools import read_only
from warden.auth import KeyRing, Role
from warden.models.thresholds import proposals
from warden.supervisor import worker_count

WORKER = "X-Warden-Worker"
CHAT_HEADERS = {"X-Warden-Decision-Type": "assistant_chat", "X-Warden-Jurisdiction": "EU"}
CHAT = {"model": "x", "messages": [{"role": "user", "content": "What does my policy cover?"}]}


@pytest.fixture
def served(upstreams: Any, tmp_path: Path) -> Iterator[tuple[World, WardenServer, str, str]]:  # noqa: F811
    with served_world(upstreams, tmp_path, workers=2) as served:
        yield served


def until_both_workers(send: Any, tries: int = 200) -> list[httpx.Response]:
    """Send on fresh connections until responses came from two different worker pids."""
    responses: list[httpx.Response] = []
    for _ in range(tries):
        responses.append(send())
        if len({r.headers[WORKER] for r in responses}) >= 2:
            return responses
    raise AssertionError(f"only one worker answered {tries} fresh connections")


def log_is_consistent(data_dir: Path) -> list[Any]:
    result = run_cli("audit", "verify", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    store = SQLiteAuditStore(data_dir, writable=False)
    try:
        entries = list(store.iter_entries())
        assert [e.seq for e in entries] == list(range(len(entries)))
        latest = store.latest_checkpoint()
        assert latest is not None and latest.size == len(entries)
        return entries
    finally:
        store.close()


def test_two_workers_serve_one_consistent_log(
    served: tuple[World, WardenServer, str, str],
) -> None:
    world, server, key, auditor = served
    auth = {"X-API-Key": key}

    def chat() -> httpx.Response:
        headers = {**CHAT_HEADERS, "Authorization": f"Bearer {key}"}
        response = httpx.post(f"{server.url}/v1/chat/completions", json=CHAT, headers=headers)
        assert response.status_code == 200, response.text
        return response

    def decision() -> httpx.Response:
        response = httpx.post(f"{server.url}/v1/decisions", json=claim("EU"), headers=auth)
        assert response.status_code == 200, response.text
        return response

    chats = until_both_workers(chat)
    decisions = until_both_workers(decision)
    assert {r.headers[WORKER] for r in chats} == {r.headers[WORKER] for r in decisions}
    assert all(c.json()["object"] == "chat.completion" for c in chats)
    eu_calls = {e["decision_id"] for e in world.upstreams["llm-eu-1"].access_log_entries()}
    assert {c.headers["X-Warden-Decision-Id"] for c in chats} <= eu_calls

    # an idempotency key used through both workers: one decision, replayed by the other
    keyed = {**claim("EU"), "idempotency_key": "claim-77"}
    replies = until_both_workers(
        lambda: httpx.post(f"{server.url}/v1/decisions", json=keyed, headers=auth)
    )
    assert len({r.json()["decision_id"] for r in replies}) == 1
    assert [r.json()["replayed"] for r in replies] == [False] + [True] * (len(replies) - 1)
    # and raced: concurrent first uses of a new key, on many connections, agree on one
    raced: list[httpx.Response] = []
    race = {**claim("EU"), "idempotency_key": "claim-race"}

    def racer() -> None:
        raced.append(httpx.post(f"{server.url}/v1/decisions", json=race, headers=auth, timeout=30))

    threads = [threading.Thread(target=racer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in raced] == [200] * 8
    assert len({r.json()["decision_id"] for r in raced}) == 1
    assert sum(not r.json()["replayed"] for r in raced) == 1

    # a worker reads what the other wrote: record and proof of a chat served elsewhere
    first = chats[0].headers["X-Warden-Decision-Id"]
    for _ in range(20):
        record = httpx.get(f"{server.url}/v1/decisions/{first}", headers={"X-API-Key": auditor})
        proof = httpx.get(
            f"{server.url}/v1/decisions/{first}/proof", headers={"X-API-Key": auditor}
        )
        assert record.status_code == 200 and proof.status_code == 200, proof.text
        assert [e["kind"] for e in record.json()["entries"]] == ["intent", "decision"]

    # metrics are summed over the workers: one count per decision in the log
    metrics = httpx.get(f"{server.url}/metrics").text
    counted = sum(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("warden_decisions_total{")
    )
    batches = [line for line in metrics.splitlines() if line.startswith("warden_audit_batch")]
    assert batches, "the audit writer's metrics are missing"
    # the band monitor is one monitor: both workers report every decision, in one window
    monitors = until_both_workers(
        lambda: httpx.get(f"{server.url}/v1/bands/monitor", headers={"X-API-Key": auditor})
    )
    views = {r.headers[WORKER]: r.json()["decision_types"] for r in monitors}
    assert len(views) == 2
    first_view, second_view = views.values()
    assert first_view == second_view, views
    assert sum(t["decisions_seen"] for t in first_view.values()) == counted
    assert all(t["shared_by_workers"] and t["missed"] == 0 for t in first_view.values())
    size = httpx.get(f"{server.url}/healthz").json()["audit_entries"]

    assert server.terminate() == 0, server.log()
    entries = log_is_consistent(server.data_dir)
    assert size == len(entries)
    assert counted == sum(e.kind == "decision" for e in entries)
    keyed_entries = [
        e for e in entries if e.kind == "decision" and e.body()["request"].get("idempotency_key")
    ]
    assert len(keyed_entries) == 2  # claim-77 and claim-race, once each
    assert not (server.data_dir / "audit.sock").exists()


def test_killed_worker_is_restarted_and_nothing_acknowledged_is_lost(
    served: tuple[World, WardenServer, str, str],
) -> None:
    _, server, key, _ = served
    acked: list[str] = []
    errors: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def client(n: int) -> None:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=30) as c:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    response = c.post("/v1/decisions", json=claim("EU", claim_amount=n + i))
                except httpx.TransportError:
                    continue  # its worker was killed: reconnect (to either worker)
                with lock:
                    if response.status_code == 200:
                        acked.append(response.json()["decision_id"])
                    else:
                        errors.append(f"{response.status_code} {response.text[:200]}")

    healthz = until_both_workers(lambda: httpx.get(server.url + "/healthz"))
    pids = {r.headers[WORKER] for r in healthz}
    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(6)]
    for thread in threads:
        thread.start()
    while len(acked) < 30:
        time.sleep(0.05)
    victim = int(sorted(pids)[0])
    os.kill(victim, signal.SIGKILL)
    new_pids: set[str] = set()
    for _ in range(600):  # until the supervisor has a replacement answering
        with contextlib.suppress(httpx.TransportError):
            new_pids = {httpx.get(server.url + "/healthz").headers[WORKER]} - pids
        if new_pids:
            break
        time.sleep(0.1)
    assert new_pids, server.log()
    before = len(acked)
    while len(acked) < before + 30:
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors[:3]
    assert f"pid {victim}) exited with signal SIGKILL" in server.log()
    assert server.terminate() == 0, server.log()

    entries = log_is_consistent(server.data_dir)
    decided = {e.decision_id for e in entries if e.kind == "decision"}
    assert set(acked) <= decided  # every acknowledged decision is in the log
    assert len(acked) == len(set(acked))


def test_killed_parent_takes_its_workers_and_leaves_a_valid_log(
    served: tuple[World, WardenServer, str, str],
) -> None:
    _, server, key, _ = served
    responses = until_both_workers(
        lambda: httpx.post(
            f"{server.url}/v1/decisions", json=claim("EU"), headers={"X-API-Key": key}
        )
    )
    pids = {int(r.headers[WORKER]) for r in responses}
    server.kill()  # SIGKILL the parent (the audit writer)
    for _ in range(300):
        alive = [pid for pid in pids if _alive(pid)]
        if not alive:
            break
        time.sleep(0.1)
    assert not alive, f"workers {alive} outlived their parent"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/healthz", timeout=2)
    entries = log_is_consistent(server.data_dir)
    decided = {e.decision_id for e in entries if e.kind == "decision"}
    assert {r.json()["decision_id"] for r in responses} <= decided
    server.start(timeout=60)  # the data directory is free again
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by anyone) counts as gone
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


def test_a_thresholds_activation_reaches_every_worker(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    ring = KeyRing(data / "keys.yaml")
    keys = {n: ring.create(n, r) for n, r in (("ada", Role.ADMIN), ("bo", Role.ADMIN))}
    svc = {"X-API-Key": ring.create("svc", Role.SERVICE)}
    calibrated = run_cli(
        "calibrate", "--api-key", keys["ada"], "--rows", "3000",
        "--report", str(tmp_path / "report"), "--data-dir", str(data),
    )  # fmt: skip
    assert calibrated.returncode == 0, calibrated.stdout + calibrated.stderr
    with read_only(data) as store:
        (proposal,) = proposals(store)
    version = proposal["thresholds_version"]
    with WardenServer(data, tmp_path / "serve.log", workers=2) as server:
        server.start(timeout=60)
        done = httpx.post(
            f"{server.url}/v1/thresholds/{version}/approve", headers={"X-API-Key": keys["bo"]}
        )
        assert done.status_code == 200, done.text
        approver = done.headers[WORKER]
        seen: dict[str, set[str | None]] = {}
        for _ in range(400):  # fresh connections until both workers decided with it
            decided = httpx.post(f"{server.url}/v1/decisions", json=payment(), headers=svc)
            assert decided.status_code == 200, decided.text
            seen.setdefault(decided.headers[WORKER], set()).add(
                decided.json()["thresholds_version"]
            )
            if len(seen) == 2 and all(version in v for v in seen.values()):
                break
            time.sleep(0.02)
        assert version in seen[approver]
        assert len(seen) == 2 and all(version in v for v in seen.values()), (seen, server.log())


def test_bad_worker_counts_are_refused_naming_the_option(tmp_path: Path) -> None:
    for value in ("0", "two", "-3"):
        result = run_cli("serve", "--data-dir", str(tmp_path / "d"), "--workers", value)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "--workers" in result.stderr and value in result.stderr
    assert not (tmp_path / "d").exists()  # refused before anything was opened
    assert worker_count("auto") == (os.cpu_count() or 1)
    assert worker_count("3") == 3


def test_an_open_breaker_is_shared_by_the_workers(upstreams: Any, tmp_path: Path) -> None:  # noqa: F811
    """The EU primary dies: the first worker whose breaker opens publishes it, and the other
    worker stops calling the dead endpoint too, without failing calls of its own to learn
    it (it used to need `failure_threshold` failures per worker). A long cool-down keeps
    any probe out of the run."""
    world = start_world(upstreams, tmp_path)
    text = world.policy.read_text()
    head, primary, rest = text.partition("  llm-eu-1:\n")
    rest = rest.replace("open_seconds: 2}", "open_seconds: 120}", 1)
    world.policy.write_text(head + primary + rest)
    data_dir = tmp_path / "data"
    key = create_key(data_dir, "svc", "service")
    with WardenServer(data_dir, tmp_path / "server.log", policy=world.policy, workers=2) as server:
        server.start(timeout=60)
        auth = {"X-API-Key": key}
        world.upstreams["llm-eu-1"].kill()
        served: dict[str, int] = {}
        for _ in range(200):  # fresh connections, until each worker served a few claims
            response = httpx.post(f"{server.url}/v1/decisions", json=claim("EU"), headers=auth)
            assert response.status_code == 200, response.text
            worker = response.headers[WORKER]
            served[worker] = served.get(worker, 0) + 1
            if len(served) == 2 and min(served.values()) >= 4:
                break
        assert len(served) == 2, served
        health = until_both_workers(lambda: httpx.get(f"{server.url}/healthz", timeout=10))
        breakers = {r.headers[WORKER]: r.json()["endpoints"]["llm-eu-1"]["breaker"] for r in health}
    opened = [b for b in breakers.values() if b["times_opened"]]
    adopted = [b for b in breakers.values() if b["adopted"]]
    assert len(opened) == 1 and len(adopted) == 1, breakers
    assert opened[0] is not adopted[0]
    assert adopted[0]["state"] == "open" and adopted[0]["failures"] < 3, breakers
    assert all(b["shared"] for b in breakers.values())
