"""The OpenAPI document, completed where a route bypasses FastAPI's own body handling.

`POST /v1/decisions` parses its body in the gateway and `POST /v1/chat/completions` is
served ahead of FastAPI, so FastAPI cannot describe them alone; and the rationale's
minimum length is the policy's, not a constant. A client generated from `/openapi.json`
should see what the server enforces."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from warden.schemas import DecisionRequestBody

_REF = "#/components/schemas/{model}"


def decision_body_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """(`DecisionRequestBody`'s JSON schema, the schemas it refers to), with references
    into the OpenAPI document's components rather than a `$defs` of its own."""
    schema = DecisionRequestBody.model_json_schema(ref_template=_REF)
    return schema, schema.pop("$defs", {})


def _chat_completions(errors: dict[str, Any]) -> dict[str, Any]:
    def header(name: str, description: str) -> dict[str, Any]:
        return {
            "name": name,
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": description,
        }

    message = {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"type": "string", "enum": ["system", "user", "assistant", "tool"]},
            "content": {"type": "string"},
        },
    }
    return {
        "post": {
            "summary": "OpenAI-compatible chat completions, through every gate and residency "
            "routing; the answer is the upstream's, with X-Warden-Decision-Id",
            "operationId": "chat_completions",
            "parameters": [
                header("X-Warden-Jurisdiction", "The request's jurisdiction label, e.g. EU."),
                header("X-Warden-Data-Class", "The data class, e.g. personal."),
                header("X-Warden-Decision-Type", "A decision type of the policy."),
                {
                    "name": "Authorization",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "Bearer <API key> (or the X-API-Key header).",
                },
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["model", "messages"],
                            "properties": {
                                "model": {"type": "string"},
                                "messages": {"type": "array", "minItems": 1, "items": message},
                            },
                            "additionalProperties": True,
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "The upstream's chat completion",
                    "headers": {"X-Warden-Decision-Id": {"schema": {"type": "string"}}},
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                **{code: errors for code in ("401", "403", "409", "413", "422", "503")},
            },
        }
    }


def install_openapi(app: FastAPI, *, decision_defs: dict[str, Any], min_rationale: int) -> None:
    """Wrap `app.openapi` so the document it builds (once) is complete."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in decision_defs.items():
            schemas.setdefault(name, schema)
        rationale = schemas.get("ReviewRequestBody", {}).get("properties", {}).get("rationale")
        if rationale is not None:
            rationale["minLength"] = min_rationale
        errors = {  # ErrorResponse: every other route documents it, so it is a component
            "description": "Error",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
            },
        }
        document["paths"]["/v1/chat/completions"] = _chat_completions(errors)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
