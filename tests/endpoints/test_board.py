"""The workers' shared breaker board: real files, real memory maps, and a second real
process where it matters (the half-open probe is one per board, not one per process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers_http import serve  # noqa: F401  (fixture)
from tests.helpers_upstream import upstreams  # noqa: F401  (fixture)
from warden.endpoints.board import OPEN, BreakerBoard
from warden.endpoints.breaker import Breaker
from warden.errors import WardenError
from warden.policy.model import BreakerSettings

NAMES = ["llm-eu-1", "llm-eu-2", "llm-us-1"]
SETTINGS = BreakerSettings(failure_threshold=3, open_seconds=5.0)


def pair(tmp_path: Path) -> tuple[Breaker, Breaker]:
    """Two workers' breakers for llm-eu-1, each on its own mapping of one board."""
    path = tmp_path / "breakers.bin"
    BreakerBoard.create(path, NAMES).close()
    a = Breaker("llm-eu-1", SETTINGS, board=BreakerBoard(path, NAMES).slot("llm-eu-1"))
    b = Breaker("llm-eu-1", SETTINGS, board=BreakerBoard(path, NAMES).slot("llm-eu-1"))
    return a, b


def test_an_open_breaker_is_adopted_by_the_other_worker(tmp_path: Path) -> None:
    a, b = pair(tmp_path)
    now = time.monotonic()
    assert a.available(now) and b.available(now)
    for _ in range(3):
        assert a.acquire(now)
        a.record_failure(now)
    assert a.state == "open"
    # b has seen no failure of its own, and still stops calling
    assert not b.available(now) and b.state == "open" and b.failures == 0
    assert b.snapshot()["adopted"] == 1 and b.snapshot()["shared"] is True
    assert b.opened_at == a.opened_at
    assert not b.acquire(now + 1)  # the cool-down is the opener's


def test_a_closed_breaker_is_adopted_too(tmp_path: Path) -> None:
    a, b = pair(tmp_path)
    now = time.monotonic()
    for _ in range(3):
        a.record_failure(now)
    assert not b.available(now)
    later = now + SETTINGS.open_seconds
    assert a.acquire(later) and a.state == "half_open"  # a holds the one probe
    assert not b.available(later) and not b.acquire(later)
    a.record_success()
    assert a.state == "closed"
    assert b.available(later) and b.state == "closed" and b.snapshot()["adopted"] == 2


def test_a_passing_health_check_shortens_everyones_cool_down(tmp_path: Path) -> None:
    a, b = pair(tmp_path)
    now = time.monotonic()
    for _ in range(3):
        a.record_failure(now)
    assert not b.available(now)
    a.probe_now()
    assert b.available(time.monotonic())


def test_a_cancelled_probe_frees_the_slot(tmp_path: Path) -> None:
    a, b = pair(tmp_path)
    now = time.monotonic()
    for _ in range(3):
        a.record_failure(now)
    later = now + SETTINGS.open_seconds
    assert a.acquire(later)
    assert not b.acquire(later)
    a.release()
    assert a.board is not None and a.board.read().probe_owner == 0
    assert b.acquire(later)  # the other worker may probe now


PROBE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from warden.endpoints.board import BreakerBoard
    slot = BreakerBoard(Path(sys.argv[1]), sys.argv[2].split(",")).slot("llm-eu-1")
    print(slot.claim_probe(30.0, time.monotonic()) is not None)
    """
)


def other_process_claims(path: Path) -> bool:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), ",".join(NAMES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip() == "True"


def test_one_probe_across_processes(tmp_path: Path) -> None:
    a, _ = pair(tmp_path)
    now = time.monotonic()
    for _ in range(3):
        a.record_failure(now)
    path = tmp_path / "breakers.bin"
    assert a.acquire(now + SETTINGS.open_seconds)  # this process probes
    assert not other_process_claims(path)  # so another process may not
    a.record_failure()  # the probe failed: open again, and the probe slot is free
    assert a.board is not None and a.board.read().state == OPEN
    assert other_process_claims(path)
    # that process exited holding the probe: it runs out after its deadline only
    assert a.board.read().probe_owner != 0


def test_a_board_for_other_endpoints_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "breakers.bin"
    BreakerBoard.create(path, NAMES).close()
    with pytest.raises(WardenError, match="wrong size"):
        BreakerBoard(path, ["llm-eu-1"])
    with pytest.raises(WardenError, match="other endpoints"):
        BreakerBoard(path, ["llm-eu-1", "llm-eu-2", "llm-xx-9"])
    with pytest.raises(FileExistsError):
        BreakerBoard.create(path, NAMES)


def test_a_restarted_worker_starts_from_the_board(tmp_path: Path) -> None:
    a, _ = pair(tmp_path)
    now = time.monotonic()
    for _ in range(3):
        a.record_failure(now)
    board = BreakerBoard(tmp_path / "breakers.bin", NAMES)  # the new process's mapping
    fresh = Breaker("llm-eu-1", SETTINGS, board=board.slot("llm-eu-1"))
    assert not fresh.available(now) and fresh.state == "open" and fresh.opened_at == a.opened_at


def two_workers(tmp_path: Path, urls: dict[str, str]) -> tuple[Any, Any, Any]:
    """Two workers' endpoint runtimes for the example policy pointed at `urls`, sharing one
    breaker board, and the EU claims-triage route plan."""
    from tests.conftest import EXAMPLE_POLICY
    from warden.endpoints.rebase import rebase_endpoints
    from warden.endpoints.runtime import EndpointRuntime
    from warden.policy.loader import load_policy_file

    policy_path = tmp_path / "policy.yaml"
    policy_path.write_bytes(rebase_endpoints(EXAMPLE_POLICY.read_bytes(), urls))
    routes = load_policy_file(policy_path).routes
    path = tmp_path / "routes.bin"
    BreakerBoard.create(path, list(routes.endpoints)).close()
    a, b = EndpointRuntime(routes), EndpointRuntime(routes)
    for runtime in (a, b):
        runtime.share_breakers(BreakerBoard(path, list(routes.endpoints)))
    plan = routes.plan("EU", "personal", "claims_triage")
    assert plan is not None
    return a, b, plan


async def test_a_failed_health_check_counts_for_every_worker(tmp_path: Path) -> None:
    """Worker A's health checks find the EU endpoints down (nothing listens on their
    ports); worker B, which has not checked yet, skips them as unhealthy at once."""
    from tests.helpers_server import free_port

    dead = {n: f"http://127.0.0.1:{free_port()}/v1" for n in ("llm-eu-1", "llm-eu-2", "llm-us-1")}
    a, b, plan = two_workers(tmp_path, dead)
    assert b.router.route(plan).candidates == plan.allowed  # nothing known yet
    try:
        await a.check_health()
    finally:
        await a.stop()
    routing = b.router.route(plan)
    assert routing.candidates == ()
    unhealthy = [s for s in routing.skipped if s.reason == "unhealthy"]
    assert {s.endpoint for s in unhealthy} == set(plan.allowed)
    assert all("another worker" in s.detail for s in unhealthy)
    health = b.router.health["llm-eu-1"].snapshot()
    assert health["checks"] == 0 and health["adopted"] == 1 and health["healthy"] is False


async def test_workers_share_one_health_check_per_interval(upstreams: Any, tmp_path: Path) -> None:  # noqa: F811
    """Two workers' runtimes on one board against a real simulator: the second worker's
    checks within the interval send nothing and take in the first one's results."""
    from tests.conftest import EXAMPLE_POLICY
    from warden.endpoints.rebase import rebase_endpoints
    from warden.endpoints.runtime import EndpointRuntime
    from warden.policy.loader import load_policy_file

    sim = upstreams("eu-west-1")
    names = ("llm-eu-1", "llm-eu-2", "llm-us-1")
    policy_path = tmp_path / "policy.yaml"
    policy_path.write_bytes(
        rebase_endpoints(EXAMPLE_POLICY.read_bytes(), dict.fromkeys(names, sim.url))
    )
    routes = load_policy_file(policy_path).routes
    path = tmp_path / "routes.bin"
    BreakerBoard.create(path, list(routes.endpoints)).close()
    a = EndpointRuntime(routes, health_interval=30.0)
    b = EndpointRuntime(routes, health_interval=30.0)
    for runtime in (a, b):
        runtime.share_breakers(BreakerBoard(path, list(routes.endpoints)))

    def checks() -> int:
        return len(sim.access_log_entries("/v1/models"))

    try:
        await a.check_health()
        assert checks() == len(names)
        await b.check_health()  # within the interval: nothing sent
        await a.check_health()  # its own checks are not "another worker's"
        assert checks() == 2 * len(names)
    finally:
        await a.stop()
        await b.stop()
    for name in names:
        health = b.router.health[name].snapshot()
        assert health["checks"] == 0 and health["adopted"] >= 1 and health["healthy"] is True


async def test_one_slow_health_check_is_not_shared_as_an_outage(
    serve: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Every endpoint passed, then answers its health GET too late once (a loaded
    machine): worker A's checks are inconclusive, so worker B still routes to all of them
    and A does too; only A's second slow round in a row makes them unhealthy, for both."""
    from tests.helpers_http import reply

    slow = await serve(lambda seen, s: reply(b'{"data":[]}'), delay=2.5)
    urls = {n: f"http://127.0.0.1:{slow.port}/v1" for n in ("llm-eu-1", "llm-eu-2", "llm-us-1")}
    a, b, plan = two_workers(tmp_path, urls)
    try:
        slow.delay = 0.0
        await a.check_health()  # every endpoint passes once
        assert b.router.route(plan).candidates == plan.allowed
        adopted = b.router.health["llm-eu-1"].snapshot()["adopted"]
        slow.delay = 2.5
        await a.check_health()
        assert a.router.route(plan).candidates == plan.allowed
        assert b.router.route(plan).candidates == plan.allowed
        snap = a.router.health["llm-eu-1"].snapshot()
        assert snap["forgiven_timeouts"] == 1 and snap["healthy"] is True
        assert b.router.health["llm-eu-1"].snapshot()["adopted"] == adopted  # nothing new
        await a.check_health()
    finally:
        await a.stop()
    assert a.router.route(plan).candidates == ()
    assert b.router.route(plan).candidates == ()
    assert b.router.health["llm-eu-1"].snapshot()["adopted"] == adopted + 1


def test_on_a_weakly_ordered_cpu_breakers_are_read_under_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the seqlock's lock-free read is unsound (`warden.memory_order`), a reader
    waits for a writer that holds the board, and an open breaker is still adopted."""
    import threading

    from warden import memory_order

    monkeypatch.setattr(memory_order, "LOCK_FREE_READS", False)
    a, b = pair(tmp_path)
    now = time.monotonic()
    for _ in range(SETTINGS.failure_threshold):
        assert a.acquire(now)
        a.record_failure(now)
    assert a.state == "open"
    # adopted through a locked read
    assert not b.available(now) and b.state == "open" and b.snapshot()["adopted"] == 1
    path = tmp_path / "breakers.bin"
    writer, reader = BreakerBoard(path, NAMES), BreakerBoard(path, NAMES)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (reader.read(0), done.set()))
    with writer._locked(0):
        thread.start()
        assert not done.wait(0.3)  # held off by the writer's lock
    assert done.wait(10)
    thread.join()
    writer.close()
    reader.close()
