"""The HTTP API: routes only. Each route authenticates, calls the Gateway, and formats."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.convertors import StringConvertor, register_url_convertor
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from warden import __version__, metrics
from warden.api.body import (
    SMALL_BODY_BYTES,
    BodyLimit,
    decision_body_limit,
    parse_json_body,
    route_path,
)
from warden.api.models import mount_model_routes
from warden.api.openai_compat import MAX_BODY_BYTES
from warden.api.openai_compat import PATH as CHAT_COMPLETIONS
from warden.api.openai_compat import authenticate as authenticate_chat
from warden.api.openai_compat import install as install_chat_completions
from warden.api.openapi import decision_body_schema, install_openapi
from warden.auth import Permission, Principal
from warden.errors import AuthError, RequestError, WardenError
from warden.gateway import Gateway
from warden.policy.errors_format import request_error
from warden.review.web import mount_workbench
from warden.schemas import DecisionResponse, ErrorResponse

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422, 503)
}
#: what Starlette says when a body is not UTF-8 (FastAPI answers 400 with it)
_UNPARSABLE_BODY = "There was an error parsing the body"
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request.too_large"}


class _CaseIdConvertor(StringConvertor):
    """The decision id of `/v1/review/{decision_id}`: any path segment but `queue`, the
    queue's own path. Starlette takes the first route whose path *and* method match, so
    without this `POST /v1/review/queue` was a review of a decision "queue" (a 422 or a
    404) rather than a wrong method on the queue (405, `Allow: GET`)."""

    regex = "(?!queue$)[^/]+"


register_url_convertor("case_id", _CaseIdConvertor())
#: the body `POST /v1/review/{decision_id}` reads (documented, as it is read by hand)
_REVIEW_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ReviewRequestBody"}}
        },
    }
}


def _methods_at(app: FastAPI, path: str) -> list[str]:
    """The methods of the path template that `path` first matches, over all its routes
    (each method of a template is a route of its own). `/v1/review/queue` is its own
    template, though `/v1/review/{decision_id}` would match it too."""
    routes = [r for r in app.router.routes if isinstance(r, Route) and r.methods]
    template = next((r.path for r in routes if r.path_regex.match(path)), None)
    return sorted({m for r in routes if r.path == template for m in r.methods or ()})


def create_app(gateway: Gateway, *, close_on_shutdown: bool = False) -> FastAPI:
    """The app. With `close_on_shutdown`, the app owns the gateway and closes it (flushing
    the audit writer, releasing the data directory) when the server shuts down."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        gateway.endpoints.start_health_checks()
        try:
            yield
        finally:
            await gateway.endpoints.stop()
            if close_on_shutdown:
                gateway.close()

    app = FastAPI(
        title="Warden",
        version=__version__,
        description="Decision gateway: auditable, residency-safe, risk-banded decisions.",
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    # every body is read whole, and refused (413) over its route's limit, before a route
    # sees it: a decision's documents need megabytes, any other body a few kilobytes
    body_limits = {
        "/v1/decisions": decision_body_limit(gateway.policy),
        CHAT_COMPLETIONS: MAX_BODY_BYTES,
    }

    async def principal(x_api_key: Annotated[str | None, Header()] = None) -> Principal:
        if gateway.keyring is None:
            raise AuthError("this gateway has no API keys configured")
        return gateway.keyring.authenticate(x_api_key)

    async def chat_caller(headers: Headers) -> Principal:
        return authenticate_chat(gateway, headers)

    app.add_middleware(
        BodyLimit,
        limits=body_limits,
        default=SMALL_BODY_BYTES,
        authenticate={
            "/v1/decisions": lambda headers: principal(headers.get("x-api-key")),
            CHAT_COMPLETIONS: chat_caller,
        },
    )

    Caller = Annotated[Principal, Depends(principal)]

    @app.exception_handler(WardenError)
    async def warden_error(_: Request, exc: WardenError) -> JSONResponse:
        return JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        path, message = request_error(exc.errors()[0])
        body = {"code": "request.invalid", "message": message, "field": path}
        return JSONResponse({"error": body}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Starlette's own errors (an unknown path, a wrong method, an undecodable body) in
        the same `{"error": ...}` form as every other error."""
        if exc.status_code == 400 and exc.detail == _UNPARSABLE_BODY:
            error = RequestError("body: not valid JSON (not UTF-8 text)", field="body")
            return JSONResponse({"error": error.to_dict()}, status_code=error.http_status)
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        body = {"code": code, "message": str(exc.detail)}
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Starlette names the first route's methods only
            methods = _methods_at(app, route_path(request.scope))
            if methods:  # else (a mount's own 405, say) Starlette's answer stands
                headers["Allow"] = ", ".join(methods)
        return JSONResponse({"error": body}, status_code=exc.status_code, headers=headers)

    decision_schema, decision_defs = decision_body_schema(gateway.policy)

    @app.post(
        "/v1/decisions",
        response_model=DecisionResponse,
        responses=ERRORS,
        summary="Decide: run a request through every gate and commit its audit record",
        # the body is parsed and validated once, by the gateway (the same code path as the
        # Python API and the CLI); this only documents it in the OpenAPI spec
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": decision_schema}},
            }
        },
    )
    async def decide(
        request: Request,
        caller: Caller,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        payload = parse_json_body(await request.body())
        result = await gateway.decide(payload, caller, idempotency_key=idempotency_key)
        return JSONResponse(result, headers={"X-Warden-Decision-Id": result["decision_id"]})

    async def decide_fast(request: Request) -> Response:
        """The same contract as `decide` above, served without FastAPI's per-request
        dependency solving (measured ~20 % of a decision's CPU over HTTP). `decide` stays
        registered so the OpenAPI spec documents this route; this one is matched first."""
        try:
            caller = await principal(request.headers.get("x-api-key"))
            payload = parse_json_body(await request.body())
            result = await gateway.decide(
                payload, caller, idempotency_key=request.headers.get("idempotency-key")
            )
        except WardenError as exc:
            return JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status)
        return JSONResponse(result, headers={"X-Warden-Decision-Id": result["decision_id"]})

    app.router.routes.insert(0, Route("/v1/decisions", decide_fast, methods=["POST"]))
    install_chat_completions(app, gateway)  # POST /v1/chat/completions (OpenAI-compatible)

    @app.get("/v1/whoami", responses=ERRORS, summary="The caller's key: name, role, permissions")
    def whoami(caller: Caller) -> dict[str, object]:
        return caller.describe()

    @app.get(
        "/v1/decisions/{decision_id}",
        responses=ERRORS,
        summary="The full audit record of a decision (and its reviews)",
    )
    def get_decision(decision_id: str, caller: Caller) -> dict[str, Any]:
        return gateway.record(decision_id, caller)

    @app.get(
        "/v1/decisions/{decision_id}/proof",
        responses=ERRORS,
        summary="Inclusion proof of a decision against the latest signed checkpoint",
    )
    def get_proof(decision_id: str, caller: Caller) -> dict[str, Any]:
        return gateway.proof(decision_id, caller)

    @app.get(
        "/v1/audit/checkpoint",
        responses=ERRORS,
        summary="The latest signed checkpoint (C2SP signed note)",
    )
    def get_checkpoint(caller: Caller) -> dict[str, Any]:
        return gateway.checkpoint(caller)

    @app.get("/v1/review/queue", responses=ERRORS, summary="Decisions waiting for a person")
    def review_queue(caller: Caller, limit: int = 100) -> dict[str, Any]:
        return {"items": gateway.review_queue(caller, min(max(limit, 1), 1000))}

    @app.post(
        "/v1/review/{decision_id:case_id}",
        responses=ERRORS,
        summary="A reviewer's decision on a case they claimed (rationale and label mandatory)",
        # read as `POST /v1/decisions` reads its body (a key twice, text not UTF-8, a body
        # nested too deeply: a 422 naming the body), then validated by the review desk
        openapi_extra=_REVIEW_BODY,
    )
    async def review(decision_id: str, request: Request, caller: Caller) -> dict[str, Any]:
        # a role that may not review: 403 before its body is parsed
        caller.require(Permission.REVIEW)
        payload = parse_json_body(await request.body())
        return await gateway.review(decision_id, caller, payload)

    @app.get(
        "/v1/review/{decision_id:case_id}",
        responses=ERRORS,
        summary="A queued case: who holds it, its four-eyes state and review trail",
    )
    def review_case(decision_id: str, caller: Caller) -> dict[str, Any]:
        return gateway.desk.case_view(gateway.review_case(decision_id, caller))

    @app.post(
        "/v1/review/{decision_id}/claim",
        responses=ERRORS,
        summary="Claim a queued case: it is locked to you until released or it expires",
    )
    async def review_claim(decision_id: str, caller: Caller) -> dict[str, Any]:
        return await gateway.review_claim(decision_id, caller)

    @app.post(
        "/v1/review/{decision_id}/release",
        responses=ERRORS,
        summary="Release a claimed case (its holder, or an admin)",
    )
    async def review_release(decision_id: str, caller: Caller) -> dict[str, Any]:
        return await gateway.review_release(decision_id, caller)

    mount_workbench(app, gateway)
    mount_model_routes(app, gateway, principal, ERRORS)
    install_openapi(app, gateway.policy, decision_defs, body_limits, SMALL_BODY_BYTES)

    @app.get("/healthz", summary="Liveness and audit writer health")
    def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "audit_entries": gateway.store.size(),
            "policy_version": gateway.policy.version,
            "residency_policy_version": gateway.policy.routes.version,
            "endpoints": gateway.endpoints.snapshot(),
        }

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return app
