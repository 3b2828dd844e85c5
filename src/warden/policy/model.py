"""The policy file's schema. Every model forbids unknown keys, so a typo fails at load
with the exact key path instead of being silently ignored."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
Surface = Literal["fields", "text", "document", "tool_args"]
Band = Literal["auto_approve", "review", "auto_decline"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class InputField(Strict):
    """One input a decision type accepts. Strings are `fields` unless marked as `text`
    (free text a person or a model wrote, checked for injection); a `document` input is an
    uploaded file (`{name, content_type, data_base64}`) on the `document` surface."""

    type: Literal["string", "number", "integer", "boolean", "document"]
    surface: Literal["fields", "text", "document"] | None = None
    required: bool = True
    description: str = ""
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    lt: float | None = None
    max_length: int | None = Field(default=None, ge=1)
    pattern: str | None = None
    enum: list[str] | None = None

    @model_validator(mode="after")
    def _pattern_compiles(self) -> InputField:
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from exc
        numeric = (self.gt, self.ge, self.le, self.lt)
        if self.type not in ("number", "integer") and any(b is not None for b in numeric):
            raise ValueError("gt/ge/le/lt only apply to number and integer inputs")
        if self.type != "string" and (self.pattern or self.enum or self.max_length):
            raise ValueError("pattern/enum/max_length only apply to string inputs")
        if self.surface == "text" and self.type != "string":
            raise ValueError("only string inputs can be on the text surface")
        if (self.surface == "document") != (self.type == "document") and self.surface:
            raise ValueError("document inputs are on the document surface, and only they")
        return self

    @property
    def input_surface(self) -> str:
        if self.type == "document":
            return "document"
        return self.surface or "fields"


class Rule(Strict):
    """A deterministic rule: a CEL expression over `inputs`, `jurisdiction` and
    `decision_type`. When it is true the rule fires: it adds `score` to the risk score
    (noisy-OR) and, if `action` says so, forces at least that band."""

    id: Identifier
    when: str = Field(min_length=1)
    score: float = Field(default=0.0, ge=0.0, le=1.0)
    action: Literal["none", "review", "decline"] = "none"
    reason: str = Field(min_length=1)


class Bands(Strict):
    """Static thresholds on the risk score: at or below `approve_at_or_below` is
    auto-approved, at or above `decline_at_or_above` auto-declined, between goes to review."""

    approve_at_or_below: float = Field(ge=0.0, le=1.0)
    decline_at_or_above: float = Field(ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Bands:
        if self.approve_at_or_below >= self.decline_at_or_above:
            raise ValueError(
                "approve_at_or_below must be lower than decline_at_or_above "
                f"(got {self.approve_at_or_below} and {self.decline_at_or_above})"
            )
        return self


class Costs(Strict):
    """Cost of each kind of outcome, in the policy's currency; used to set thresholds."""

    false_approve: float = Field(ge=0)
    false_decline: float = Field(ge=0)
    review: float = Field(ge=0)


class ToolLimit(Strict):
    """A deterministic check on a proposed tool call: a CEL expression over `args` and
    `inputs` that must be true."""

    when: str = Field(min_length=1)
    message: str = Field(min_length=1)


class Tool(Strict):
    """An allow-listed tool: its arguments must match `schema` (JSON Schema) and every
    limit. Tool calls are verified here; nothing runs before the deterministic gate."""

    description: str = ""
    schema_: dict[str, Any] = Field(alias="schema")
    limits: list[ToolLimit] = Field(default_factory=list)


Action = Literal["review", "refuse"]
PiiEntity = Literal[
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "SWIFT_BIC",
    "BANK_ACCOUNT",
]


class TextGuard(Strict):
    injection_threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    on_hit: Action = "review"


class DocumentGuard(Strict):
    injection_threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    on_hit: Action = "review"
    #: what hidden text or active content (JavaScript, embedded files) does on its own
    on_hidden_content: Action = "review"
    #: hidden findings at or above this score are hits (visible form values score 0.6, a
    #: likely OCR layer 0.7; invisible text, JavaScript, embedded files 1.0)
    hidden_min_score: float = Field(default=0.9, gt=0.0, le=1.0)
    max_bytes: int = Field(default=10_000_000, ge=1_000)
    max_pages: int = Field(default=100, ge=1)


class ToolArgsGuard(Strict):
    injection_threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    #: a call that fails its schema, a limit, or the injection check
    on_hit: Action = "refuse"


def _all_pii_entities() -> list[PiiEntity]:
    return list(get_args(PiiEntity))


class OutputGuard(Strict):
    pii: Literal["redact", "review", "off"] = "redact"
    pii_entities: list[PiiEntity] = Field(default_factory=_all_pii_entities)
    anomaly: Literal["review", "off"] = "review"
    canary: Literal["review", "refuse"] = "review"


class Guard(Strict):
    """Which validators run on which surface, their thresholds, and the action on a hit.
    Whatever the action, flagged input never reaches auto-approve."""

    text: TextGuard = Field(default_factory=TextGuard)
    document: DocumentGuard = Field(default_factory=DocumentGuard)
    tool_args: ToolArgsGuard = Field(default_factory=ToolArgsGuard)
    output: OutputGuard = Field(default_factory=OutputGuard)


EndpointName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]*$", max_length=64)]
Zone = Annotated[str, Field(pattern=r"^[A-Z]{2,3}$")]
Wildcard = Literal["*"]


class LlmSpec(Strict):
    """How a decision type calls a model. `structured`: a prompt template from the prompt
    registry rendered with the inputs, the answer parsed against `output_schema` (a
    proposal the `gate` checks). `chat`: the OpenAI-compatible front door's messages are
    sent as they came (after the input guard), the answer is the outward text."""

    mode: Literal["structured", "chat"] = "structured"
    prompt: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")] | None = None
    #: the data class of this decision type's model calls unless the request names one
    data_class: Identifier = "personal"
    output_schema: dict[str, Any] | None = None
    max_tokens: int = Field(default=512, ge=1, le=32_000)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)

    @model_validator(mode="after")
    def _structured_needs(self) -> LlmSpec:
        if self.mode == "structured" and (self.prompt is None or self.output_schema is None):
            raise ValueError("a structured llm call needs `prompt` and `output_schema`")
        return self


class ProposalCheck(Strict):
    """A deterministic check on a model's proposal: a CEL expression over `proposal` and
    `inputs` that must be true; when it is false the decision goes to a person."""

    id: Identifier
    when: str = Field(min_length=1)
    message: str = Field(min_length=1)


class DecisionTypeReview(Strict):
    """How people review this decision type: four eyes above a limit, and the wording of
    the label a reviewer gives (positive = the risk the score estimates was real)."""

    #: a numeric input; above `four_eyes_above` a second, different reviewer must agree
    four_eyes_field: Identifier | None = None
    four_eyes_above: float | None = Field(default=None, ge=0)
    positive_label: str = Field(default="Positive", min_length=1, max_length=40)
    negative_label: str = Field(default="Negative", min_length=1, max_length=40)

    @model_validator(mode="after")
    def _both_or_neither(self) -> DecisionTypeReview:
        if (self.four_eyes_field is None) != (self.four_eyes_above is None):
            raise ValueError("four_eyes_field and four_eyes_above go together (set both)")
        return self


class DecisionType(Strict):
    description: str = ""
    surfaces: list[Surface] = Field(default_factory=lambda: list[Surface](["fields"]), min_length=1)
    inputs: dict[Identifier, InputField] = Field(min_length=1)
    rules: list[Rule] = Field(default_factory=list)
    bands: Bands
    costs: Costs | None = None
    #: a registered scoring model, `name@alias` (e.g. `fraud-lgbm@champion`), loaded once at
    #: start-up; its score joins the rules' score (noisy-OR) and the bands gate calibrates it
    model: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}@[A-Za-z0-9_-]{1,32}$"
    )
    #: threshold calibration: the most the review band may hold, as a share of decisions
    review_capacity: float | None = Field(default=None, gt=0.0, le=1.0)
    guard: Guard = Field(default_factory=Guard)
    tools: dict[Identifier, Tool] = Field(default_factory=dict)
    #: a known-good request's inputs: documentation, and the base `warden redteam` puts
    #: its probes into (checked against the input schema at load)
    example_inputs: dict[str, Any] | None = None
    #: a model call (see LlmSpec); its proposal is checked by `gate` before it is final
    llm: LlmSpec | None = None
    gate: list[ProposalCheck] = Field(default_factory=list)
    review: DecisionTypeReview = Field(default_factory=DecisionTypeReview)

    @model_validator(mode="after")
    def _four_eyes_field_is_numeric(self) -> DecisionType:
        name = self.review.four_eyes_field
        if name is not None:
            spec = self.inputs.get(name)
            if spec is None or spec.type not in ("number", "integer"):
                raise ValueError(
                    f"review.four_eyes_field: {name!r} is not a number or integer input "
                    "of this decision type"
                )
        return self

    @model_validator(mode="after")
    def _unique_rule_ids(self) -> DecisionType:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} appears twice")
            seen.add(rule.id)
        if self.gate and (self.llm is None or self.llm.mode != "structured"):
            raise ValueError("`gate` checks a structured llm proposal: add `llm` (structured)")
        if len({c.id for c in self.gate}) != len(self.gate):
            raise ValueError("gate check ids must be unique")
        if self.llm is not None and self.llm.mode == "chat":
            text = self.inputs.get("user_text")
            if text is None or text.input_surface != "text":
                raise ValueError(
                    "a chat llm decision type declares the input `user_text` "
                    "(type: string, surface: text): the front door puts the user messages there"
                )
        return self


class BreakerSettings(Strict):
    """Circuit breaker: open after `failure_threshold` consecutive failures, stay open
    `open_seconds`, then let one probe through (half-open)."""

    failure_threshold: int = Field(default=3, ge=1, le=100)
    open_seconds: float = Field(default=5.0, gt=0, le=3600)


class Endpoint(Strict):
    """A model endpoint: where it runs (region, zone), what data it may receive and on
    what legal basis, and how to talk to it."""

    kind: Literal["openai_chat", "local_model"]
    base_url: Annotated[str, Field(pattern=r"^https?://[^\s/]+(/[^\s]*)?$")] | None = None
    model: str = Field(min_length=1, max_length=200)
    region: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)]
    zone: Zone
    data_classes: list[Identifier] = Field(min_length=1)
    transfer_basis: Literal["self_hosted", "in_region", "adequacy", "scc", "dpf", "bcr", "consent"]
    timeout_ms: int = Field(default=10_000, ge=10, le=600_000)
    connect_timeout_ms: int = Field(default=1_000, ge=10, le=60_000)
    retries: int = Field(default=1, ge=0, le=5)
    #: name of the environment variable holding the API key (never the key itself)
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    #: GET this for health checks (default: `<base_url>/models`)
    health_url: str | None = None
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)

    @model_validator(mode="after")
    def _kind_fields(self) -> Endpoint:
        if self.kind == "openai_chat" and self.base_url is None:
            raise ValueError("an openai_chat endpoint needs `base_url`")
        if self.kind == "local_model" and self.base_url is not None:
            raise ValueError("a local_model endpoint runs in-process: no `base_url`")
        return self


class Route(Strict):
    """An ordered list of endpoints for requests of this jurisdiction with this data class
    and decision type (`*`: any). The most specific route wins (decision type before data
    class); the first endpoint is the primary, the rest are failovers, in order."""

    data_class: Identifier | Wildcard = "*"
    decision_type: Identifier | Wildcard = "*"
    endpoints: list[EndpointName] = Field(min_length=1)


class Jurisdiction(Strict):
    description: str = ""
    allowed_zones: list[Annotated[str, Field(pattern=r"^[A-Z]{2,3}$")]] = Field(min_length=1)
    on_unavailable: Literal["review", "refuse"] = "review"
    routes: list[Route] = Field(default_factory=list)


ProbedSurface = Literal["text", "document", "tool_args", "output"]
Rate = Annotated[float, Field(ge=0.0, le=1.0)]


def _min_detection() -> dict[ProbedSurface, Rate]:
    return {"text": 0.95, "document": 0.95, "tool_args": 0.95, "output": 0.95}


def _max_fpr() -> dict[ProbedSurface, Rate]:
    return {"text": 0.05, "document": 0.01, "tool_args": 0.01, "output": 0.01}


class RedteamOverride(Strict):
    """One decision type's own red-team thresholds; a surface not named here uses the
    policy-wide value."""

    min_detection_rate: dict[ProbedSurface, Rate] = Field(default_factory=dict)
    max_false_positive_rate: dict[ProbedSurface, Rate] = Field(default_factory=dict)


class RedteamThresholds(Strict):
    """Release gate: `warden redteam` fails when any (decision type, surface) misses these.
    `decision_types` overrides them per decision type (checked against the decision types
    and their surfaces when the policy loads)."""

    min_detection_rate: dict[ProbedSurface, Rate] = Field(default_factory=_min_detection)
    max_false_positive_rate: dict[ProbedSurface, Rate] = Field(default_factory=_max_fpr)
    decision_types: dict[Identifier, RedteamOverride] = Field(default_factory=dict)

    def for_surface(self, decision_type: str, surface: str) -> tuple[float, float]:
        """(minimum detection rate, maximum false-positive rate) for one surface."""
        own = self.decision_types.get(decision_type, RedteamOverride())
        key = cast(ProbedSurface, surface)
        detection = own.min_detection_rate.get(key, self.min_detection_rate.get(key))
        fpr = own.max_false_positive_rate.get(key, self.max_false_positive_rate.get(key))
        defaults = (_min_detection()[key], _max_fpr()[key])
        return (
            defaults[0] if detection is None else detection,
            defaults[1] if fpr is None else fpr,
        )


ReviewRole = Literal["reviewer", "auditor", "admin"]


def _raw_pii_roles() -> list[ReviewRole]:
    return ["admin"]


class ReviewSettings(Strict):
    sla_minutes: int = Field(default=240, ge=1)
    #: a claim locks a case to one reviewer for this long unless released or renewed
    claim_minutes: int = Field(default=30, ge=1, le=24 * 60)
    #: a reviewer's rationale needs at least this many characters
    min_rationale_chars: int = Field(default=10, ge=1, le=1000)
    #: roles that see personal data unmasked on the workbench; everyone else sees it masked
    raw_pii_roles: list[ReviewRole] = Field(default_factory=_raw_pii_roles)
    #: workbench sessions expire after this many hours
    session_hours: int = Field(default=12, ge=1, le=24 * 7)


class Policy(Strict):
    """The whole policy file."""

    policy_format: Literal[1] = 1
    name: str = Field(min_length=1, max_length=100)
    decision_types: dict[Identifier, DecisionType] = Field(min_length=1)
    residency: dict[Annotated[str, Field(pattern=r"^[A-Z]{2,3}$")], Jurisdiction] = Field(
        min_length=1
    )
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    #: the data classes requests may carry (`X-Warden-Data-Class`, `data_class`)
    data_classes: list[Identifier] = Field(
        default_factory=lambda: ["public", "internal", "confidential", "personal"], min_length=1
    )
    endpoints: dict[EndpointName, Endpoint] = Field(default_factory=dict)
    redteam: RedteamThresholds = Field(default_factory=RedteamThresholds)
