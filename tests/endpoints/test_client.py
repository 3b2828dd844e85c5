"""`ChatClient` on `endpoints/http1.py`, over real sockets (the scripted servers of
test_http1, plain and TLS): what reaches the upstream (decision id, Authorization from
`api_key_env`), what comes back (status, the raw body exactly), how each failure is
classified and recorded, and that a stale pooled connection is an ordinary recorded
attempt that the breaker does not count."""

# ruff: noqa: F811  (fixtures are imported, then named as parameters)
from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from tests.helpers_http import Seen, Server, reply, serve, tls_pair  # noqa: F401  (fixture)
from tests.helpers_upstream import upstreams  # noqa: F401  (fixture)
from warden.endpoints.client import ChatClient
from warden.endpoints.router import Router
from warden.policy.model import BreakerSettings, Endpoint
from warden.policy.residency import RoutePlan, RouteTable

RAW = (
    '{"id":"x", "object":"chat.completion","model":"sim-9","choices":[{"index":0,'
    '"message":{"role":"assistant","content":"ça va — ok"}}],"usage":{"total_tokens":7}}'
)
BODY = {"messages": [{"role": "user", "content": "hello"}]}


def client_for(
    base_url: str, *, retries: int = 0, threshold: int = 3, **opts: Any
) -> tuple[ChatClient, RoutePlan]:
    endpoint = Endpoint(
        kind="openai_chat",
        base_url=base_url,
        model="m-1",
        region="eu-west-1",
        zone="EU",
        data_classes=["personal"],
        transfer_basis="self_hosted",
        retries=retries,
        breaker=BreakerSettings(failure_threshold=threshold, open_seconds=30),
        **opts,
    )
    table = RouteTable("v-test", {}, {"e1": endpoint})
    plan = RoutePlan("EU", "personal", "t", ("e1",), (), ("EU",), "review", "residency.EU")
    return ChatClient(Router(table)), plan


async def call(client: ChatClient, plan: RoutePlan) -> Any:
    try:
        return await client.complete(client.router.route(plan), BODY, "dec-42")
    finally:
        await client.aclose()


def answer(raw: str = RAW, status: int = 200) -> Any:
    return lambda seen, server: reply(raw.encode(), status=status)


async def test_https_call_sends_ids_and_key_and_keeps_the_raw_body(
    serve,
    tmp_path,
    monkeypatch,
) -> None:
    server_ctx, client_ctx = tls_pair(tmp_path, ["127.0.0.1"])
    server = await serve(answer(), ssl_ctx=server_ctx)
    monkeypatch.setenv("WARDEN_TEST_UPSTREAM_KEY", "sk-test-123")
    client, plan = client_for(
        f"https://127.0.0.1:{server.port}/openai/v1", api_key_env="WARDEN_TEST_UPSTREAM_KEY"
    )
    client.ssl_context = client_ctx
    result = await call(client, plan)
    assert result.ok and result.status == 200 and result.raw == RAW
    assert result.model == "sim-9" and result.content() == "ça va — ok"
    assert result.usage == {"total_tokens": 7}
    seen = server.seen[0]
    assert seen.line == b"POST /openai/v1/chat/completions HTTP/1.1"
    assert seen.headers["x-warden-decision-id"] == "dec-42"
    assert seen.headers["authorization"] == "Bearer sk-test-123"
    assert json.loads(seen.body) == {**BODY, "model": "m-1"}
    assert [a["error"] for a in result.attempts] == [None]


async def test_a_stale_pooled_connection_is_a_recorded_attempt_the_breaker_ignores(
    serve,
) -> None:
    # every second request on a connection is read and then dropped without an answer
    def script(seen: Seen, server: Server) -> bytes | None:
        return None if seen.index_on_conn == 2 else reply(RAW.encode())

    server = await serve(script)
    client, plan = client_for(f"http://127.0.0.1:{server.port}/v1", retries=0, threshold=1)
    first = await client.complete(client.router.route(plan), BODY, "dec-1")
    second = await client.complete(client.router.route(plan), BODY, "dec-2")
    assert first.ok and not second.ok
    (attempt,) = second.attempts
    assert attempt["error"] == "transport_error" and attempt["counts_for_breaker"] is False
    assert client.router.breakers["e1"].state == "closed"  # threshold 1, yet not opened
    assert len(server.seen) == 2  # sent once: no silent re-send
    third = await client.complete(client.router.route(plan), BODY, "dec-3")
    assert third.ok  # a fresh connection
    await client.aclose()


async def test_a_stale_connection_is_retried_by_the_endpoints_own_retry_rule(
    serve,
) -> None:
    def script(seen: Seen, server: Server) -> bytes | None:
        return None if seen.index_on_conn == 2 else reply(RAW.encode())

    server = await serve(script)
    client, plan = client_for(f"http://127.0.0.1:{server.port}/v1", retries=1)
    assert (await client.complete(client.router.route(plan), BODY, "dec-1")).ok
    result = await call(client, plan)
    assert result.ok
    assert [a["error"] for a in result.attempts] == ["transport_error", None]
    # the retry is the recorded second attempt (sent again: the endpoint allows a retry)
    assert [s.headers["x-warden-decision-id"] for s in server.seen] == ["dec-1", "dec-42"] * 1 + [
        "dec-42"
    ]


@pytest.mark.parametrize(
    ("status", "retryable"), [(503, True), (429, True), (400, False), (401, False)]
)
async def test_http_errors_are_classified_with_their_status(
    serve,
    status: int,
    retryable: bool,
) -> None:
    server = await serve(answer('{"error":"no"}', status=status))
    client, plan = client_for(f"http://127.0.0.1:{server.port}/v1")
    result = await call(client, plan)
    (attempt,) = result.attempts
    assert not result.ok and attempt["error"] == f"http_{status}"
    assert attempt["status"] == status and attempt["retryable"] is retryable


async def test_a_body_that_is_not_a_chat_completion_is_a_bad_response(serve) -> None:
    server = await serve(answer('{"choices": "nope"'))
    client, plan = client_for(f"http://127.0.0.1:{server.port}/v1")
    (attempt,) = (await call(client, plan)).attempts
    assert attempt["error"] == "bad_response" and attempt["status"] == 200


async def test_refused_is_connect_error_and_silence_is_timeout(serve) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        client, plan = client_for(f"http://127.0.0.1:{sock.getsockname()[1]}/v1")
        (attempt,) = (await call(client, plan)).attempts
        assert attempt["error"] == "connect_error" and attempt["counts_for_breaker"] is True
    server = await serve(answer(), delay=2.0)
    client, plan = client_for(f"http://127.0.0.1:{server.port}/v1", timeout_ms=150)
    (attempt,) = (await call(client, plan)).attempts
    assert attempt["error"] == "timeout" and attempt["detail"] == "total timeout"


async def test_a_broken_answer_is_a_transport_error_that_counts(serve) -> None:
    server = await serve(
        lambda seen, s: b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{", close_after_reply=True
    )
    client, plan = client_for(f"http://127.0.0.1:{server.port}/v1")
    (attempt,) = (await call(client, plan)).attempts
    assert attempt["error"] == "transport_error" and attempt["counts_for_breaker"] is True


async def test_against_the_simulator_one_kept_alive_connection_carries_every_call(
    upstreams,
) -> None:
    up = upstreams("eu-west-1")
    client, plan = client_for(up.url)
    try:
        results = [
            await client.complete(client.router.route(plan), BODY, f"dec-{i}") for i in range(20)
        ]
        assert all(r.ok and r.status == 200 and r.raw for r in results)
        assert all(json.loads(r.raw) == r.body for r in results)
        assert client.pool().connects == 1
    finally:
        await client.aclose()
    logged = [e["decision_id"] for e in up.access_log_entries()]
    assert logged == [f"dec-{i}" for i in range(20)]


async def test_health_checks_use_the_same_pool(serve) -> None:
    from warden.endpoints.health import Health, check

    up = await serve(lambda seen, s: reply(b'{"data":[]}'))
    down = await serve(lambda seen, s: reply(b"no", status=503))
    client, _ = client_for(f"http://127.0.0.1:{up.port}/v1")
    endpoint = client.router.endpoints["e1"]
    health = Health()
    assert await check(client.pool(), endpoint, health) and health.healthy
    assert up.seen[0].line == b"GET /v1/models HTTP/1.1"
    sick = endpoint.model_copy(update={"base_url": f"http://127.0.0.1:{down.port}/v1"})
    assert not await check(client.pool(), sick, health) and health.error == "http_503"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        gone = endpoint.model_copy(update={"base_url": f"http://127.0.0.1:{sock.getsockname()[1]}"})
        assert not await check(client.pool(), gone, health)
        assert health.error == "ConnectError"
    await client.aclose()


async def test_one_timed_out_health_check_is_inconclusive_two_in_a_row_fail(serve) -> None:
    """A loaded machine can make one GET slow; only a second timeout in a row makes the
    endpoint unhealthy. A refused connection fails at once, and a pass resets the count."""
    from warden.endpoints.health import Health, check

    fast = await serve(lambda seen, s: reply(b'{"data":[]}'))
    slow = await serve(lambda seen, s: reply(b'{"data":[]}'), delay=1.5)
    client, _ = client_for(f"http://127.0.0.1:{fast.port}/v1", connect_timeout_ms=10)
    endpoint = client.router.endpoints["e1"]
    sluggish = endpoint.model_copy(update={"base_url": f"http://127.0.0.1:{slow.port}/v1"})
    health = Health()
    try:
        assert await check(client.pool(), endpoint, health) is True
        assert await check(client.pool(), sluggish, health) is None  # forgiven
        assert health.healthy is True and not health.unhealthy(health.checked_at, 60)
        assert health.timeouts_in_a_row == 1 and health.forgiven_timeouts == 1
        assert health.error is not None and health.error.startswith("TimeoutError (1 in a row")
        assert await check(client.pool(), sluggish, health) is False  # the second in a row
        assert health.unhealthy(health.checked_at, 60)
        assert health.error == "TimeoutError (2 in a row)"
        assert await check(client.pool(), sluggish, health) is False  # still down: no grace
        assert await check(client.pool(), endpoint, health) is True
        assert health.healthy is True and health.timeouts_in_a_row == 0 and health.error is None
        assert await check(client.pool(), sluggish, health) is None  # a pass reset the count
        fresh = Health()  # never seen alive: a timeout fails at once
        assert await check(client.pool(), sluggish, fresh) is False
        with socket.socket() as sock:  # a refused connection is no timeout: unhealthy at once
            sock.bind(("127.0.0.1", 0))
            gone = endpoint.model_copy(
                update={"base_url": f"http://127.0.0.1:{sock.getsockname()[1]}"}
            )
            assert await check(client.pool(), gone, health) is False
            assert health.error == "ConnectError" and health.timeouts_in_a_row == 0
        assert health.checks == 7 and health.failed_checks == 5 and fresh.checks == 1
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (RAW.replace('"total_tokens":7', '"total_tokens":NaN'), "response.usage.total_tokens"),
        (RAW.replace('"total_tokens":7', '"total_tokens":' + "9" * 30), "usage.total_tokens"),
        (RAW.replace("ça va", "\\udc80"), "response.choices[0].message.content"),
    ],
)
async def test_an_answer_the_record_could_not_keep_is_a_bad_response(
    serve, raw: str, where: str
) -> None:
    """NaN, a 30-digit integer or a lone surrogate in an upstream's answer would fail the
    audit commit later; it is a recorded bad response now, naming the field."""
    server = await serve(answer(raw))
    client, plan = client_for(f"http://127.0.0.1:{server.port}/v1")
    result = await call(client, plan)
    (attempt,) = result.attempts
    assert not result.ok and attempt["error"] == "bad_response", attempt
    assert where in attempt["detail"], attempt
    json.dumps(attempt)  # the attempt itself is recordable


async def test_numbers_the_record_does_not_keep_may_be_anything(serve) -> None:
    """Only the raw text holds the rest of an answer, so a vendor's `-Infinity` logprob or
    30-digit field is no reason to fail the call (or to count it against the endpoint)."""
    raw = RAW.replace('"usage":', '"logprob":-Infinity,"vendor_id":' + "9" * 30 + ',"usage":')
    server = await serve(answer(raw))
    client, plan = client_for(f"http://127.0.0.1:{server.port}/v1")
    result = await call(client, plan)
    assert result.ok and result.raw == raw and result.content() == "ça va — ok"
