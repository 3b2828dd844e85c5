"""`endpoints/http1.py` over real sockets: a scripted asyncio HTTP server on 127.0.0.1
(plain and TLS with a self-signed certificate made here), checking what the chat client
relies on — keep-alive reuse, Content-Length / chunked / close-delimited bodies,
`Connection: close`, timeouts, the pool bound, error classes, and the stale-connection
rule (re-send only what provably never left)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gzip
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from warden.endpoints.http1 import (
    ConnectError,
    Http1Pool,
    Origin,
    TransportError,
    build_request,
)


@dataclass
class Seen:
    """One request the server read: its connection number, request line, headers, body."""

    conn: int
    index_on_conn: int
    line: bytes
    headers: dict[str, str]
    body: bytes


#: (request, server) -> bytes to send back, or None to close without answering
Script = Callable[[Seen, "Server"], bytes | None]


def reply(
    body: bytes = b'{"ok":true}', status: int = 200, extra: bytes = b"", length: bool = True
) -> bytes:
    head = b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n" % status + extra
    if length:
        head += b"Content-Length: %d\r\n" % len(body)
    return head + b"\r\n" + body


@dataclass
class Server:
    script: Script
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    open_now: int = 0
    max_open: int = 0
    close_after_reply: bool = False
    delay: float = 0.0
    port: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self.open_now += 1
        self.max_open = max(self.max_open, self.open_now)
        self.writers.append(writer)
        try:
            index = 0
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                line, *rest = head[:-4].split(b"\r\n")
                headers = {}
                for raw in rest:
                    name, _, value = raw.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                index += 1
                seen = Seen(number, index, line, headers, body)
                self.seen.append(seen)
                if self.delay:
                    await asyncio.sleep(self.delay)
                out = self.script(seen, self)
                if out is None:
                    return
                writer.write(out)
                await writer.drain()
                if self.close_after_reply:
                    return
        finally:
            self.open_now -= 1
            writer.close()

    def drop_all(self) -> None:
        """Close every connection from the server side (an idle timeout)."""
        for writer in self.writers:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., asyncio.Future[Server]]]:
    servers: list[asyncio.AbstractServer] = []

    async def start(script: Script, ssl_ctx: ssl.SSLContext | None = None, **opts: object) -> Server:
        state = Server(script, **opts)  # type: ignore[arg-type]
        server = await asyncio.start_server(state.handle, "127.0.0.1", 0, ssl=ssl_ctx)
        state.port = server.sockets[0].getsockname()[1]
        servers.append(server)
        return state

    yield start  # type: ignore[misc]
    for server in servers:
        server.close()


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
        return head + b"5\r\n{\"a\":\r\n3\r\n 1}\r\n0\r\n\r\n"

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


class ThreadServer:
    """A blocking HTTP server in a thread (not on the test's loop), so that it can close
    a connection while the client's loop is not running: the FIN then waits, unread, in
    the client's socket — the case the pool's peek before reuse is for."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.requests = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with contextlib.suppress(OSError):
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                buffer = buffer[length:]
                self.requests += 1
                conn.sendall(reply(b'{"n":%d}' % self.requests))

    def drop_idle(self) -> None:
        for conn in self.conns:
            conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self.conns.clear()

    def close(self) -> None:
        self.listener.close()
        self.drop_idle()


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
            try:
                filler.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
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


# ---- TLS -------------------------------------------------------------------------------


def self_signed(tmp: Path, names: list[str]) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def tls_pair(tmp: Path, names: list[str]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting only that certificate)."""
    cert, key = self_signed(tmp, names)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client


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
