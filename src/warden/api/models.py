"""HTTP routes for reproduce, band monitoring and thresholds (maker-checker): routes only;
the Gateway does the work."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from warden.api.body import parse_json_body
from warden.auth import Permission, Principal
from warden.gateway import Gateway
from warden.policy.errors_format import validated_body


class CalibrateRequestBody(BaseModel):
    """What `warden calibrate` takes, for a gateway that is serving (the CLI needs the
    data directory to itself)."""

    model_config = ConfigDict(extra="forbid")

    decision_type: str = Field(min_length=1, max_length=64)
    rows: int = Field(default=40_000, ge=0, le=1_000_000, description="generated labelled rows")
    seed: int = Field(default=424_242, ge=0)
    review_capacity: float | None = Field(default=None, gt=0.0, le=1.0)


def calibrate_body(raw: bytes) -> CalibrateRequestBody:
    """The body of `POST /v1/thresholds/calibrate`, read as `POST /v1/decisions` reads
    its body (a key twice, text not UTF-8, nesting too deep: a 422 naming the body)."""
    return validated_body(CalibrateRequestBody, parse_json_body(raw))


#: the body `POST /v1/thresholds/calibrate` reads (documented, as it is read by hand)
_CALIBRATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/CalibrateRequestBody"}}
        },
    }
}


def mount_model_routes(
    app: FastAPI,
    gateway: Gateway,
    principal: Callable[..., Awaitable[Principal]],
    responses: dict[int | str, dict[str, Any]],
) -> None:
    Caller = Annotated[Principal, Depends(principal)]
    # one calibration at a time: its report is drawn by matplotlib (off the event loop, on
    # a thread), whose text layout is not thread-safe; two at once failed with a 500 after
    # the proposal was committed. The next one waits (each takes seconds).
    calibrating = asyncio.Lock()

    @app.get(
        "/v1/decisions/{decision_id}/reproduce",
        responses=responses,
        summary="Re-run a decision from its record and compare field by field",
    )
    def reproduce(decision_id: str, caller: Caller) -> dict[str, Any]:
        return gateway.reproduce(decision_id, caller)

    @app.get(
        "/v1/bands/monitor",
        responses=responses,
        summary="Review-band share per decision type against its control limit (alerts)",
    )
    def band_monitor(caller: Caller) -> dict[str, Any]:
        return gateway.band_monitor(caller)

    @app.get(
        "/v1/thresholds",
        responses=responses,
        summary="Proposed thresholds versions and the active one per decision type",
    )
    def thresholds(caller: Caller) -> dict[str, Any]:
        from warden.models.thresholds import proposals

        caller.require(Permission.READ_AUDIT)
        return {"proposals": proposals(gateway.store)}

    @app.post(
        "/v1/thresholds/calibrate",
        responses=responses,
        summary="Calibrate and propose a thresholds version (an admin; a second one approves)",
        openapi_extra=_CALIBRATE_BODY,
    )
    async def calibrate(request: Request, caller: Caller) -> dict[str, Any]:
        caller.require(Permission.ADMIN)  # a role that may not: 403 before its body is parsed
        body = calibrate_body(await request.body())
        async with calibrating:
            return await gateway.calibrate_thresholds(
                caller,
                body.decision_type,
                rows=body.rows,
                seed=body.seed,
                review_capacity=body.review_capacity,
            )

    @app.post(
        "/v1/thresholds/{version}/approve",
        responses=responses,
        summary="Activate a proposed thresholds version (a second admin: maker-checker)",
    )
    async def approve(version: str, caller: Caller) -> dict[str, Any]:
        return await gateway.approve_thresholds(version, caller)
