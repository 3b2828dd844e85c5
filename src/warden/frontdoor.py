"""The OpenAI-compatible front door's logic: a chat-completions body plus the Warden
headers becomes a decision request on a `chat` decision type; the answer is the upstream's
body (after the output guard), and the decision id goes back in `X-Warden-Decision-Id`.

    X-Warden-Jurisdiction   required (unlabeled / unknown: 422, counted, recorded)
    X-Warden-Decision-Type  required; a decision type with `llm: {mode: chat}`
    X-Warden-Data-Class     optional; the decision type's `llm.data_class` by default
    Idempotency-Key         optional; the same key and body answers the first decision again
                            (from its record: no second model call), a different body is 409

A decision that is not auto-approved (review, decline) is answered 409 with its
decision id: no automated answer leaves Warden for it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from warden.audit.entry import StoredEntry
from warden.audit.record import gate_results
from warden.auth import Permission, Principal
from warden.canonical import NotCanonicalError, request_hash
from warden.errors import RequestError, WardenError
from warden.gateway import Gateway, RefusedError, held_record, response_from_record
from warden.pipeline.context import DecisionRequest

JURISDICTION = "X-Warden-Jurisdiction"
DECISION_TYPE = "X-Warden-Decision-Type"
DATA_CLASS = "X-Warden-Data-Class"
IDEMPOTENCY_KEY = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY = 200
_HEADER_FOR_FIELD = {
    "jurisdiction": JURISDICTION,
    "data_class": DATA_CLASS,
    "decision_type": DECISION_TYPE,
}
MAX_MESSAGES = 200
#: the status of a replayed refusal (the record keeps the code, not the status); a replayed
#: outage stays a 503 — the key is spent, a retry needs a new one
_REFUSAL_STATUS = {"llm.unavailable": 503}


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
    #: answered again from the record of an earlier request with the same Idempotency-Key
    replayed: bool = False


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
    key = headers.get(IDEMPOTENCY_KEY)
    if key is not None and not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        raise RequestError(
            f"{IDEMPOTENCY_KEY}: must be 1 to {MAX_IDEMPOTENCY_KEY} characters",
            field=IDEMPOTENCY_KEY,
        )
    inputs = {"user_text": "\n\n".join(user_texts)}
    meaning = {
        "door": "chat.completions",
        "decision_type": decision_type,
        "jurisdiction": jurisdiction,
        "data_class": data_class,
        "chat": payload,
    }
    try:
        digest = request_hash(meaning)
    except NotCanonicalError as exc:  # name the field of the body, not of `meaning`
        field = exc.path.removeprefix("chat.")
        raise RequestError(f"{field}: {exc.reason}", field=field) from None
    return DecisionRequest(
        decision_type,
        jurisdiction,
        inputs,
        key,
        digest,
        None,
        data_class=data_class,
        chat=payload,
    )


async def chat_completion(
    gateway: Gateway, payload: Any, headers: Mapping[str, str], caller: Principal
) -> ChatAnswer:
    request = parse_chat_request(payload, headers, gateway)
    caller.require(Permission.DECIDE)
    held = gateway.held_for(request, caller)
    if held is not None:
        return _replayed(held, request)
    ctx = await gateway.run_request(request, caller)
    held = gateway.race_winner(ctx)
    if held is not None:
        return _replayed(held, request)
    try:
        response = gateway.response_for(ctx)
    except RefusedError as exc:
        raise _named_for_header(exc) from None
    return _answer(
        ctx.decision_id,
        response["outcome"],
        "; ".join(response["reasons"]),
        ctx.results.get("llm"),
        ctx.results.get("outputs", {}),
        replayed=False,
    )


def _replayed(held: StoredEntry, request: DecisionRequest) -> ChatAnswer:
    """The first decision with this key, answered again from its record."""
    record = held_record(held, request, IDEMPOTENCY_KEY)
    gates = gate_results(record)
    stop = record.get("stop") or {}
    if record["outcome"] == "refused":
        raise _named_for_header(
            RefusedError(
                stop.get("message", "refused"),
                code=stop.get("code", "refused"),
                field=stop.get("field"),
                decision_id=record["decision_id"],
                http_status=_REFUSAL_STATUS.get(str(stop.get("code")), 422),
            )
        )
    reasons = response_from_record(record, held.seq, replayed=True)["reasons"]
    return _answer(
        record["decision_id"],
        record["outcome"],
        "; ".join(reasons),
        gates.get("llm"),
        gates.get("outputs", {}),
        replayed=True,
    )


def _named_for_header(exc: RefusedError) -> RefusedError:
    """A refusal about a header names the header the caller sent, not the internal field."""
    header = _HEADER_FOR_FIELD.get(exc.field or "")
    if header is None:
        return exc
    return RefusedError(
        exc.message.replace(f"{exc.field}:", f"{header}:", 1),
        code=exc.code,
        field=header,
        decision_id=exc.decision_id,
        http_status=exc.http_status,
    )


def _answer(
    decision_id: str,
    outcome: str,
    reasons: str,
    llm: dict[str, Any] | None,
    outputs: dict[str, Any],
    *,
    replayed: bool,
) -> ChatAnswer:
    """The caller's answer: the upstream's body (content redacted if the output guard
    redacted it); 409 when the decision is not auto-approved."""
    if outcome != "auto_approve" or not llm or not llm.get("raw_response"):
        raise NotAnsweredError(
            f"decision {outcome}: " + (reasons or "-"),
            code=f"decision.{outcome}",
            decision_id=decision_id,
        )
    body = str(llm["raw_response"]).encode()
    if outputs.get("redacted"):
        answer = json.loads(body)
        answer["choices"][0]["message"]["content"] = outputs["text"]
        body = json.dumps(answer, ensure_ascii=False).encode()
    return ChatAnswer(decision_id, body, outcome, replayed)
