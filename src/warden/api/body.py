"""A request body read as JSON, with a 422 naming the body for every way it can fail.

`json.loads` fails in more ways than `JSONDecodeError`: an integer literal longer than
Python converts (`ValueError`), arrays nested deeper than its recursion limit
(`RecursionError`). Each of them was an unhandled 500 before. Two things it accepts are
refused here: text that is not UTF-8 (given bytes, `json.loads` also guesses UTF-16 and
UTF-32), and an object with the same key twice — `json.loads` keeps the last, another
reader (a proxy, a log pipeline) may keep the first, so the two would disagree on, say,
the jurisdiction. Both doors use this.

Before that, the body's size: every route that reads one is behind `BodyLimit` (and the
front door `warden serve` runs ahead of the app calls `read_body` itself), so no body is
read into memory past its route's limit."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from starlette.datastructures import Headers

from warden.errors import RequestError, TooLargeError, WardenError

if TYPE_CHECKING:
    from warden.policy.loader import LoadedPolicy
    from warden.policy.model import DecisionType, InputField

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: the body of any route without a limit of its own: a review (a rationale of at most
#: 5,000 characters is at most 60,000 bytes even with every one JSON- or URL-escaped as a
#: 4-byte character), a calibration, a workbench form
SMALL_BODY_BYTES = 64 * 1024
#: what a decision carries besides its documents: fields, free text, tool calls
DECISION_FIELDS_BYTES = 1024 * 1024
#: the methods whose bodies are limited (no route reads the body of any other)
_WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


def parse_json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_object)
    except UnicodeDecodeError:
        raise RequestError("body: not valid UTF-8", field="body") from None
    except json.JSONDecodeError as exc:
        where = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        raise RequestError(f"body: not valid JSON ({where})", field="body") from None
    except _DuplicateKey as exc:
        shown = json.dumps(exc.key[:60])
        raise RequestError(
            f"body: key {shown} appears twice in one object (which one counts is ambiguous)",
            field="body",
        ) from None
    except RecursionError:
        raise RequestError(
            "body: arrays and objects nested too deeply to read", field="body"
        ) from None
    except ValueError:  # the only other: an integer literal too long to convert
        limit = sys.get_int_max_str_digits()
        raise RequestError(
            f"body: an integer literal has more than {limit} digits", field="body"
        ) from None


#: the most bytes one character of a JSON string can take (`\\uXXXX`, half a surrogate pair)
_JSON_BYTES_PER_CHAR = 6


def decision_body_limit(policy: LoadedPolicy) -> int:
    """The limit of a `POST /v1/decisions` body: room for every document input of the
    decision type that needs the most, each as large as its guard accepts (`data_base64`:
    4/3 of `guard.document.max_bytes`, the guard's own check), every string input with a
    `max_length` at its longest however it is escaped, and `DECISION_FIELDS_BYTES` for the
    rest (strings without a `max_length`, numbers, tool calls). A body the policy accepts
    is never refused for its size first."""

    def room(field: InputField, spec: DecisionType) -> int:
        if field.type == "document":
            return spec.guard.document.max_bytes * 4 // 3 + 8
        if field.type == "string" and field.max_length is not None:
            return field.max_length * _JSON_BYTES_PER_CHAR
        return 0

    largest = max(
        (
            sum(room(field, spec) for field in spec.inputs.values())
            for spec in policy.policy.decision_types.values()
        ),
        default=0,
    )
    return DECISION_FIELDS_BYTES + largest


class Disconnected(Exception):
    """The client went away before it had sent its body."""


def too_large(limit: int, declared: int | None = None) -> TooLargeError:
    sent = f"{declared:,} bytes, more" if declared is not None else "more"
    return TooLargeError(f"body: {sent} than the limit of {limit:,} bytes", field="body")


async def read_body(receive: Receive, headers: Headers, limit: int) -> bytes:
    """The whole body. Over `limit` (announced in Content-Length: nothing is read; or
    sent): TooLargeError, with at most `limit` bytes read."""
    declared = headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise too_large(limit, int(declared))
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def error_json(exc: WardenError) -> bytes:
    """`{"error": ...}` as every route answers it (compact, as Starlette's JSONResponse)."""
    error = {"error": exc.to_dict()}
    return json.dumps(error, ensure_ascii=False, separators=(",", ":")).encode()


async def send_json(send: Send, status: int, body: bytes, headers: Mapping[str, str]) -> None:
    """A complete JSON response, in two ASGI messages."""
    out = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    out += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})


def route_path(scope: Scope) -> str:
    """The path the routes see: without the `root_path` a proxy mounts the app under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


#: what a route with a large limit checks before its body is read: the caller's key
Authenticate = Callable[[Headers], Awaitable[object]]


class BodyLimit:
    """ASGI middleware: the body of every request to the app, read whole before the app
    sees the request, and refused (413, the error JSON every route answers) when it is over
    its route's limit: `limits` by path, else `default`. The app does not start on a
    refused request, so nothing of it is parsed, decided or written.

    A route with a limit above `default` names how its caller is authenticated
    (`authenticate`, by path): that runs first, so megabytes are read only for a known
    caller, never for anyone who opens a connection (its 401 leaves the body unread)."""

    def __init__(
        self,
        app: ASGIApp,
        limits: Mapping[str, int],
        default: int,
        authenticate: Mapping[str, Authenticate],
    ) -> None:
        self.app = app
        self.limits = dict(limits)
        self.default = default
        self.authenticate = dict(authenticate)
        unchecked = {p for p, n in self.limits.items() if n > default} - set(self.authenticate)
        if unchecked:
            raise ValueError(f"routes with a large body limit and no authentication: {unchecked}")

    def limit(self, path: str) -> int:
        return self.limits.get(path, self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        # the routes with large bodies are POSTs: another method there (a 405 to come)
        # has the default limit and no key check of its own
        path = route_path(scope) if scope["method"] == "POST" else ""
        headers = Headers(scope=scope)
        try:
            check = self.authenticate.get(path)
            if check is not None:
                await check(headers)
            raw = await read_body(receive, headers, self.limit(path))
        except Disconnected:
            return
        except WardenError as exc:
            # the rest of the body is not read: the connection cannot carry another request
            await send_json(send, exc.http_status, error_json(exc), {"connection": "close"})
            return
        await self.app(scope, _replay(raw, receive), send)


def _replay(raw: bytes, receive: Receive) -> Receive:
    """`receive` for the app: the body already read, then the client's own messages (a
    disconnect, which a streaming response listens for)."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    return replay
