"""The OpenAI-compatible front door's logic: a chat-completions body plus the Warden
headers becomes a decision request on a `chat` decision type; the answer is the upstream's
body (after the output guard), and the decision id goes back in `X-Warden-Decision-Id`.

    X-Warden-Jurisdiction   required (unlabeled / unknown: 422, counted, recorded)
    X-Warden-Decision-Type  required; a decision type with `llm: {mode: chat}`
    X-Warden-Data-Class     optional; the decision type's `llm.data_class` by default

A decision that is not auto-approved (review, decline) is answered 409 with its
decision id: no automated answer leaves Warden for it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from warden.auth import Principal
from warden.canonical import request_hash
from warden.errors import RequestError, WardenError
from warden.gateway import Gateway, RefusedError
from warden.pipeline.context import DecisionRequest

JURISDICTION = "X-Warden-Jurisdiction"
DECISION_TYPE = "X-Warden-Decision-Type"
DATA_CLASS = "X-Warden-Data-Class"
_HEADER_FOR_FIELD = {
    "jurisdiction": JURISDICTION,
    "data_class": DATA_CLASS,
    "decision_type": DECISION_TYPE,
}
MAX_MESSAGES = 200


class NotAnsweredError(WardenError):
    """The decision went to review (or was declined): no automated answer."""

    http_status = 409

    def __init__(self, message: str, *, code: str, decision_id: str) -> None:
        super().__init__(message, code=code)
        self.decision_id = decision_id

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "decision_id": self.decision_id}


@dataclass(frozen=True)
class ChatAnswer:
    decision_id: str
    body: bytes  # the upstream's response body (content redacted if the guard said so)
    outcome: str


def _text_of(content: Any, path: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: only text parts are accepted
        texts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise RequestError(
                    f"{path}[{i}]: only text content parts are supported", field=path
                )
            texts.append(str(part.get("text", "")))
        return "\n".join(texts)
    raise RequestError(f"{path}: must be a string or a list of text parts", field=path)


def parse_chat_request(
    payload: Any, headers: Mapping[str, str], gateway: Gateway
) -> DecisionRequest:
    if not isinstance(payload, dict):
        raise RequestError("body: must be a JSON object", field="body")
    if payload.get("stream"):
        raise RequestError("stream: streaming is not supported by Warden", field="stream")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages or len(messages) > MAX_MESSAGES:
        raise RequestError(
            f"messages: must be a non-empty list of at most {MAX_MESSAGES} messages",
            field="messages",
        )
    user_texts = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise RequestError(f"messages[{i}]: must be an object with a role", field="messages")
        text = _text_of(message.get("content", ""), f"messages[{i}].content")
        if message["role"] == "user":
            user_texts.append(text)
    if not user_texts:
        raise RequestError("messages: no user message", field="messages")
    decision_type = headers.get(DECISION_TYPE)
    if not decision_type:
        raise RequestError(f"{DECISION_TYPE}: header is required", field=DECISION_TYPE)
    compiled = gateway.policy.decision_type(decision_type)
    if compiled is None or compiled.spec.llm is None or compiled.spec.llm.mode != "chat":
        chats = [
            n
            for n, c in gateway.policy.decision_types.items()
            if c.spec.llm and c.spec.llm.mode == "chat"
        ]
        raise RequestError(
            f"{DECISION_TYPE}: {decision_type!r} is not a chat decision type "
            f"(this policy has: {', '.join(sorted(chats)) or 'none'})",
            field=DECISION_TYPE,
        )
    data_class = headers.get(DATA_CLASS) or None
    if data_class is not None and data_class not in gateway.policy.policy.data_classes:
        raise RequestError(
            f"{DATA_CLASS}: unknown data class {data_class!r} "
            f"(this policy knows: {', '.join(gateway.policy.policy.data_classes)})",
            field=DATA_CLASS,
        )
    jurisdiction = headers.get(JURISDICTION) or None
    inputs = {"user_text": "\n\n".join(user_texts)}
    meaning = {
        "door": "chat.completions",
        "decision_type": decision_type,
        "jurisdiction": jurisdiction,
        "data_class": data_class,
        "chat": payload,
    }
    return DecisionRequest(
        decision_type,
        jurisdiction,
        inputs,
        None,
        request_hash(meaning),
        None,
        data_class=data_class,
        chat=payload,
    )


async def chat_completion(
    gateway: Gateway, payload: Any, headers: Mapping[str, str], caller: Principal
) -> ChatAnswer:
    request = parse_chat_request(payload, headers, gateway)
    ctx = await gateway.run_request(request, caller)
    try:
        response = gateway.response_for(ctx)
    except RefusedError as exc:
        header = _HEADER_FOR_FIELD.get(exc.field or "")
        if header is not None:  # name the header the caller sent, not the internal field
            message = exc.message.replace(f"{exc.field}:", f"{header}:", 1)
            raise RefusedError(
                message,
                code=exc.code,
                field=header,
                decision_id=exc.decision_id,
                http_status=exc.http_status,
            ) from None
        raise
    if response["outcome"] != "auto_approve" or ctx.llm_response is None:
        raise NotAnsweredError(
            f"decision {response['outcome']}: " + ("; ".join(response["reasons"]) or "-"),
            code=f"decision.{response['outcome']}",
            decision_id=ctx.decision_id,
        )
    llm = ctx.results["llm"]
    body = str(llm["raw_response"]).encode()
    outputs = ctx.results.get("outputs", {})
    if outputs.get("redacted"):
        answer = json.loads(body)
        answer["choices"][0]["message"]["content"] = outputs["text"]
        body = json.dumps(answer, ensure_ascii=False).encode()
    return ChatAnswer(ctx.decision_id, body, response["outcome"])
