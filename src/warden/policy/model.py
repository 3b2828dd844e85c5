"""The policy file's schema. Every model forbids unknown keys, so a typo fails at load
with the exact key path instead of being silently ignored."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
Surface = Literal["fields", "text", "document", "tool_args"]
Band = Literal["auto_approve", "review", "auto_decline"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputField(Strict):
    """One structured input a decision type accepts."""

    type: Literal["string", "number", "integer", "boolean"]
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
        return self


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


class DecisionType(Strict):
    description: str = ""
    surfaces: list[Surface] = Field(default_factory=lambda: list[Surface](["fields"]), min_length=1)
    inputs: dict[Identifier, InputField] = Field(min_length=1)
    rules: list[Rule] = Field(default_factory=list)
    bands: Bands
    costs: Costs | None = None

    @model_validator(mode="after")
    def _unique_rule_ids(self) -> DecisionType:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} appears twice")
            seen.add(rule.id)
        return self


class Jurisdiction(Strict):
    description: str = ""
    allowed_zones: list[Annotated[str, Field(pattern=r"^[A-Z]{2,3}$")]] = Field(min_length=1)
    on_unavailable: Literal["review", "refuse"] = "review"


class ReviewSettings(Strict):
    sla_minutes: int = Field(default=240, ge=1)


class Policy(Strict):
    """The whole policy file."""

    policy_format: Literal[1] = 1
    name: str = Field(min_length=1, max_length=100)
    decision_types: dict[Identifier, DecisionType] = Field(min_length=1)
    residency: dict[Annotated[str, Field(pattern=r"^[A-Z]{2,3}$")], Jurisdiction] = Field(
        min_length=1
    )
    review: ReviewSettings = Field(default_factory=ReviewSettings)
