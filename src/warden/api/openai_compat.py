"""`POST /v1/chat/completions`: the OpenAI-compatible front door (route only; the logic is
`warden.frontdoor`). The API key comes as `Authorization: Bearer <key>` (what OpenAI
clients send) or `X-API-Key`.

Two ways in, one handler (`answer`): a Starlette route ahead of FastAPI's (what an app
built by `create_app` serves, e.g. under a test client), and `FrontDoorFirst`, the ASGI
wrapper `warden serve` puts around the whole app, which sends this one path straight to
the handler without FastAPI's middleware stack (measured: see bench/README.md) and
enforces the body-size limit itself (`read_body`, as the app's `BodyLimit` does)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.datastructures import Headers
from starlette.routing import Route

from warden.api.body import Disconnected, error_json, parse_json_body, read_body, send_json
from warden.auth import Principal
from warden.errors import WardenError
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


def authenticate(gateway: Gateway, headers: Mapping[str, str]) -> Principal:
    """The caller of a chat request (its key as a Bearer token or in X-API-Key)."""
    if gateway.keyring is None:
        raise WardenError("this gateway has no API keys configured", code="auth.none")
    return gateway.keyring.authenticate(_api_key(headers))


def _error(exc: WardenError) -> tuple[int, bytes, dict[str, str]]:
    decision_id = getattr(exc, "decision_id", None)
    return exc.http_status, error_json(exc), {DECISION_ID: decision_id} if decision_id else {}


async def answer(
    gateway: Gateway, headers: Mapping[str, str], raw: bytes, caller: Principal | None = None
) -> tuple[int, bytes, dict[str, str]]:
    """(status, JSON body, Warden headers) for one request; every failure is a JSON error.
    The headers: the decision id, and `X-Warden-Replayed: true` when an Idempotency-Key
    answered an earlier decision again. `caller`: already authenticated (else done here)."""
    try:
        if caller is None:
            caller = authenticate(gateway, headers)
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
            caller = authenticate(self.gateway, headers)  # megabytes: for a known caller only
            raw = await read_body(receive, headers, MAX_BODY_BYTES)
            status, body, warden_headers = await answer(self.gateway, headers, raw, caller)
        except WardenError as exc:  # unread body (the app's BodyLimit answers the same)
            status, body, warden_headers = _error(exc)
            warden_headers["connection"] = "close"
        except Disconnected:
            return
        except Exception:  # as Starlette's ServerErrorMiddleware: log it, answer 500
            log.exception("front door: unexpected error")
            status, body, warden_headers = 500, INTERNAL_ERROR, {}
        await send_json(send, status, body, warden_headers)
