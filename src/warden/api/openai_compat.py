"""`POST /v1/chat/completions`: the OpenAI-compatible front door (route only; the logic is
`warden.frontdoor`). The API key comes as `Authorization: Bearer <key>` (what OpenAI
clients send) or `X-API-Key`."""

from __future__ import annotations

import json
from typing import NoReturn

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.routing import Route

from warden.errors import RequestError, WardenError
from warden.frontdoor import chat_completion
from warden.gateway import Gateway

DECISION_ID = "X-Warden-Decision-Id"


def _api_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return request.headers.get("x-api-key")


def install(app: FastAPI, gateway: Gateway) -> None:
    """Add the front door to `app` (before FastAPI's routes, like POST /v1/decisions)."""

    async def chat_completions(request: Request) -> Response:
        headers: dict[str, str] = {}
        try:
            if gateway.keyring is None:
                raise WardenError("this gateway has no API keys configured", code="auth.none")
            caller = gateway.keyring.authenticate(_api_key(request))
            try:
                payload = json.loads(await request.body())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise_bad_json(exc)
            answer = await chat_completion(gateway, payload, request.headers, caller)
        except WardenError as exc:
            decision_id = getattr(exc, "decision_id", None)
            if decision_id:
                headers[DECISION_ID] = decision_id
            return JSONResponse(
                {"error": exc.to_dict()}, status_code=exc.http_status, headers=headers
            )
        return Response(
            answer.body,
            media_type="application/json",
            headers={DECISION_ID: answer.decision_id},
        )

    app.router.routes.insert(0, Route("/v1/chat/completions", chat_completions, methods=["POST"]))


def raise_bad_json(exc: Exception) -> NoReturn:
    raise RequestError(f"body: not valid JSON ({exc})", field="body") from None
