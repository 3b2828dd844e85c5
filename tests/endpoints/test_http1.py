"""`endpoints/http1.py` over real sockets: a scripted asyncio HTTP server on 127.0.0.1
(plain and TLS with a self-signed certificate made here), checking what the chat client
relies on — keep-alive reuse, Content-Length / chunked / close-delimited bodies,
`Connection: close`, timeouts, the pool bound, error classes, and the stale-connection
rule (re-send only what provably never left)."""

# ruff: noqa: F811  (the `serve` fixture is imported, then named as a parameter)
from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import struct
import time

import pytest

from tests.helpers_http import Seen, Server, ThreadServer, reply, serve, tls_pair  # noqa: F401
from warden.endpoints.http1 import (
    ConnectError,
    Http1Pool,
    Origin,
    TransportError,
    build_request,
)


def ok(seen: Seen, server: Server) -> bytes:
    return reply(b'{"n":%d}' % len(server.seen))


async def get(pool: Http1Pool, port: int, path: str = "/x", **kw: float) -> tuple[int, bytes]:
    response = await pool.request(
        "POST",
        Origin.parse(f"http://127.0.0.1:{port}/v1"),
        path,
        {"X-Warden-Decision-Id": "dec-1", "Content-Type": "application/json"},
        b'{"a":1}',
        timeout=kw.get("timeout", 5.0),
        connect_timeout=kw.get("connect_timeout", 2.0),
    )
    return response.status, response.body


async def test_keep_alive_reuses_one_connection_and_sends_the_request_as_given(serve) -> None:
    server = await serve(ok)
    pool = Http1Pool()
    for n in range(1, 4):
        assert await get(pool, server.port) == (200, b'{"n":%d}' % n)
    assert server.connections == 1 and pool.connects == 1
    first = server.seen[0]
    assert first.line == b"POST /v1/x HTTP/1.1"
    assert first.headers["host"] == f"127.0.0.1:{server.port}"
    assert first.headers["x-warden-decision-id"] == "dec-1"
    assert first.headers["content-length"] == "7" and first.body == b'{"a":1}'
    assert first.headers["accept-encoding"] == "identity"
    await pool.aclose()


async def test_chunked_body_is_reassembled_exactly(serve) -> None:
    def chunked(seen: Seen, server: Server) -> bytes:
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        return head + b'5\r\n{"a":\r\n3\r\n 1}\r\n0\r\n\r\n'

    server = await serve(chunked)
    pool = Http1Pool()
    assert await get(pool, server.port) == (200, b'{"a": 1}')
    assert await get(pool, server.port) == (200, b'{"a": 1}')
    assert server.connections == 1  # chunked answers keep the connection
    await pool.aclose()


async def test_a_close_delimited_body_ends_at_eof_and_the_connection_is_not_reused(serve) -> None:
    server = await serve(
        lambda seen, s: b"HTTP/1.0 200 OK\r\n\r\nall of it until EOF", close_after_reply=True
    )
    pool = Http1Pool()
    assert await get(pool, server.port) == (200, b"all of it until EOF")
    assert await get(pool, server.port) == (200, b"all of it until EOF")
    assert server.connections == 2 and pool.stale_discarded == 0
    await pool.aclose()


async def test_connection_close_answers_are_not_reused(serve) -> None:
    server = await serve(lambda seen, s: reply(extra=b"Connection: close\r\n"))
    pool = Http1Pool()
    for _ in range(3):
        assert (await get(pool, server.port))[0] == 200
    assert server.connections == 3
    await pool.aclose()


async def test_status_and_error_bodies_come_back_as_they_are(serve) -> None:
    server = await serve(lambda seen, s: reply(b"upstream busy\xff", status=503))
    pool = Http1Pool()
    assert await get(pool, server.port) == (503, b"upstream busy\xff")
    await pool.aclose()


async def test_a_gzip_body_from_a_server_that_ignores_identity_is_decoded(serve) -> None:
    packed = gzip.compress(b'{"choices":[]}')
    server = await serve(lambda seen, s: reply(packed, extra=b"Content-Encoding: gzip\r\n"))
    pool = Http1Pool()
    assert await get(pool, server.port) == (200, b'{"choices":[]}')
    await pool.aclose()


async def test_an_idle_connection_the_server_closed_is_replaced_without_a_resend() -> None:
    server = ThreadServer()
    pool = Http1Pool()
    try:
        assert await get(pool, server.port) == (200, b'{"n":1}')
        server.drop_idle()  # the server's idle timeout, while our loop is not reading
        time.sleep(0.1)  # let the FIN arrive (no loop pass: only the peek can see it)
        assert await get(pool, server.port) == (200, b'{"n":2}')
        assert pool.stale_discarded == 1 and pool.connects == 2
        assert server.requests == 2  # nothing sent twice
    finally:
        await pool.aclose()
        server.close()


async def test_an_idle_connection_closed_while_the_loop_runs_leaves_the_pool(serve) -> None:
    server = await serve(ok)
    pool = Http1Pool()
    assert (await get(pool, server.port))[0] == 200
    server.drop_all()
    await asyncio.sleep(0.1)  # the loop sees the EOF: connection_lost takes it out
    assert pool._open == 0 and not any(pool._idle.values())
    assert await get(pool, server.port) == (200, b'{"n":2}')
    assert len(server.seen) == 2
    await pool.aclose()


async def test_a_pooled_connection_closed_after_the_request_is_stale_and_not_resent(
    serve,
) -> None:
    # the second request on a connection is read, then the server closes without a byte
    server = await serve(lambda seen, s: None if seen.index_on_conn == 2 else ok(seen, s))
    pool = Http1Pool()
    assert (await get(pool, server.port))[0] == 200
    with pytest.raises(TransportError) as caught:
        await get(pool, server.port)
    assert caught.value.stale and caught.value.reused and not caught.value.received
    assert len(server.seen) == 2  # the upstream got it once; this module did not re-send
    assert (await get(pool, server.port))[0] == 200  # the next call goes fresh
    await pool.aclose()


async def test_a_fresh_connection_closed_mid_answer_is_a_transport_error_not_stale(
    serve,
) -> None:
    server = await serve(
        lambda seen, s: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial",
        close_after_reply=True,
    )
    pool = Http1Pool()
    with pytest.raises(TransportError) as caught:
        await get(pool, server.port)
    assert caught.value.received and not caught.value.stale
    await pool.aclose()


async def test_a_malformed_answer_is_a_transport_error(serve) -> None:
    server = await serve(lambda seen, s: b"SMTP ready\r\n\r\n")
    pool = Http1Pool()
    with pytest.raises(TransportError):
        await get(pool, server.port)
    await pool.aclose()


async def test_the_total_timeout_covers_a_silent_server_and_drops_the_connection(serve) -> None:
    server = await serve(ok, delay=3.0)
    pool = Http1Pool()
    with pytest.raises(TimeoutError, match="total timeout"):
        await get(pool, server.port, timeout=0.2)
    await asyncio.sleep(0)
    assert pool._open == 0  # not returned to the pool with an answer still to come
    await pool.aclose()


async def test_a_refused_connection_is_a_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: refused
        pool = Http1Pool()
        with pytest.raises(ConnectError):
            await get(pool, port)
        assert pool._open == 0
        await pool.aclose()


async def test_a_connect_that_hangs_hits_the_connect_timeout() -> None:
    # a listener that never accepts, its backlog filled: the next SYN goes unanswered
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        pool = Http1Pool()
        try:
            with pytest.raises(TimeoutError, match="connect timeout"):
                await get(pool, port, connect_timeout=0.3, timeout=30)
        finally:
            for filler in fillers:
                filler.close()
            await pool.aclose()


async def test_the_pool_never_opens_more_than_its_limit(serve) -> None:
    server = await serve(ok, delay=0.05)
    pool = Http1Pool(limit=2)
    results = await asyncio.gather(*(get(pool, server.port) for _ in range(8)))
    assert all(status == 200 for status, _ in results)
    assert server.max_open <= 2 and pool.connects <= 2
    await pool.aclose()


async def test_a_header_value_with_a_line_break_is_refused() -> None:
    origin = Origin.parse("http://127.0.0.1:9/v1")
    with pytest.raises(ValueError):
        build_request("POST", origin, "/x", {"X-Warden-Decision-Id": "a\r\nEvil: 1"}, b"")


def test_origins_are_parsed_once_with_their_defaults() -> None:
    assert Origin.parse("https://api.example.com/openai/v1/").host_header == b"api.example.com"
    tls = Origin.parse("https://api.example.com/openai/v1/")
    assert (tls.tls, tls.port, tls.prefix) == (True, 443, "/openai/v1")
    v6 = Origin.parse("http://[::1]:8100/v1")
    assert (v6.host, v6.port, v6.host_header) == ("::1", 8100, b"[::1]:8100")
    with pytest.raises(ValueError):
        Origin.parse("ftp://example.com/")
    azure = Origin.parse("https://r.openai.azure.com/openai/deployments/d?api-version=2024-06-01")
    assert azure.target("/chat/completions") == (
        "/openai/deployments/d/chat/completions?api-version=2024-06-01"
    )
    assert Origin.parse("http://10.0.0.1:8000").target("") == "/"


# ---- TLS -------------------------------------------------------------------------------


async def tls_get(pool: Http1Pool, port: int) -> tuple[int, bytes]:
    response = await pool.request(
        "POST",
        Origin.parse(f"https://127.0.0.1:{port}/v1"),
        "/chat/completions",
        {"Content-Type": "application/json"},
        b"{}",
        timeout=5.0,
        connect_timeout=2.0,
    )
    return response.status, response.body


async def test_https_with_a_trusted_certificate_works_and_keeps_alive(serve, tmp_path) -> None:
    server_ctx, client_ctx = tls_pair(tmp_path, ["127.0.0.1", "localhost"])
    server = await serve(ok, ssl_ctx=server_ctx)
    pool = Http1Pool(ssl_context=client_ctx)
    for n in range(1, 4):
        assert await tls_get(pool, server.port) == (200, b'{"n":%d}' % n)
    assert server.connections == 1
    await pool.aclose()


async def test_https_refuses_an_untrusted_certificate(serve, tmp_path) -> None:
    server_ctx, _ = tls_pair(tmp_path, ["127.0.0.1"])
    server = await serve(ok, ssl_ctx=server_ctx)
    pool = Http1Pool()  # the system's CAs: a self-signed certificate is not among them
    with pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        await tls_get(pool, server.port)
    assert server.seen == []
    await pool.aclose()


async def test_https_refuses_a_certificate_for_another_host(serve, tmp_path) -> None:
    server_ctx, client_ctx = tls_pair(tmp_path, ["api.other.example"])
    server = await serve(ok, ssl_ctx=server_ctx)
    pool = Http1Pool(ssl_context=client_ctx)
    with pytest.raises(ConnectError):
        await tls_get(pool, server.port)
    assert server.seen == []
    await pool.aclose()


def test_on_uvloop_as_warden_serve_runs(tmp_path) -> None:
    """The same pool on uvloop (its socket objects differ): the peek and TLS both work."""
    import uvloop

    async def scenario() -> None:
        threaded = ThreadServer()
        pool = Http1Pool()
        try:
            assert await get(pool, threaded.port) == (200, b'{"n":1}')
            threaded.drop_idle()
            time.sleep(0.1)
            assert await get(pool, threaded.port) == (200, b'{"n":2}')
            assert pool.stale_discarded == 1
        finally:
            await pool.aclose()
            threaded.close()
        server_ctx, client_ctx = tls_pair(tmp_path, ["127.0.0.1"])
        state = Server(lambda seen, server: reply(b'{"tls":1}'))
        tls_server = await asyncio.start_server(state.handle, "127.0.0.1", 0, ssl=server_ctx)
        state.port = tls_server.sockets[0].getsockname()[1]
        tls_pool = Http1Pool(ssl_context=client_ctx)
        try:
            for _ in range(3):
                assert await tls_get(tls_pool, state.port) == (200, b'{"tls":1}')
            assert state.connections == 1
        finally:
            await tls_pool.aclose()
            tls_server.close()

    uvloop.run(scenario())


async def test_waiting_for_a_place_in_a_full_pool_counts_against_the_total_timeout(serve) -> None:
    server = await serve(ok, delay=1.0)
    pool = Http1Pool(limit=1)
    slow = asyncio.ensure_future(get(pool, server.port, timeout=5.0))
    await asyncio.sleep(0.05)
    with pytest.raises(TimeoutError):
        await get(pool, server.port, timeout=0.2)  # never got the one connection
    assert (await slow)[0] == 200
    assert server.connections == 1
    await pool.aclose()


# ---- a peer that says more than it was asked, or less -------------------------------


async def test_a_second_response_in_the_same_segment_never_answers_the_next_request(
    serve,
) -> None:
    # the first answer comes with the start of another, unasked-for response behind it
    def script(seen: Seen, server: Server) -> bytes:
        if len(server.seen) == 1:
            return reply(b'{"n":1}') + b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"
        return reply(b'{"n":%d}' % len(server.seen))

    server = await serve(script)
    pool = Http1Pool()
    assert await get(pool, server.port) == (200, b'{"n":1}')
    # not the rest of that stray response: this request's own answer, on a fresh connection
    assert await get(pool, server.port) == (200, b'{"n":2}')
    assert server.connections == 2
    await pool.aclose()


async def test_a_compressed_body_is_held_to_the_size_limit_once_decoded(
    serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    from warden.endpoints import http1

    monkeypatch.setattr(http1, "MAX_RESPONSE_BYTES", 4096)
    packed = gzip.compress(b"0" * 100_000)  # a few hundred bytes on the wire
    assert len(packed) < 4096
    server = await serve(lambda seen, s: reply(packed, extra=b"Content-Encoding: gzip\r\n"))
    pool = Http1Pool()
    with pytest.raises(TransportError, match="too large"):
        await get(pool, server.port)
    await pool.aclose()


async def test_a_reset_connection_does_not_end_a_close_delimited_body() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(7)
        writer.write(b'HTTP/1.0 200 OK\r\n\r\n{"choices": [')  # close-delimited, cut short
        await writer.drain()
        await asyncio.sleep(0.2)  # the client reads that much first
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # an RST, not a FIN: the body did not end here

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    pool = Http1Pool()
    try:
        with pytest.raises(TransportError) as caught:
            await get(pool, listener.sockets[0].getsockname()[1])
        assert caught.value.received
    finally:
        await pool.aclose()
        listener.close()


async def test_a_plain_body_over_the_limit_says_so(serve, monkeypatch: pytest.MonkeyPatch) -> None:
    """The recorded detail names the reason, not httptools' "`on_body` callback error"."""
    from warden.endpoints import http1

    monkeypatch.setattr(http1, "MAX_RESPONSE_BYTES", 4096)
    server = await serve(lambda seen, s: reply(b"0" * 10_000))
    pool = Http1Pool()
    with pytest.raises(TransportError, match="bad HTTP response: response body too large"):
        await get(pool, server.port)
    await pool.aclose()


class _CancelOnWake(Http1Pool):
    """Cancels `victim` in the same callback that wakes the first waiter: the wake-up
    is given, then its task is cancelled before it can run (a client disconnecting)."""

    victim: asyncio.Task[tuple[int, bytes]] | None = None

    def _wake(self) -> None:
        super()._wake()
        if self.victim is not None:
            self.victim.cancel()
            self.victim = None


async def test_a_waiter_cancelled_after_its_wake_up_passes_it_on(serve) -> None:
    """Two requests wait for the one place; the first is woken and cancelled before it
    runs. It must stop (not swallow the cancel), and the wake-up it took must reach the
    second, which would otherwise wait for a place that is already free."""
    server = await serve(ok, delay=0.2)
    pool = _CancelOnWake(limit=1)
    holder = asyncio.ensure_future(get(pool, server.port, timeout=5.0))
    await asyncio.sleep(0.05)
    first = asyncio.ensure_future(get(pool, server.port, timeout=5.0))
    second = asyncio.ensure_future(get(pool, server.port, timeout=3.0))
    await asyncio.sleep(0.05)
    assert len(pool._waiters) == 2
    pool.victim = first
    assert (await holder)[0] == 200
    with pytest.raises(asyncio.CancelledError):
        await first
    started = time.monotonic()
    assert (await second)[0] == 200
    assert time.monotonic() - started < 2.0  # served, not timed out at 3 s
    assert pool.connects == 1  # on the connection the holder gave back
    await pool.aclose()
