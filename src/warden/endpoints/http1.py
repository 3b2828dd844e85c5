"""A small HTTP/1.1 client on asyncio Protocols, with `httptools` (uvicorn's parser) for
responses: what the chat client needs of an upstream call and nothing else.

Why not aiohttp: measured against the simulator, one aiohttp call costs ≈ 2.3–3× the
client CPU of this one (bench/bench_upstream_client.py; bench/README.md, "The upstream
call"): its URL, cookie, trace, header-multidict and stream-reader layers run on every
request even when unused. Here an origin is parsed once, the request is one bytes write, and the
response is parsed by httptools straight into a list of body chunks.

What it does: pooled keep-alive connections (bounded in total, shared by all origins of
one pool; LIFO reuse; idle ones older than `keepalive_s` are closed when met), plain TCP
or TLS (certificate and host name verified with the system's CAs, or a given context),
a connect timeout and a total timeout per request (pool wait + connect + send + the whole
response), Content-Length, chunked and close-delimited bodies, `Connection: close` and
HTTP/1.0 answers (the connection is not reused), gzip/deflate bodies (sent only by a
server that ignores our `Accept-Encoding: identity`).

Stale pooled connections and idempotency. A POST of a chat completion is not idempotent
(it costs tokens and the upstream may log or act on it), so this module re-sends a request
on its own only when it can prove the upstream never got it: a pooled connection is
checked just before it is used (closed by the peer, or anything unexpected waiting to be
read — a non-blocking MSG_PEEK on a duplicate of the socket's descriptor; over TLS only
the transport's state, since a late session ticket would look like unexpected data), and
if it is dead the request goes once on a fresh connection; no byte of it was written.
Once a request's bytes were written, any failure is the caller's to judge:
`TransportError` with `reused=True` and `received=False` says "a pooled connection closed
before any byte of the answer" — the usual sign of a server's idle timeout racing our
send, so the chat client does not count it against the endpoint's breaker, but it is an
ordinary recorded attempt, retried (or not) by the chat client's own per-endpoint retry
rule, never silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
import zlib
from collections import deque
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

#: a response body larger than this is refused (an upstream chat answer is kilobytes)
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
USER_AGENT = b"warden"
_PEEK = int(socket.MSG_PEEK | socket.MSG_DONTWAIT)


class HttpError(Exception):
    """Base of this module's failures (a timeout is the builtin `TimeoutError`)."""


class ConnectError(HttpError):
    """No connection: refused, unreachable, name not resolved, TLS handshake or
    certificate failure. Nothing was sent."""


class TransportError(HttpError):
    """The connection failed or the answer was not HTTP after the request was written."""

    def __init__(self, message: str, *, reused: bool, received: bool) -> None:
        super().__init__(message)
        #: the request went on a pooled connection (not a fresh one)
        self.reused = reused
        #: some byte of the answer had arrived
        self.received = received

    @property
    def stale(self) -> bool:
        """A pooled connection that closed before any byte of the answer."""
        return self.reused and not self.received


@dataclass(frozen=True, slots=True)
class Origin:
    """scheme://host:port, parsed once. `prefix` is the URL's path (no trailing slash), to
    which a request's path is appended; `query` (e.g. Azure OpenAI's `api-version=…`) goes
    after the whole path."""

    tls: bool
    host: str
    port: int
    prefix: str
    host_header: bytes
    query: str = ""

    def target(self, path: str) -> str:
        """The request target for `path` under this origin's prefix."""
        target = f"{self.prefix}{path}" or "/"
        return f"{target}?{self.query}" if self.query else target

    @classmethod
    def parse(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        host = parts.hostname
        shown = f"[{host}]" if ":" in host else host
        if port != (443 if tls else 80):
            shown = f"{shown}:{port}"
        prefix = parts.path.rstrip("/")
        return cls(tls, host, port, prefix, shown.encode("idna"), parts.query)

    @property
    def key(self) -> tuple[bool, str, int]:
        return (self.tls, self.host, self.port)


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    #: response headers, names lower-cased (only the last value of a repeated header)
    headers: dict[bytes, bytes]


def no_delay(transport: asyncio.BaseTransport) -> None:
    """TCP_NODELAY on a transport's socket (a request or answer is one write: no Nagle)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _check_header(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("a header value may not contain CR or LF")
    return value


def build_request(
    method: str, origin: Origin, path: str, headers: dict[str, str], body: bytes | None
) -> bytes:
    """The request's bytes: request line, Host, our fixed headers, `headers`, body."""
    lines = [
        f"{method} {origin.target(path)} HTTP/1.1".encode("latin-1"),
        b"Host: " + origin.host_header,
        b"User-Agent: " + USER_AGENT,
        b"Accept-Encoding: identity",
    ]
    for name, value in headers.items():
        lines.append(f"{_check_header(name)}: {_check_header(value)}".encode("latin-1"))
    if body is not None:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def _decompress(data: bytes, wbits: int) -> bytes:
    """`zlib.decompress`, but stopping a byte past `MAX_RESPONSE_BYTES` (a few kilobytes of
    gzip can decode to gigabytes)."""
    inflater = zlib.decompressobj(wbits)
    body = inflater.decompress(data, MAX_RESPONSE_BYTES + 1)
    if not inflater.eof and len(body) <= MAX_RESPONSE_BYTES:
        raise zlib.error("incomplete or truncated stream")
    return body


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; one request at a time (no pipelining)."""

    def __init__(self, pool: Http1Pool, key: tuple[bool, str, int]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.sock: socket.socket | None = None
        self.closed = False
        self.uses = 0
        #: holds a place in the pool's count of open connections
        self.counted = True
        self.idle_since = 0.0
        self.waiter: asyncio.Future[Response] | None = None
        self.parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self.received = False
        self.headers: dict[bytes, bytes] = {}
        self.headers_done = False
        self.body: list[bytes] = []
        self.size = 0
        self.complete = False
        self.keep_alive = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        no_delay(transport)

    def data_received(self, data: bytes) -> None:
        self.received = True
        if self.waiter is None or self.complete:
            self._fail(TransportError("data after the response", reused=True, received=True))
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            reused = self.uses > 1
            # a refusal raised in one of our callbacks (too large, a second response) is the
            # reason; httptools reports only "`on_body` callback error" with it as context
            reason = exc.__context__ if isinstance(exc.__context__, ValueError) else exc
            message = f"bad HTTP response: {reason}"
            self._fail(TransportError(message, reused=reused, received=True))

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._let_go()
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.headers_done and exc is None and self._close_delimited():  # a FIN, no reset
            self.complete = True
            self._finish()
            return
        detail = f": {exc}" if exc is not None else ""
        waiter.set_exception(
            TransportError(
                f"connection closed before the response was complete{detail}",
                reused=self.uses > 1,
                received=self.received,
            )
        )

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self.complete:  # bytes of another response behind this request's whole answer
            raise ValueError("a second response to one request")  # parser error → _fail

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > MAX_RESPONSE_BYTES:
            raise ValueError("response body too large")  # parser error → _fail
        self.body.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue, 103): wait for the real one
            self._reset()
            self.received = True
            return
        self.keep_alive = bool(self.parser.should_keep_alive())  # only valid here
        self.complete = True
        self._finish()

    # ours
    def _close_delimited(self) -> bool:
        return b"content-length" not in self.headers and b"transfer-encoding" not in self.headers

    def _finish(self) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        body = b"".join(self.body)
        coding = self.headers.get(b"content-encoding", b"identity").lower()
        if coding in (b"gzip", b"x-gzip", b"deflate"):
            try:
                body = _decompress(body, 47 if coding != b"deflate" else 15)
            except zlib.error:
                try:
                    body = _decompress(body, -15)  # raw deflate, as some servers send
                except zlib.error as exc:
                    message = f"bad {coding.decode()} body: {exc}"
                    waiter.set_exception(TransportError(message, reused=False, received=True))
                    return
            if len(body) > MAX_RESPONSE_BYTES:
                message = f"response body too large once {coding.decode()}-decoded"
                waiter.set_exception(TransportError(message, reused=False, received=True))
                return
        waiter.set_result(Response(self.parser.get_status_code(), body, self.headers))

    def _fail(self, exc: Exception) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        self._let_go()

    def _let_go(self) -> None:
        self.closed = True
        if self.sock is not None:
            self.sock.close()  # our duplicate descriptor (the transport closes its own)
            self.sock = None
        self.pool._drop(self)

    def borrow_socket(self) -> None:
        """A duplicate of the transport's descriptor, for `looks_alive`'s peek (the loop's
        own socket object may not allow recv: uvloop's does not). A duplicate, not the
        same number: closing or collecting it can never close a descriptor that the loop
        has reused; `_let_go` closes it with the transport."""
        if self.transport is None:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return
        with contextlib.suppress(OSError, ValueError):
            self.sock = socket.fromfd(sock.fileno(), sock.family, sock.type, sock.proto)

    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed

    def looks_alive(self) -> bool:
        """Before reusing an idle connection: not closed, and nothing to read (an idle
        HTTP/1.1 connection has nothing to say; EOF or any byte means it is done for)."""
        if self.closed or self.transport is None or self.transport.is_closing():
            return False
        sock = self.sock
        if sock is None:
            return True
        try:
            sock.recv(1, _PEEK)
        except BlockingIOError:
            return True  # nothing to read: alive as far as anyone can tell
        except OSError:
            return False
        return False  # b"": EOF; a byte: unexpected data — either way, not usable

    async def send(self, data: bytes) -> Response:
        if self.transport is None or self.transport.is_closing():  # closed since connecting
            raise TransportError("connection closed before sending", reused=False, received=False)
        self.uses += 1
        self._reset()
        self.waiter = self.pool.loop.create_future()
        self.transport.write(data)
        return await self.waiter


class Http1Pool:
    """Keep-alive connections of one event loop, at most `limit` open at once.

    `request()` raises `TimeoutError`, `ConnectError` or `TransportError`; any status is a
    `Response` (the caller classifies it)."""

    def __init__(
        self,
        *,
        limit: int = 256,
        keepalive_s: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.limit = limit
        self.keepalive_s = keepalive_s
        self._ssl = ssl_context
        self._idle: dict[tuple[bool, str, int], list[_Connection]] = {}
        self._open = 0  # connections open or being opened
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.closed = False
        #: counters, for tests and the benchmark
        self.connects = 0
        self.stale_discarded = 0

    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()  # honours SSL_CERT_FILE / SSL_CERT_DIR
        return self._ssl

    async def request(
        self,
        method: str,
        origin: Origin,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        *,
        timeout: float,
        connect_timeout: float,
    ) -> Response:
        """Send one request and read the whole answer within `timeout` seconds."""
        data = build_request(method, origin, path, headers or {}, body)
        deadline = self.loop.time() + timeout
        conn = await self._acquire(origin, deadline, connect_timeout)
        handle = self.loop.call_at(deadline, self._expire, conn)
        try:
            response = await conn.send(data)
        except BaseException:
            conn.close()
            raise
        finally:
            handle.cancel()
            conn.waiter = None
        self._release(conn)
        return response

    def _expire(self, conn: _Connection) -> None:
        conn._fail(TimeoutError("total timeout"))  # before the whole answer was in

    async def _acquire(
        self, origin: Origin, deadline: float, connect_timeout: float
    ) -> _Connection:
        key = origin.key
        idle = self._idle.get(key)
        if idle:
            conn = idle.pop()  # the most recently used: least likely to have timed out
            if time.monotonic() - conn.idle_since > self.keepalive_s:
                for old in [conn, *idle]:  # the rest are older still
                    old.close()
            elif conn.looks_alive():
                return conn
            else:  # dead before we wrote a byte: go once on a fresh connection
                self.stale_discarded += 1
                conn.close()
        while self._open >= self.limit:
            if self._close_some_idle():
                continue
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                # not wait_for: on 3.11 it swallows a cancel that lands after the wake-up
                async with asyncio.timeout_at(deadline):
                    await waiter
            except BaseException:
                # woken, then cancelled or timed out before it ran: the place it was
                # given is free, so the next in line must hear of it or wait for nothing
                if waiter.done() and not waiter.cancelled():
                    self._wake()
                raise
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            idle = self._idle.get(key)
            if idle:
                conn = idle.pop()
                if conn.looks_alive():
                    return conn
                self.stale_discarded += 1
                conn.close()
        return await self._connect(origin, deadline, connect_timeout)

    async def _connect(
        self, origin: Origin, deadline: float, connect_timeout: float
    ) -> _Connection:
        budget = min(connect_timeout, deadline - self.loop.time())
        if budget <= 0:
            raise TimeoutError("total timeout (waiting for a connection)")
        self._open += 1
        self.connects += 1
        conn = _Connection(self, origin.key)
        try:
            tls = self.ssl_context() if origin.tls else None
            async with asyncio.timeout(budget):
                await self.loop.create_connection(
                    lambda: conn,
                    origin.host,
                    origin.port,
                    ssl=tls,
                    server_hostname=origin.host if tls else None,
                )
        except TimeoutError as exc:
            conn.close()
            raise TimeoutError(f"connect timeout ({budget:.3g} s)") from exc
        except (OSError, ssl.SSLError) as exc:  # refused, unreachable, DNS, TLS, certificate
            conn.close()
            raise ConnectError(f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        if not origin.tls:  # TLS: a late session ticket would look like unexpected data
            conn.borrow_socket()
        return conn

    def _release(self, conn: _Connection) -> None:
        if self.closed or not conn.reusable():
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self._idle.setdefault(conn.key, []).append(conn)
        self._wake()

    def _drop(self, conn: _Connection) -> None:
        """`conn` is closed or closing: free its place (once)."""
        if not conn.counted:
            return
        conn.counted = False
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)
        self._open -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _close_some_idle(self) -> bool:
        for idle in self._idle.values():
            if idle:
                idle.pop(0).close()
                return True
        return False

    async def aclose(self) -> None:
        self.closed = True
        for idle in list(self._idle.values()):
            for conn in list(idle):
                conn.close()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run connection_lost
