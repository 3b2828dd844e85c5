"""An upstream *simulator*: a stand-in for a hosted LLM endpoint that speaks the OpenAI
chat-completions protocol over real HTTP, for tests, demos and benchmarks.

It is not a model. It answers `POST /v1/chat/completions`, `GET /v1/models` and
`GET /health`; with `response_format: json_schema` it fills the schema plausibly from the
prompt (claims triage: reads the claimed amount and description and proposes a triage, a
payout not above the claim, and reasons), deterministically given (seed, request). Latency,
failures (503) and malformed JSON answers are configurable, and it writes its own access
log — one JSON line per request, written before the response leaves — so a test can prove
where requests went without relying on Warden's word.

The server is a lean asyncio protocol over `httptools` (the parser uvicorn uses) on
uvloop: it has to stay far cheaper than the gateways it is benchmarked behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import random
import re
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httptools

from warden.endpoints.http1 import no_delay

DEFAULT_MODEL = "sim-triage-1"
SERVER_NAME = "warden-upstream-simulator"
DECISION_HEADER = b"x-warden-decision-id"
#: a system message starting with this is the scripted answer (only with `scripted`)
SCRIPT_PREFIX = "[simulator-script] "
#: in a script, replaced by the request's other system messages: a model that leaks its
#: system prompt (what the output guard's canary check is for)
SYSTEM_PROMPT_SLOT = "{system_prompt}"
MAX_BODY = 8 * 1024 * 1024

#: claims at or below this amount with no fraud indicators are fast-tracked
FAST_TRACK_LIMIT = 1_000.0
#: claims above this amount are investigated whatever the description says
INVESTIGATE_ABOVE = 10_000.0
FRAUD_HINTS = (
    "no receipt",
    "lost the receipt",
    "cash only",
    "paid in cash",
    "second claim",
    "previous claim",
    "again",
    "urgent",
    "immediately",
    "total loss",
    "no witnesses",
    "no police report",
    "just bought",
    "recently insured",
    "new policy",
    "backdated",
    "gift card",
    "crypto",
    "wire the money",
    "inconsistent",
    "fire",
    "stolen",
)
_AMOUNT = re.compile(
    r"(?:amount|claimed|claim amount|sum)\s*[:=]?\s*(?:(EUR|USD|GBP|CHF|SGD|HKD|€|\$|£)\s*)?"
    r"(-?\d[\d,]*(?:\.\d+)?)\s*(EUR|USD|GBP|CHF|SGD|HKD)?",
    re.IGNORECASE,
)
_HINTS = re.compile(r"\b(" + "|".join(re.escape(h) for h in FRAUD_HINTS) + r")\b")
_DESCRIPTION = re.compile(r"description\s*[:=]\s*(.+)", re.IGNORECASE)
_CURRENCY_SIGNS = {"€": "EUR", "$": "USD", "£": "GBP"}
_LOW_WORDS = ("fast", "auto", "approve", "accept", "simple", "straight", "low", "small", "pay")
_HIGH_WORDS = (
    "investigat",
    "fraud",
    "siu",
    "refer",
    "escalat",
    "decline",
    "reject",
    "deny",
    "suspic",
    "high",
    "large",
)
_MID_WORDS = ("standard", "review", "normal", "medium", "mid", "moderate", "assess", "adjust")
_ROLES = {"system", "user", "assistant", "tool", "developer", "function"}


# ------------------------------------------------------------------------------ config


@dataclass(frozen=True)
class SimulatorConfig:
    region: str
    model: str = DEFAULT_MODEL
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    failure_rate: float = 0.0
    bad_json_rate: float = 0.0
    seed: int = 0
    access_log: Path | None = None
    #: answer with the text of a `SCRIPT_PREFIX` system message when a request carries one
    #: (red-team probes of the output guard: the "model" leaks what the probe scripts)
    scripted: bool = False


class BadRequest(Exception):
    """The request body is not a valid chat-completions request (answered 400)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


# ----------------------------------------------------------------------------- content


@dataclass
class ClaimFacts:
    """What the prompt says about a claim, and the triage the simulator proposes."""

    text: str
    amount: float | None
    currency: str
    description: str
    hints: list[str]
    level: str  # low | medium | high
    payout: float

    @classmethod
    def read(cls, text: str, rng: random.Random) -> ClaimFacts:
        amount: float | None = None
        currency = "EUR"
        match = _AMOUNT.search(text)
        if match:
            with contextlib.suppress(ValueError):
                amount = abs(float(match.group(2).replace(",", "")))
            sign = match.group(1) or match.group(3)
            if sign:
                currency = _CURRENCY_SIGNS.get(sign, sign.upper())
        found = _DESCRIPTION.search(text)
        description = (found.group(1) if found else text).strip()
        lowered = description.lower()
        hints = list(dict.fromkeys(_HINTS.findall(lowered)))
        if hints or (amount is not None and amount > INVESTIGATE_ABOVE):
            level = "high"
        elif amount is not None and amount <= FAST_TRACK_LIMIT:
            level = "low"
        else:
            level = "medium"
        if amount is None or level == "high":
            payout = 0.0
        elif level == "low":
            payout = amount
        else:
            payout = round(amount * rng.choice((0.8, 0.85, 0.9, 0.95, 1.0)), 2)
        return cls(text, amount, currency, description, hints, level, payout)

    def reasons(self) -> list[str]:
        out: list[str] = []
        if self.amount is None:
            out.append("no claimed amount found in the message; referred for a manual look")
        elif self.amount <= FAST_TRACK_LIMIT:
            out.append(
                f"claimed amount {self.amount:,.2f} {self.currency} is within the fast-track "
                f"limit of {FAST_TRACK_LIMIT:,.2f}"
            )
        elif self.amount > INVESTIGATE_ABOVE:
            out.append(
                f"claimed amount {self.amount:,.2f} {self.currency} is above "
                f"{INVESTIGATE_ABOVE:,.2f}: large claims are investigated"
            )
        else:
            out.append(
                f"claimed amount {self.amount:,.2f} {self.currency} is above the fast-track "
                f"limit of {FAST_TRACK_LIMIT:,.2f}"
            )
        out.extend(f"description mentions {hint!r}, a fraud indicator" for hint in self.hints)
        if not self.hints:
            out.append("no fraud indicators in the description")
        if self.amount is not None:
            out.append(
                f"proposed payout {self.payout:,.2f} does not exceed the claimed amount "
                f"{self.amount:,.2f}"
            )
        return out

    def summary(self) -> str:
        triage = {"low": "fast-track", "medium": "standard handling", "high": "investigate"}
        if self.amount is None:
            return f"Simulated answer: {_snippet(self.description)}"
        return (
            f"Simulated triage: {triage[self.level]}. Claimed {self.amount:,.2f} "
            f"{self.currency}, proposed payout {self.payout:,.2f}. " + "; ".join(self.reasons())
        )


def _snippet(text: str, words: int = 12) -> str:
    parts = text.split()
    head = " ".join(parts[:words])
    return f"I received {len(parts)} words: “{head}{' …' if len(parts) > words else ''}”."


class SchemaFiller:
    """Builds a JSON value that satisfies a (practical subset of) JSON Schema: objects,
    arrays, enums, const, numbers with bounds, strings with lengths, required, $ref to
    local $defs, anyOf/oneOf/allOf — filled from the claim facts where names suggest it."""

    def __init__(self, root: dict[str, Any], facts: ClaimFacts, rng: random.Random) -> None:
        self.root = root
        self.facts = facts
        self.rng = rng

    def fill(self, schema: Any, name: str = "", depth: int = 0) -> Any:
        if not isinstance(schema, dict) or depth > 12:
            return self._text(name)
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self._enum(schema["enum"], name)
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                typed = [
                    o for o in options if not (isinstance(o, dict) and o.get("type") == "null")
                ]
                return self.fill((typed or options)[0], name, depth + 1)
        if isinstance(schema.get("allOf"), list):
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                part = self._resolve(part) if isinstance(part, dict) else {}
                for k, v in part.items():
                    if k == "properties":
                        merged.setdefault("properties", {}).update(v)
                    elif k == "required":
                        merged["required"] = [*merged.get("required", []), *v]
                    else:
                        merged.setdefault(k, v)
            return self.fill(merged, name, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = (
                "object" if "properties" in schema else "array" if "items" in schema else "string"
            )
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, name, depth)
        if kind in ("number", "integer"):
            return self._number(schema, name, integer=kind == "integer")
        if kind == "boolean":
            return (
                self.facts.level == "high" if _has(name, _HIGH_WORDS) else self.rng.random() < 0.5
            )
        if kind == "null":
            return None
        return self._string(schema, name)

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while isinstance(schema.get("$ref"), str) and seen < 20:
            ref: str = schema["$ref"]
            target: Any = self.root
            if not ref.startswith("#"):
                return {}
            for part in ref.lstrip("#").strip("/").split("/"):
                if not part:
                    continue
                target = (
                    target.get(part.replace("~1", "/").replace("~0", "~"), {})
                    if isinstance(target, dict)
                    else {}
                )
            schema = target if isinstance(target, dict) else {}
            seen += 1
        return schema

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        out = {key: self.fill(sub, key, depth + 1) for key, sub in (props or {}).items()}
        for key in schema.get("required") or []:
            if isinstance(key, str) and key not in out:
                out[key] = self._text(key)
        return out

    def _array(self, schema: dict[str, Any], name: str, depth: int) -> list[Any]:
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        low = int(schema.get("minItems", 0))
        high = int(schema.get("maxItems", max(low, 5)))
        items = self._resolve(items or {})
        if _has(name, ("reason", "rationale", "explanation", "finding", "factor")) and (
            items.get("type") in (None, "string") and "enum" not in items
        ):
            values: list[Any] = [_fit_length(r, items) for r in self.facts.reasons()]
        else:
            values = [self.fill(items, _singular(name), depth + 1) for _ in range(max(low, 1))]
            if isinstance(items.get("enum"), list):
                pool = [v for v in items["enum"] if v not in values]
                values = list(dict.fromkeys(values)) if schema.get("uniqueItems") else values
                while len(values) < low and pool:
                    values.append(pool.pop(0))
        while len(values) < low:
            values.append(
                values[-1]
                if values and not schema.get("uniqueItems")
                else f"{self._text(name)} ({len(values) + 1})"
            )
        return values[: max(high, 0)]

    def _number(self, schema: dict[str, Any], name: str, *, integer: bool) -> float | int:
        lo = _num(schema.get("minimum"), None)
        hi = _num(schema.get("maximum"), None)
        xlo = _num(schema.get("exclusiveMinimum"), None)
        xhi = _num(schema.get("exclusiveMaximum"), None)
        facts = self.facts
        if _has(name, ("payout", "pay", "settle", "offer", "propos", "reserve")):
            value: float = facts.payout
        elif _has(name, ("claimed", "amount", "sum")):
            value = facts.amount or 0.0
        elif _has(name, ("confidence", "probability", "certainty")):
            value = {"low": 0.9, "medium": 0.75, "high": 0.6}[facts.level]
        elif _has(name, ("risk", "fraud", "score", "suspicion")):
            value = {"low": 0.1, "medium": 0.35, "high": 0.85}[facts.level]
        else:
            a = lo if lo is not None else (xlo if xlo is not None else 0.0)
            b = hi if hi is not None else (xhi if xhi is not None else a + 100.0)
            value = self.rng.uniform(a, b)
        if lo is not None:
            value = max(value, lo)
        if hi is not None:
            value = min(value, hi)
        step = 1.0 if integer else 0.01
        if xlo is not None and value <= xlo:
            value = xlo + step
        if xhi is not None and value >= xhi:
            value = xhi - step
        if integer:
            result = int(value)
            if (lo is not None and result < lo) or (xlo is not None and result <= xlo):
                result += 1
            return result
        return round(value, 2) if abs(value) >= 0.01 or value == 0 else value

    def _string(self, schema: dict[str, Any], name: str) -> str:
        fmt = schema.get("format")
        if fmt == "date":
            text = "2026-01-15"
        elif fmt == "date-time":
            text = "2026-01-15T09:30:00Z"
        elif fmt == "email":
            text = "claims@example.com"
        elif fmt == "uuid":
            text = f"{self.rng.getrandbits(32):08x}-0000-4000-8000-{self.rng.getrandbits(48):012x}"
        elif _has(name, ("currency",)):
            text = self.facts.currency
        elif _has(name, ("triage", "action", "decision", "route", "recommend")):
            text = {"low": "fast_track", "medium": "standard", "high": "investigate"}[
                self.facts.level
            ]
        elif _has(name, ("band",)):
            text = _band_word(self.facts.payout)
        else:
            text = self._text(name)
        return _fit_length(text, schema)

    def _text(self, name: str) -> str:
        if _has(name, ("reason", "rationale", "explanation", "summary", "justification", "note")):
            return "; ".join(self.facts.reasons())
        if _has(name, ("description", "claim")):
            return self.facts.description[:200]
        return self.facts.summary()[:200]

    def _enum(self, values: list[Any], name: str) -> Any:
        strings = [v for v in values if isinstance(v, str)]
        if len(strings) != len(values):
            return values[self.rng.randrange(len(values))]
        if _has(name, ("band", "tier", "bucket", "range")):
            return _pick_band(strings, self.facts.payout)
        return _pick_level(strings, self.facts.level)


def _fit_length(text: str, schema: dict[str, Any]) -> str:
    low = schema.get("minLength", 0)
    high = schema.get("maxLength")
    if isinstance(low, int) and len(text) < low:
        text = text + "." * (low - len(text))
    if isinstance(high, int) and len(text) > high:
        text = text[:high]
    return text


def _has(name: str, words: tuple[str, ...]) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in words)


def _singular(name: str) -> str:
    return name[:-1] if name.endswith("s") else name


def _num(value: Any, default: float | None) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


def _pick_level(values: list[str], level: str) -> str:
    words = {"low": _LOW_WORDS, "medium": _MID_WORDS, "high": _HIGH_WORDS}
    for value in values:
        if _has(value, words[level]) and not any(
            _has(value, words[other]) for other in words if other != level and level != "medium"
        ):
            return value
    for value in values:
        if _has(value, words[level]):
            return value
    index = {"low": 0, "medium": len(values) // 2, "high": len(values) - 1}[level]
    return values[index]


def _band_word(payout: float) -> str:
    if payout <= 0:
        return "none"
    if payout <= FAST_TRACK_LIMIT:
        return "low"
    if payout <= INVESTIGATE_ABOVE:
        return "medium"
    return "high"


def _pick_band(values: list[str], payout: float) -> str:
    ranges: list[tuple[float, float]] = []
    for value in values:
        numbers = [
            float(n.replace(",", "").lower().replace("k", "")) * (1000 if "k" in n.lower() else 1)
            for n in re.findall(r"\d[\d,]*(?:\.\d+)?k?", value, re.IGNORECASE)
        ]
        if not numbers:
            break
        lowered = value.lower()
        if len(numbers) >= 2:
            ranges.append((numbers[0], numbers[1]))
        elif any(s in lowered for s in ("+", ">", "over", "above", "more")):
            ranges.append((numbers[0], float("inf")))
        elif any(s in lowered for s in ("<", "under", "below", "upto", "up to", "less")):
            ranges.append((0.0, numbers[0]))
        else:
            ranges.append((numbers[0], numbers[0]))
    else:
        for value, (lo, hi) in zip(values, ranges, strict=True):
            if lo <= payout <= hi:
                return value
        return values[-1] if payout > max(hi for _, hi in ranges) else values[0]
    word = _band_word(payout)
    synonyms = {
        "none": ("none", "zero", "nil", "no_payout", "no payout"),
        "low": ("low", "small", "minor"),
        "medium": ("medium", "mid", "moderate"),
        "high": ("high", "large", "major"),
    }
    for value in values:
        if _has(value, synonyms[word]):
            return value
    order = ["none", "low", "medium", "high"]
    if word == "none" and len(values) < 4:
        word = "low"
    index = round(order.index(word) / 3 * (len(values) - 1))
    return values[index]


def message_text(messages: list[dict[str, Any]], roles: tuple[str, ...] = ("user",)) -> str:
    parts: list[str] = []
    for message in messages:
        if message.get("role") not in roles:
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(
                p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
            )
    return "\n".join(parts)


def validate_request(body: Any) -> dict[str, Any]:
    """Check the chat-completions body; BadRequest names the offending parameter."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise BadRequest("'model' is required and must be a non-empty string", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' is required and must be a non-empty array", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise BadRequest(f"messages[{i}] must be an object", f"messages[{i}]")
        if message.get("role") not in _ROLES:
            raise BadRequest(
                f"messages[{i}].role must be one of {sorted(_ROLES)}", f"messages[{i}].role"
            )
        content = message.get("content")
        if not isinstance(content, str | list) and not (
            content is None and message["role"] == "assistant"
        ):
            raise BadRequest(
                f"messages[{i}].content must be a string or an array of parts",
                f"messages[{i}].content",
            )
    fmt = body.get("response_format")
    if fmt is not None:
        if not isinstance(fmt, dict) or fmt.get("type") not in (
            "text",
            "json_object",
            "json_schema",
        ):
            raise BadRequest(
                "response_format.type must be 'text', 'json_object' or 'json_schema'",
                "response_format.type",
            )
        if fmt["type"] == "json_schema":
            spec = fmt.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                raise BadRequest(
                    "response_format.json_schema.name is required", "response_format.json_schema"
                )
            if not isinstance(spec.get("schema", {}), dict):
                raise BadRequest(
                    "response_format.json_schema.schema must be an object",
                    "response_format.json_schema.schema",
                )
    return body


@dataclass
class Answer:
    content: str
    finish_reason: str
    is_json: bool


def answer(body: dict[str, Any], seed: int, model: str, *, scripted: bool = False) -> Answer:
    """The assistant message for a validated request, deterministic given (seed, request)."""
    messages: list[dict[str, Any]] = body["messages"]
    if scripted:
        systems = [
            str(m["content"])
            for m in messages
            if m.get("role") == "system" and isinstance(m.get("content"), str)
        ]
        for content in systems:
            if content.startswith(SCRIPT_PREFIX):
                others = "\n".join(c for c in systems if not c.startswith(SCRIPT_PREFIX))
                script = content[len(SCRIPT_PREFIX) :].replace(SYSTEM_PROMPT_SLOT, others)
                return Answer(script, "stop", False)
    key = json.dumps(
        [seed, messages, body.get("response_format")], sort_keys=True, default=str
    ).encode()
    rng = random.Random(hashlib.sha256(key).digest())
    facts = ClaimFacts.read(message_text(messages) or message_text(messages, tuple(_ROLES)), rng)
    fmt = body.get("response_format") or {"type": "text"}
    if fmt["type"] == "json_schema":
        schema = fmt["json_schema"].get("schema") or {"type": "object"}
        value = SchemaFiller(schema, facts, rng).fill(schema)
        return Answer(json.dumps(value, ensure_ascii=False), "stop", True)
    if fmt["type"] == "json_object":
        if facts.amount is not None:
            value = {
                "triage": {"low": "fast_track", "medium": "standard", "high": "investigate"}[
                    facts.level
                ],
                "payout_band": _band_word(facts.payout),
                "proposed_payout": facts.payout,
                "reasons": facts.reasons(),
            }
        else:
            value = {"answer": facts.summary(), "model": model}
        return Answer(json.dumps(value, ensure_ascii=False), "stop", True)
    text = facts.summary()
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and limit > 0 and len(text) > limit * 4:
        return Answer(text[: limit * 4], "length", False)
    return Answer(text, "stop", False)


def break_json(text: str) -> str:
    """A malformed rendering of a JSON answer: cut off mid-way, as a truncated model reply."""
    return text[: max(1, min(len(text) - 1, len(text) // 2))]


def count_tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


# ------------------------------------------------------------------------------- HTTP


_STATUS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    413: b"Payload Too Large",
    503: b"Service Unavailable",
}


def error_body(message: str, kind: str, code: str, param: str | None = None) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": kind, "param": param, "code": code}}
    ).encode()


@dataclass
class Reply:
    status: int
    body: bytes
    model: str | None = None
    content_type: bytes = b"application/json"


@dataclass
class Prepared:
    """A validated request and its answer (the parts that do not change per request)."""

    requested_model: str
    stream: bool
    include_usage: bool
    answer: Answer
    prompt_tokens: int
    tails: dict[bool, bytes] = field(default_factory=dict)  # rendered body after "created"


@dataclass
class Simulator:
    """The request handler and its state (counters, the random stream for failures and
    latency, the access log)."""

    config: SimulatorConfig
    _rng: random.Random = field(init=False)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _log_fd: int | None = field(default=None, init=False)
    _nonce: str = field(default_factory=lambda: os.urandom(4).hex())
    _cache: dict[bytes, Prepared] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.config.seed)
        if self.config.access_log is not None:
            self.config.access_log.parent.mkdir(parents=True, exist_ok=True)
            self._log_fd = os.open(
                self.config.access_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
            )
        header = f"{SERVER_NAME}; region={self.config.region}".encode()
        self._fixed_headers = (
            b"server: " + SERVER_NAME.encode() + b"\r\nx-simulator: " + header + b"\r\n"
        )

    def close(self) -> None:
        if self._log_fd is not None:
            os.close(self._log_fd)
            self._log_fd = None

    def request_id(self) -> str:
        return f"simreq_{self._nonce}{next(self._ids):08x}"

    def delay(self) -> float:
        cfg = self.config
        if cfg.latency_ms <= 0 and cfg.latency_jitter_ms <= 0:
            return 0.0
        ms = cfg.latency_ms
        if cfg.latency_jitter_ms > 0:
            ms += self._rng.uniform(-cfg.latency_jitter_ms, cfg.latency_jitter_ms)
        return max(0.0, ms) / 1000.0

    def handle(self, method: bytes, path: bytes, body: bytes, request_id: str) -> Reply:
        if path == b"/v1/chat/completions":
            if method != b"POST":
                return Reply(405, error_body("use POST", "invalid_request_error", "method"))
            return self.chat(body, request_id)
        if path in (b"/health", b"/v1/health"):
            return Reply(
                200,
                json.dumps(
                    {
                        "status": "ok",
                        "simulator": True,
                        "region": self.config.region,
                        "model": self.config.model,
                    }
                ).encode(),
            )
        if path == b"/v1/models":
            return Reply(
                200,
                json.dumps(
                    {
                        "object": "list",
                        "data": [
                            {
                                "id": self.config.model,
                                "object": "model",
                                "created": 1_767_225_600,
                                "owned_by": "warden-simulator",
                            }
                        ],
                    }
                ).encode(),
            )
        return Reply(
            404,
            error_body(
                f"no route {path.decode(errors='replace')} on the simulator",
                "invalid_request_error",
                "not_found",
            ),
        )

    def prepare(self, raw: bytes) -> Prepared:
        """Parse, validate and answer a body; cached by its bytes (answers are
        deterministic given the seed and the request, so a repeat costs a dict lookup)."""
        prepared = self._cache.get(raw)
        if prepared is None:
            body = validate_request(json.loads(raw))
            options = body.get("stream_options")
            prepared = Prepared(
                requested_model=body["model"],
                stream=bool(body.get("stream")),
                include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
                answer=answer(
                    body, self.config.seed, self.config.model, scripted=self.config.scripted
                ),
                prompt_tokens=sum(
                    count_tokens(message_text([m], tuple(_ROLES))) + 3 for m in body["messages"]
                ),
            )
            if len(self._cache) >= 16384:
                self._cache.clear()
            self._cache[raw] = prepared
        return prepared

    def chat(self, raw: bytes, request_id: str) -> Reply:
        try:
            prepared = self.prepare(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            return Reply(
                400,
                error_body(
                    f"request body is not valid JSON: {exc}",
                    "invalid_request_error",
                    "invalid_json",
                ),
            )
        except BadRequest as exc:
            return Reply(
                400, error_body(exc.message, "invalid_request_error", "invalid_value", exc.param)
            )
        cfg = self.config
        requested = prepared.requested_model
        if cfg.failure_rate > 0 and self._rng.random() < cfg.failure_rate:
            return Reply(
                503,
                error_body(
                    f"simulated upstream failure in {cfg.region} (failure rate {cfg.failure_rate})",
                    "server_error",
                    "simulator_unavailable",
                ),
                requested,
            )
        result = prepared.answer
        broken = result.is_json and cfg.bad_json_rate > 0 and self._rng.random() < cfg.bad_json_rate
        content = break_json(result.content) if broken else result.content
        usage = {
            "prompt_tokens": prepared.prompt_tokens,
            "completion_tokens": count_tokens(content),
            "total_tokens": prepared.prompt_tokens + count_tokens(content),
        }
        completion_id = f"chatcmpl-sim-{request_id[7:]}"
        created = int(time.time())
        if prepared.stream:
            return Reply(
                200,
                sse_chunks(
                    completion_id,
                    created,
                    cfg.model,
                    content,
                    result.finish_reason,
                    usage if prepared.include_usage else None,
                ),
                requested,
                b"text/event-stream",
            )
        tail = prepared.tails.get(broken)
        if tail is None:
            choices = [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": result.finish_reason,
                }
            ]
            tail = json.dumps(
                {
                    "model": cfg.model,
                    "system_fingerprint": f"sim-{cfg.region}",
                    "choices": choices,
                    "usage": usage,
                },
                ensure_ascii=False,
            ).encode()[1:]
            prepared.tails[broken] = tail
        head = b'{"id": "%s", "object": "chat.completion", "created": %d, ' % (
            completion_id.encode(),
            created,
        )
        return Reply(200, head + tail, requested)

    def log(
        self,
        request_id: str,
        decision_id: str | None,
        path: bytes,
        status: int,
        latency_ms: float,
        model: str | None,
    ) -> None:
        if self._log_fd is None:
            return
        line = json.dumps(
            {
                "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "request_id": request_id,
                "decision_id": decision_id,
                "region": self.config.region,
                "path": path.decode(errors="replace"),
                "status": status,
                "latency_ms": round(latency_ms, 3),
                "model": model,
            }
        )
        os.write(self._log_fd, line.encode() + b"\n")  # unbuffered: survives kill -9

    def render(self, reply: Reply, request_id: str, keep_alive: bool) -> bytes:
        head = b"HTTP/1.1 %d %s\r\n" % (reply.status, _STATUS.get(reply.status, b"Unknown"))
        return b"".join(
            (
                head,
                self._fixed_headers,
                b"x-request-id: ",
                request_id.encode(),
                b"\r\ncontent-type: ",
                reply.content_type,
                b"\r\ncontent-length: ",
                str(len(reply.body)).encode(),
                b"\r\nconnection: keep-alive\r\n\r\n"
                if keep_alive
                else b"\r\nconnection: close\r\n\r\n",
                reply.body,
            )
        )


def sse_chunks(
    completion_id: str,
    created: int,
    model: str,
    content: str,
    finish_reason: str,
    usage: dict[str, int] | None,
) -> bytes:
    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    step = max(1, len(content) // 3 + 1)
    events = [chunk({"role": "assistant", "content": ""}, None)]
    events += [
        chunk({"content": content[i : i + step]}, None) for i in range(0, len(content), step)
    ]
    events.append(chunk({}, finish_reason))
    if usage is not None:
        events.append({**chunk({}, None), "choices": [], "usage": usage})
    out = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    return out + b"data: [DONE]\n\n"


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection. Responses leave in request order (a delayed
    response holds back the ones pipelined after it)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.loop = asyncio.get_event_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.pending: deque[list[bytes | None]] = deque()
        self.closing = False
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.decision_id: str | None = None
        self.expect_continue = False
        self.body: list[bytes] = []
        self.size = 0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        no_delay(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            self._fail(400, f"malformed HTTP request: {exc}")

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == DECISION_HEADER:
            self.decision_id = value.decode("latin-1")
        elif lowered == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True

    def on_headers_complete(self) -> None:
        if self.expect_continue and self.transport is not None and not self.pending:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size <= MAX_BODY:
            self.body.append(body)

    def on_message_complete(self) -> None:
        sim = self.sim
        started = time.perf_counter()
        request_id = sim.request_id()
        path = self.url.split(b"?", 1)[0]
        keep_alive = bool(self.parser.should_keep_alive())
        if self.size > MAX_BODY:
            reply = Reply(
                413, error_body("request body too large", "invalid_request_error", "too_large")
            )
            keep_alive = False
        else:
            reply = sim.handle(self.parser.get_method(), path, b"".join(self.body), request_id)
        slot: list[bytes | None] = [None]
        self.pending.append(slot)
        decision_id = self.decision_id
        delay = sim.delay() if path == b"/v1/chat/completions" else 0.0

        def send() -> None:
            sim.log(
                request_id,
                decision_id,
                path,
                reply.status,
                (time.perf_counter() - started) * 1000,
                reply.model,
            )
            slot[0] = sim.render(reply, request_id, keep_alive)
            self._flush(close=not keep_alive)

        if delay > 0:
            self.loop.call_later(delay, send)
        else:
            send()

    def _flush(self, close: bool) -> None:
        while self.pending and self.pending[0][0] is not None:
            data = self.pending.popleft()[0]
            if self.transport is not None and not self.closing:
                self.transport.write(data)  # type: ignore[arg-type]
        if close and self.transport is not None and not self.pending:
            self.closing = True
            self.transport.close()

    def _fail(self, status: int, message: str) -> None:
        if self.transport is not None and not self.closing:
            reply = Reply(status, error_body(message, "invalid_request_error", "bad_http"))
            self.transport.write(self.sim.render(reply, self.sim.request_id(), False))
            self.closing = True
            self.transport.close()


async def _run(sim: Simulator, host: str, port: int, ready: Callable[[], None] | None) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Connection(sim), host, port, reuse_address=True, backlog=2048
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready()
    async with server:
        await stop.wait()


def serve(
    config: SimulatorConfig,
    host: str = "127.0.0.1",
    port: int = 8100,
    ready: Callable[[], None] | None = None,
) -> None:
    """Run the simulator until SIGTERM/SIGINT."""
    sim = Simulator(config)
    try:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
            asyncio.run(_run(sim, host, port, ready))
        else:
            uvloop.run(_run(sim, host, port, ready))
    finally:
        sim.close()
