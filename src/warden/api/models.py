"""HTTP routes for reproduce, band monitoring and thresholds (maker-checker): routes only;
the Gateway does the work."""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI

from warden.auth import Permission, Principal
from warden.gateway import Gateway


def mount_model_routes(
    app: FastAPI,
    gateway: Gateway,
    principal: Callable[..., Awaitable[Principal]],
    responses: dict[int | str, dict[str, Any]],
) -> None:
    Caller = Annotated[Principal, Depends(principal)]

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
        "/v1/thresholds/{version}/approve",
        responses=responses,
        summary="Activate a proposed thresholds version (a second admin: maker-checker)",
    )
    async def approve(version: str, caller: Caller) -> dict[str, Any]:
        return await gateway.approve_thresholds(version, caller)
