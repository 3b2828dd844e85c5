"""`POST /v1/chat/completions`: the OpenAI-compatible front door (route only; the logic is
`warden.frontdoor`). The API key comes as `Authorization: Bearer <key>` (what OpenAI
clients send) or `X-API-Key`.

Two ways in, one handler (`answer`): a Starlette route ahead of FastAPI's (what an app
built by `create_app` serves, e.g. under a test client), and `FrontDoorFirst`, the ASGI
wrapper `warden serve` puts around the whole app, which sends this one path straight to
the handler without FastAPI's middleware stack (measured: see bench/README.md) and
enforces the body-size limit itself."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.datastructures import Headers
from starlette.routing import Route

from warden.api.body import parse_json_body
from warden.errors import RequestError, WardenError
from warden.frontdoor import chat_completion
from warden.gateway import Gateway

PATH = "/v1/chat/completions"
DECISION_ID = "X-Warden-Decision-Id"
REPLAYED = "X-Warden-Replayed"
#: a chat body larger than this is refused (413) before it is parsed
MAX_BODY_BYTES = 8 * 1024 * 1024
log = logging.getLogger("warden.api")
INTERNAL_ERROR = b'{"error":{"code":"internal","message":"internal error"}}'


def _api_key(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return headers.get("x-api-key")


def _error(exc: WardenError) -> tuple[int, bytes, dict[str, str]]:
    body = json.dumps({"error": exc.to_dict()}, ensure_ascii=False, separators=(",", ":"))
    decision_id = getattr(exc, "decision_id", None)
    return exc.http_status, body.encode(), {DECISION_ID: decision_id} if decision_id else {}


async def answer(
    gateway: Gateway, headers: Mapping[str, str], raw: bytes
) -> tuple[int, bytes, dict[str, str]]:
    """(status, JSON body, Warden headers) for one request; every failure is a JSON error.
    The headers: the decision id, and `X-Warden-Replayed: true` when an Idempotency-Key
    answered an earlier decision again."""
    try:
        if gateway.keyring is None:
            raise WardenError("this gateway has no API keys configured", code="auth.none")
        caller = gateway.keyring.authenticate(_api_key(headers))
        payload = parse_json_body(raw)
        result = await chat_completion(gateway, payload, headers, caller)
    except WardenError as exc:
        return _error(exc)
    out = {DECISION_ID: result.decision_id}
    if result.replayed:
        out[REPLAYED] = "true"
    return 200, result.body, out


def install(app: FastAPI, gateway: Gateway) -> None:
    """Add the front door to `app` (before FastAPI's routes, like POST /v1/decisions)."""

    async def chat_completions(request: Request) -> Response:
        status, body, headers = await answer(gateway, request.headers, await request.body())
        return Response(body, status_code=status, media_type="application/json", headers=headers)

    app.router.routes.insert(0, Route(PATH, chat_completions, methods=["POST"]))


class FrontDoorFirst:
    """ASGI: `POST /v1/chat/completions` straight to `answer`; everything else (other
    paths, other methods, lifespan) to `app` unchanged."""

    def __init__(self, app: Any, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            raw = await _read_body(receive, headers)
            if raw is None:
                too_big = RequestError(
                    f"body: larger than {MAX_BODY_BYTES} bytes",
                    code="request.too_large",
                    field="body",
                )
                _, body, warden_headers = _error(too_big)
                status = 413
            else:
                status, body, warden_headers = await answer(self.gateway, headers, raw)
        except _Disconnected:
            return
        except Exception:  # as Starlette's ServerErrorMiddleware: log it, answer 500
            log.exception("front door: unexpected error")
            status, body, warden_headers = 500, INTERNAL_ERROR, {}
        length = str(len(body)).encode()
        out = [(b"content-type", b"application/json"), (b"content-length", length)]
        out += [(k.lower().encode(), v.encode()) for k, v in warden_headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Any, headers: Headers) -> bytes | None:
    """The whole body, or None when it is over the limit (announced or sent)."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class _Disconnected(Exception):
    """The client went away before it had sent its body."""
