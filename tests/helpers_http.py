"""Real HTTP servers on 127.0.0.1 for the client tests: a scripted asyncio server (plain
or TLS) that records every request and answers as a test says, a blocking one in a thread,
and a self-signed certificate made on the spot (no files shipped, nothing fetched).

    from tests.helpers_http import reply, serve  # noqa: F401  (fixture)

    async def test_x(serve):  # noqa: F811
        server = await serve(lambda seen, server: reply(b"{}"))
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


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

    async def start(
        script: Script, ssl_ctx: ssl.SSLContext | None = None, **opts: object
    ) -> Server:
        state = Server(script, **opts)  # type: ignore[arg-type]
        server = await asyncio.start_server(state.handle, "127.0.0.1", 0, ssl=ssl_ctx)
        state.port = server.sockets[0].getsockname()[1]
        servers.append(server)
        return state

    yield start  # type: ignore[misc]
    for server in servers:
        server.close()


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
