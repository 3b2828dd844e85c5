"""A `local_model` endpoint: a small deterministic model that runs in-process (no network,
no weights). It answers in the OpenAI chat-completion shape so the rest of the pipeline
treats it like any endpoint. It is deliberately cautious: for a structured answer it fills
the schema with the most conservative choices (the last enum value, the smallest number),
so the deterministic gate sends its proposals to a person; for chat it restates the
question. Useful as an in-region fallback that never moves data anywhere."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any


def _fill(schema: Any, depth: int = 0) -> Any:
    if not isinstance(schema, dict) or depth > 8:
        return None
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][-1]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {k: _fill(v, depth + 1) for k, v in props.items()}
    if kind == "array":
        count = int(schema.get("minItems", 1))
        return [_fill(schema.get("items", {"type": "string"}), depth + 1) for _ in range(count)]
    if kind in ("number", "integer"):
        low = schema.get("minimum", 0)
        if "exclusiveMinimum" in schema:
            low = schema["exclusiveMinimum"] + 1
        return int(low) if kind == "integer" else float(low)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return "local model: no automated assessment; referred to a person"


def _text_of(messages: list[dict[str, Any]]) -> str:
    return " ".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")


def complete(body: dict[str, Any], model: str) -> dict[str, Any]:
    """A chat.completion for `body`, a pure function of it."""
    messages = body.get("messages") or []
    fmt = body.get("response_format") or {}
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema", {})
        content = json.dumps(_fill(schema), separators=(",", ":"))
    else:
        words = _text_of(messages).split()
        content = "Local model (no external call): you asked about " + " ".join(words[:24])
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]
    return {
        "id": f"chatcmpl-local-{digest}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(content.split()),
            "total_tokens": prompt_tokens + len(content.split()),
        },
    }
