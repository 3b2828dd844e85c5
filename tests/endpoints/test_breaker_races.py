"""The breaker under concurrent calls, over real sockets: a call let through while the
breaker was closed may end after it opened (or while its one half-open probe is out);
its outcome must neither close the breaker nor end or duplicate the probe. And with the
workers' shared board, a passing health check shortens the cool-down without taking the
probe away from the worker that holds it.

The upstream here answers each request when the test says so (an `asyncio.Event` per
decision id), so nothing depends on timing."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.endpoints.test_client import BODY, RAW, client_for
from tests.helpers_http import reply
from warden.endpoints.board import BreakerBoard
from warden.endpoints.breaker import Breaker
from warden.endpoints.client import ChatClient
from warden.policy.model import BreakerSettings
from warden.policy.residency import RoutePlan


@dataclass
class Gated:
    """An upstream that holds each request until `answer(decision_id, status)`."""

    port: int = 0
    seen: list[str] = field(default_factory=list)
    arrived: dict[str, asyncio.Event] = field(default_factory=dict)
    answers: dict[str, asyncio.Future[int]] = field(default_factory=dict)
    handlers: set[asyncio.Task[Any]] = field(default_factory=set)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    def _future(self, decision_id: str) -> asyncio.Future[int]:
        if decision_id not in self.answers:
            self.answers[decision_id] = asyncio.get_running_loop().create_future()
        return self.answers[decision_id]

    def _arrived(self, decision_id: str) -> asyncio.Event:
        return self.arrived.setdefault(decision_id, asyncio.Event())

    def answer(self, decision_id: str, status: int) -> None:
        self._future(decision_id).set_result(status)

    async def wait_for(self, decision_id: str) -> None:
        await asyncio.wait_for(self._arrived(decision_id).wait(), 5)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        self.writers.append(writer)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = dict(
                    line.decode().lower().split(": ", 1) for line in head[:-4].split(b"\r\n")[1:]
                )
                await reader.readexactly(int(headers.get("content-length", "0")))
                decision_id = headers["x-warden-decision-id"]
                self.seen.append(decision_id)
                self._arrived(decision_id).set()
                status = await self._future(decision_id)
                writer.write(reply(RAW.encode() if status == 200 else b"{}", status=status))
                await writer.drain()
        writer.close()


@pytest.fixture
async def gated() -> AsyncIterator[Gated]:
    state = Gated()
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    yield state
    for future in state.answers.values():
        if not future.done():
            future.set_result(503)
    for writer in state.writers:
        writer.close()
    server.close()
    if state.handlers:
        await asyncio.wait(state.handlers, timeout=5)


def gated_client(gated: Gated) -> tuple[ChatClient, RoutePlan, Breaker]:
    client, plan = client_for(f"http://127.0.0.1:{gated.port}/v1", retries=0, threshold=1)
    return client, plan, client.router.breakers["e1"]


def start(client: ChatClient, plan: RoutePlan, decision_id: str) -> asyncio.Task[Any]:
    return asyncio.ensure_future(client.complete(client.router.route(plan), BODY, decision_id))


async def early_call_then_open(
    client: ChatClient, plan: RoutePlan, gated: Gated
) -> asyncio.Task[Any]:
    """A call let through while the breaker is closed, still out when a second call's
    failure opens the breaker (threshold 1); returns the early call."""
    early = start(client, plan, "early")
    await gated.wait_for("early")
    failing = start(client, plan, "failing")
    await gated.wait_for("failing")
    gated.answer("failing", 503)
    assert not (await failing).ok
    return early


async def test_a_success_of_a_call_sent_before_the_breaker_opened_does_not_close_it(
    gated: Gated,
) -> None:
    client, plan, breaker = gated_client(gated)
    try:
        early = await early_call_then_open(client, plan, gated)
        assert breaker.state == "open" and breaker.times_opened == 1
        gated.answer("early", 200)
        assert (await early).ok  # the call itself did succeed, and is recorded as such
        # but it says nothing about the endpoint since the breaker opened
        assert breaker.state == "open"
        routing = client.router.route(plan)
        assert routing.candidates == () and routing.skipped[0].reason == "breaker_open"
    finally:
        await client.aclose()


@pytest.mark.parametrize("early_end", ["fails", "is_cancelled"])
async def test_a_call_sent_before_the_breaker_opened_does_not_end_the_half_open_probe(
    gated: Gated, early_end: str
) -> None:
    client, plan, breaker = gated_client(gated)
    try:
        early = await early_call_then_open(client, plan, gated)
        assert breaker.state == "open"
        breaker.probe_now()  # a health check passed: the next call probes
        probe = start(client, plan, "probe")
        await gated.wait_for("probe")
        assert breaker.state == "half_open" and breaker.probe_in_flight
        if early_end == "fails":
            gated.answer("early", 503)
            assert not (await early).ok
        else:
            early.cancel()
            with pytest.raises(asyncio.CancelledError):
                await early
        # the probe is still the only one out, and the breaker still waits for it
        assert breaker.state == "half_open" and breaker.probe_in_flight
        assert breaker.times_opened == 1
        breaker.probe_now()  # another passing health check changes nothing either
        second = await client.complete(client.router.route(plan), BODY, "second")
        assert not second.ok and second.attempts == []
        assert "its one probe call is out" in second.skipped[-1]["detail"], second.skipped
        assert "second" not in gated.seen  # no second probe went out
        gated.answer("probe", 200)
        assert (await probe).ok
        assert breaker.state == "closed" and breaker.consecutive_failures == 0
    finally:
        await client.aclose()


def test_a_failure_from_before_the_probe_neither_reopens_nor_frees_a_second_probe() -> None:
    """The same at the breaker's own interface, as the chat client uses it."""
    breaker = Breaker("x", BreakerSettings(failure_threshold=1, open_seconds=5))
    early = breaker.admit(now=0)
    assert early == 0  # an ordinary call: the breaker is closed
    assert breaker.admit(now=0) == 0
    breaker.record_failure(now=0, probe=0)
    assert breaker.state == "open"
    probe = breaker.admit(now=5)
    assert probe and breaker.state == "half_open"
    breaker.record_failure(now=5.5, probe=early)
    assert breaker.state == "half_open" and breaker.times_opened == 1
    assert breaker.admit(now=11) is None, "the probe is still out"
    breaker.record_success(probe=early)
    assert breaker.state == "half_open"
    breaker.release(probe=early)
    assert breaker.admit(now=11) is None
    breaker.record_failure(now=12, probe=probe)  # the probe's own answer decides
    assert breaker.state == "open" and breaker.times_opened == 2
    again = breaker.admit(now=17)
    assert again and again != probe
    breaker.record_success(probe=probe)  # the earlier probe's late answer: not this one's
    assert breaker.state == "half_open"
    breaker.record_success(probe=again)
    assert breaker.state == "closed" and breaker.successes == 3


def test_a_passing_health_check_elsewhere_does_not_free_the_probe_another_worker_holds(
    tmp_path: Path,
) -> None:
    names = ["llm-eu-1"]
    path = tmp_path / "breakers.bin"
    BreakerBoard.create(path, names).close()
    settings = BreakerSettings(failure_threshold=1, open_seconds=5.0)
    a = Breaker("llm-eu-1", settings, board=BreakerBoard(path, names).slot("llm-eu-1"))
    b = Breaker("llm-eu-1", settings, board=BreakerBoard(path, names).slot("llm-eu-1"))
    now = time.monotonic()
    assert a.acquire(now)
    a.record_failure(now)
    assert not b.available(now) and b.state == "open"
    later = now + settings.open_seconds
    assert b.acquire(later) and b.state == "half_open"  # b sends the one probe
    a.probe_now()  # a's health check passes meanwhile
    assert not a.acquire(later), "b's probe is still out: a may not send a second one"
    b.record_success()
    assert b.state == "closed"
    assert a.available(later) and a.state == "closed"


def test_a_late_failure_in_a_worker_that_has_not_looked_since_leaves_the_probe_alone(
    tmp_path: Path,
) -> None:
    """Worker A let a call through while closed; meanwhile worker B opened the breaker and
    now holds the one probe. A's call failing at last is old news: it must not publish a
    fresh opening, which would end B's probe and let worker C send a second one."""
    names = ["llm-eu-1"]
    path = tmp_path / "breakers.bin"
    BreakerBoard.create(path, names).close()
    settings = BreakerSettings(failure_threshold=1, open_seconds=5.0)
    a, b, c = (
        Breaker("llm-eu-1", settings, board=BreakerBoard(path, names).slot("llm-eu-1"))
        for _ in range(3)
    )
    now = time.monotonic()
    early = a.admit(now)
    assert early == 0
    assert b.admit(now) == 0
    b.record_failure(now, probe=0)
    assert b.state == "open"
    later = now + settings.open_seconds
    assert b.admit(later)  # b's probe is out
    a.record_failure(later, probe=early)
    assert a.state == "open" and a.times_opened == 0  # adopted, not opened again by a
    assert not c.acquire(later + settings.open_seconds), "b's probe is still the one out"


def _two_workers(tmp_path: Path, open_seconds: float = 5.0) -> tuple[Breaker, Breaker]:
    names = ["llm-eu-1"]
    path = tmp_path / "breakers.bin"
    BreakerBoard.create(path, names).close()
    settings = BreakerSettings(failure_threshold=1, open_seconds=open_seconds)
    a, b = (
        Breaker("llm-eu-1", settings, board=BreakerBoard(path, names).slot("llm-eu-1"))
        for _ in range(2)
    )
    a.probe_seconds = b.probe_seconds = 1.0
    return a, b


def _b_probes_after_a_s_claim_ran_out(tmp_path: Path) -> tuple[Breaker, Breaker, float, int, int]:
    """Workers A and B; A took the half-open probe at 5 s (a 1 s claim) and is still
    committing its intent at 6.5 s when B takes the probe: (a, b, start, A's, B's)."""
    a, b = _two_workers(tmp_path)
    now = time.monotonic()
    a.record_failure(now, probe=a.admit(now))
    probe = a.admit(now + 5)
    assert probe
    b_probe = b.admit(now + 6.5)  # A's claim ran out at 6
    assert b_probe
    return a, b, now, probe, b_probe


def test_a_probe_renewed_after_a_slow_intent_commit_keeps_its_window(tmp_path: Path) -> None:
    """Worker A takes the probe, then its intent commit takes 0.9 of the probe's 1 s:
    renewing restarts the window, so worker B still may not probe 0.5 s later."""
    a, b = _two_workers(tmp_path)
    now = time.monotonic()
    a.record_failure(now, probe=a.admit(now))
    probe = a.admit(now + 5)
    assert probe
    assert a.renew(probe, now + 5.9)
    assert b.admit(now + 6.4) is None, "A's probe is still the one out"
    a.record_success(probe)
    assert a.state == "closed"


def test_a_probe_whose_claim_ran_out_during_the_commit_is_not_sent(tmp_path: Path) -> None:
    """The commit outlasted the claim and worker B took the probe meanwhile: A must not
    send a second one; B's stays the one out."""
    a, b, now, probe, b_probe = _b_probes_after_a_s_claim_ran_out(tmp_path)
    assert not a.renew(probe, now + 6.6)
    assert not a.probe_in_flight and a.state == "half_open"
    assert a.admit(now + 6.7) is None, "B's probe is out"
    b.record_success(b_probe)
    assert a.available(now + 6.8) and a.state == "closed"


def test_a_probe_overtaken_by_a_closing_elsewhere_may_still_go(tmp_path: Path) -> None:
    """B's probe closed the breaker while A committed its intent: A's call goes as an
    ordinary call of a closed breaker."""
    a, b = _two_workers(tmp_path)
    now = time.monotonic()
    a.record_failure(now, probe=a.admit(now))
    probe = a.admit(now + 5)
    assert probe
    b_probe = b.admit(now + 6.5)
    b.record_success(b_probe)
    assert a.renew(probe, now + 6.6)
    assert a.state == "closed"


async def test_the_client_skips_a_probe_taken_over_while_its_intent_was_committed(
    gated: Gated, tmp_path: Path
) -> None:
    """End to end: the intent's commit (the `before_call` hook) is slow; meanwhile the
    probe's claim runs out and another worker claims the probe. No request goes out, the
    record says why, and the other worker's probe is untouched."""
    client, plan, breaker = gated_client(gated)
    names = ["e1"]
    path = tmp_path / "breakers.bin"
    BreakerBoard.create(path, names).close()
    breaker.board = BreakerBoard(path, names).slot("e1")
    other = Breaker("e1", breaker.settings, board=BreakerBoard(path, names).slot("e1"))
    breaker.probe_seconds = 0.05
    committed: list[str] = []

    async def slow_commit(name: str, endpoint: Any) -> None:
        await asyncio.sleep(0.1)  # past the 0.05 s claim
        assert other.admit() is not None  # the other worker's probe
        committed.append(name)

    try:
        breaker.record_failure(probe=breaker.admit())
        breaker.probe_now()
        result = await client.complete(client.router.route(plan), BODY, "late", slow_commit)
        assert committed == ["e1"]
        assert not result.ok and result.attempts == []
        assert result.skipped[-1]["reason"] == "breaker_open"
        assert "its one probe call is out" in result.skipped[-1]["detail"]
        assert "late" not in gated.seen
        assert other.probe_in_flight and not breaker.probe_in_flight
    finally:
        await client.aclose()


def test_a_probe_overtaken_by_a_fresh_opening_elsewhere_is_not_sent(tmp_path: Path) -> None:
    """A's commit outlasts its claim; B probes, fails and opens the breaker again. A must
    not send its stale probe during B's fresh cool-down, nor right after: it adopts it."""
    a, b, now, probe, b_probe = _b_probes_after_a_s_claim_ran_out(tmp_path)
    b.record_failure(now + 6.6, probe=b_probe)  # a fresh opening, cool-down until 11.6
    assert not a.renew(probe, now + 6.7)
    assert a.state == "open" and not a.probe_in_flight
    assert a.admit(now + 7) is None, "B's fresh cool-down holds for A too"
    assert a.admit(now + 11.7), "after it, the next probe may go"
