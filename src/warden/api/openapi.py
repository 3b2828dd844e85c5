"""The OpenAPI document, completed where a route bypasses FastAPI's own body handling.

`POST /v1/decisions` parses its body in the gateway and `POST /v1/chat/completions` is
served ahead of FastAPI, so FastAPI cannot describe them alone; and the rationale's
minimum length is the policy's, not a constant. A client generated from `/openapi.json`
should see what the server enforces."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI

from warden.api.models import CalibrateRequestBody
from warden.frontdoor import MAX_MESSAGES
from warden.policy.loader import LoadedPolicy
from warden.policy.model import Tool
from warden.schemas import DecisionRequestBody, ReviewRequestBody

_REF = "#/components/schemas/{model}"


def decision_body_schema(policy: LoadedPolicy) -> tuple[dict[str, Any], dict[str, Any]]:
    """(The body of `POST /v1/decisions`, the component schemas it refers to).

    One variant per decision type of the policy (`oneOf`, discriminated by
    `decision_type`), each with that type's own inputs (`Inputs_<name>`, the model the
    admission gate validates with) and the policy's jurisdictions and data classes as
    enums. Unlabeled and unknown-jurisdiction requests are still answered (422, counted);
    the document shows what is accepted. References point into the document's
    components rather than a `$defs` of its own."""
    base = DecisionRequestBody.model_json_schema(ref_template=_REF)
    defs: dict[str, Any] = base.pop("$defs", {})
    jurisdictions = sorted(policy.policy.residency)
    data_classes = list(policy.policy.data_classes)
    variants: dict[str, str] = {}
    for name, compiled in sorted(policy.decision_types.items()):
        inputs = compiled.input_model.model_json_schema(ref_template=_REF)
        defs.update(inputs.pop("$defs", {}))
        inputs_name = f"Inputs_{name}"
        defs[inputs_name] = inputs
        variant = copy.deepcopy(base)
        variant["title"] = f"DecisionRequest_{name}"
        properties = variant["properties"]
        properties["decision_type"] = {"type": "string", "const": name}
        properties["inputs"] = {"$ref": _REF.format(model=inputs_name)}
        properties["jurisdiction"] = {
            "type": "string",
            "enum": jurisdictions,
            "description": "Required: an unlabeled or unknown jurisdiction is refused (422).",
        }
        properties["data_class"] = {
            "anyOf": [{"type": "string", "enum": data_classes}, {"type": "null"}],
            "default": None,
            "description": properties.get("data_class", {}).get("description", ""),
        }
        properties["tool_calls"] = _tool_calls(
            name, compiled.spec.tools, properties["tool_calls"], defs
        )
        variant["required"] = sorted({*variant.get("required", []), "jurisdiction"})
        defs[variant["title"]] = variant
        variants[name] = _REF.format(model=variant["title"])
    schema = {
        "oneOf": [{"$ref": ref} for ref in variants.values()],
        "discriminator": {"propertyName": "decision_type", "mapping": variants},
    }
    return schema, defs


def _as_component(schema: dict[str, Any], name: str, defs: dict[str, Any]) -> dict[str, Any]:
    """A policy's JSON Schema as a component of the document, referred to by `$ref`. Its
    local references (`#/$defs/…`, `#`) are rewritten to point into that component, so
    they resolve in the OpenAPI document as they did in the schema alone."""
    base = _REF.format(model=name)

    def rebase(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: base + v[1:]
                if k == "$ref" and isinstance(v, str) and v.startswith("#")
                else rebase(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [rebase(item) for item in node]
        return node

    defs[name] = rebase(schema)
    return {"$ref": base}


def _tool_calls(
    decision_type: str,
    tools: Mapping[str, Tool],
    generic: dict[str, Any],
    defs: dict[str, Any],
) -> dict[str, Any]:
    """The decision type's allow-list: each tool's name and argument schema (its limits,
    checked against the inputs, are not expressible here); none allowed: no calls."""
    description = generic.get("description", "")
    if not tools:
        return {
            "anyOf": [{"type": "array", "maxItems": 0}, {"type": "null"}],
            "default": None,
            "description": description + " This decision type allows no tools.",
        }
    calls = [
        {
            "type": "object",
            "title": name,
            "description": tool.description,
            "required": ["name", "arguments"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "const": name},
                "arguments": _as_component(
                    tool.schema_, f"ToolArguments_{decision_type}_{name}", defs
                ),
            },
        }
        for name, tool in sorted(tools.items())
    ]
    array = next(a for a in generic["anyOf"] if a.get("type") == "array")
    array = {**array, "items": {"oneOf": calls}}  # maxItems as DecisionRequestBody says
    return {"anyOf": [array, {"type": "null"}], "default": None, "description": description}


def _chat_completions(errors: dict[str, Any], policy: LoadedPolicy) -> dict[str, Any]:
    def header(name: str, description: str, enum: list[str], required: bool) -> dict[str, Any]:
        return {
            "name": name,
            "in": "header",
            "required": required,
            "schema": {"type": "string", "enum": enum},
            "description": description,
        }

    chats = sorted(
        name
        for name, compiled in policy.decision_types.items()
        if compiled.spec.llm is not None and compiled.spec.llm.mode == "chat"
    )
    text_part = {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
    }
    message = {
        "type": "object",
        "required": ["role"],
        "properties": {
            "role": {
                "type": "string",
                "examples": ["system", "developer", "user", "assistant", "tool"],
            },
            "content": {
                "anyOf": [{"type": "string"}, {"type": "array", "items": text_part}],
                "description": "Text, or text content parts (no images or audio).",
            },
        },
    }
    from_user = {"type": "object", "required": ["role"], "properties": {"role": {"const": "user"}}}
    messages = {
        "type": "array",
        "minItems": 1,
        "maxItems": MAX_MESSAGES,
        "items": message,
        "contains": from_user,
        "description": "At least one message from the user; its text passes the input guard.",
    }
    return {
        "post": {
            "summary": "OpenAI-compatible chat completions, through every gate and residency "
            "routing; the answer is the upstream's, with X-Warden-Decision-Id",
            "operationId": "chat_completions",
            "parameters": [
                header(
                    "X-Warden-Jurisdiction",
                    "The request's jurisdiction label; unlabeled or unknown: 422.",
                    sorted(policy.policy.residency),
                    True,
                ),
                header(
                    "X-Warden-Data-Class",
                    "The data class (default: the decision type's `llm.data_class`).",
                    list(policy.policy.data_classes),
                    False,
                ),
                header(
                    "X-Warden-Decision-Type", "A chat decision type of the policy.", chats, True
                ),
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
                            "required": ["messages"],
                            "properties": {
                                "model": {"type": "string"},
                                "messages": messages,
                                "stream": {
                                    "enum": [False, None],
                                    "description": "Streaming is not supported.",
                                },
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
                **{code: errors for code in ("401", "403", "409", "422", "503")},
            },
        }
    }


def install_openapi(
    app: FastAPI,
    policy: LoadedPolicy,
    decision_defs: dict[str, Any],
    body_limits: Mapping[str, int],
    default_body_limit: int,
) -> None:
    """Wrap `app.openapi` so the document it builds (once) is complete. `body_limits` (by
    path, else `default_body_limit`): what `BodyLimit` refuses with 413."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in decision_defs.items():
            schemas.setdefault(name, schema)
        # the review and calibrate bodies are read by hand (as the decision body is): their
        # routes refer to these components, which FastAPI adds only for bodies it parses
        for model in (ReviewRequestBody, CalibrateRequestBody):
            schemas.setdefault(model.__name__, model.model_json_schema(ref_template=_REF))
        rationale = schemas.get("ReviewRequestBody", {}).get("properties", {}).get("rationale")
        if rationale is not None:
            minimum = policy.policy.review.min_rationale_chars
            rationale["minLength"] = minimum
            rationale["description"] = (
                f"Why: at least {minimum} characters once leading and trailing whitespace "
                "is stripped."
            )
        calibrate = schemas.get("CalibrateRequestBody", {}).get("properties", {})
        calibratable = sorted(n for n, c in policy.decision_types.items() if c.spec.costs)
        if "decision_type" in calibrate and calibratable:  # the types whose costs are set
            calibrate["decision_type"]["enum"] = calibratable
        errors = {  # ErrorResponse: every other route documents it, so it is a component
            "description": "Error",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
            },
        }
        document["paths"]["/v1/chat/completions"] = _chat_completions(errors, policy)
        for path, operations in document["paths"].items():
            limit = body_limits.get(path, default_body_limit)
            for method, operation in operations.items():
                if method in ("post", "put", "patch", "delete"):
                    operation.setdefault("responses", {})["413"] = {
                        **errors,
                        "description": f"The body is larger than {limit:,} bytes",
                    }
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
