"""A decision type made ready to run: its input schema as a pydantic model and its rules
compiled to CEL programs (a safe, non-Turing-complete expression language; never `eval`).

All rules of a decision type are also compiled into one list expression, so one call
converts the inputs once and evaluates every rule (measured: 6 rules in 38 µs combined
against 25 µs for each rule alone)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import cel
import jsonschema
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from warden.canonical import canonical_json, content_id
from warden.errors import PolicyError, RequestError
from warden.policy.errors_format import dotted, line_of
from warden.policy.model import DecisionType, InputField, ProposalCheck, Rule, Tool, ToolLimit
from warden.prompts.registry import PromptError, PromptTemplate, get_template


class DocumentInput(BaseModel):
    """An uploaded document inside `inputs`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=255)
    content_type: Literal["application/pdf", "text/plain", "message/rfc822"]
    data_base64: str = Field(min_length=1)


_PY_TYPES: dict[str, type] = {
    "string": str,
    "number": float,
    "integer": int,
    "boolean": bool,
    "document": DocumentInput,
}
_SAMPLES: dict[str, Any] = {
    "string": "XX",
    "number": 1.5,
    "integer": 1,
    "boolean": False,
    "document": {"name": "x.pdf", "content_type": "application/pdf", "data_base64": ""},
}
_JSON_SAMPLES: dict[str, Any] = {
    "string": "XX",
    "number": 1.5,
    "integer": 1,
    "boolean": False,
    "array": [],
    "object": {},
    "null": None,
}


@dataclass(frozen=True)
class LimitOutcome:
    limit: ToolLimit
    passed: bool
    error: str | None = None


@dataclass
class CompiledTool:
    name: str
    spec: Tool
    validator: Any  # a jsonschema validator
    limits: list[Any]

    def schema_errors(self, arguments: Any) -> list[str]:
        return json_schema_errors(self.validator, arguments, "arguments")

    def check_limits(self, activation: dict[str, Any]) -> list[LimitOutcome]:
        return [
            LimitOutcome(limit, passed, error)
            for limit, (passed, error) in zip(
                self.spec.limits, run_checks(self.limits, activation), strict=True
            )
        ]


def json_schema_errors(validator: Any, value: Any, root: str, limit: int = 5) -> list[str]:
    """Up to `limit` JSON Schema errors, each naming its path under `root`."""
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
    return [
        root
        + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
        + f": {error.message}"
        for error in errors[:limit]
    ]


def run_checks(programs: list[Any], activation: dict[str, Any]) -> list[tuple[bool, str | None]]:
    """Evaluate boolean CEL checks: (passed, error); an error never passes."""
    outcomes: list[tuple[bool, str | None]] = []
    for program in programs:
        try:
            value = program.execute(activation)
        except Exception as exc:
            outcomes.append((False, f"{type(exc).__name__}: {exc}"))
            continue
        outcomes.append((value is True, None))
    return outcomes


@dataclass(frozen=True)
class CheckOutcome:
    check: ProposalCheck
    passed: bool
    error: str | None = None


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
    #: the decision type's own section of the policy, content-addressed (`spec_version`)
    spec_version: str = ""
    bands: dict[str, float] = field(default_factory=dict)
    tools: dict[str, CompiledTool] = field(default_factory=dict)
    #: input name → surface ("fields", "text", "document")
    surfaces: dict[str, str] = field(default_factory=dict)
    #: the structured llm call: its prompt template and the proposal's schema validator
    prompt: PromptTemplate | None = None
    output_validator: Any = None
    checks: list[Any] = field(default_factory=list)

    def proposal_errors(self, proposal: Any) -> list[str]:
        """Why a parsed model answer does not match the decision type's output schema."""
        if self.output_validator is None:
            return []
        return json_schema_errors(self.output_validator, proposal, "proposal")

    def check_proposal(self, activation: dict[str, Any]) -> list[CheckOutcome]:
        return [
            CheckOutcome(check, passed, error)
            for check, (passed, error) in zip(
                self.spec.gate, run_checks(self.checks, activation), strict=True
            )
        ]

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

    def sample_activation(self) -> dict[str, Any]:
        return _sample_activation(self.name, self.spec)

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


def _compile_boolean(
    expression: str,
    loc: tuple[int | str, ...],
    sample: dict[str, Any],
    *,
    source: str,
    root: yaml.Node | None,
    declared: dict[str, str],
) -> Any:
    """Compile a CEL expression and prove, on a sample of the declared shapes, that it only
    refers to declared names and yields a boolean. `declared` maps a variable's members'
    owner (e.g. "inputs") to the text listing what it declares, for the error message."""
    where = f"{source}:{line_of(root, loc)}: {dotted(loc)}"
    try:
        program = cel.compile(expression)
    except ValueError as exc:
        raise PolicyError(f"{where}: not a valid CEL expression: {exc}") from None
    unknown = set(program.variables()) - set(sample)
    if unknown:
        raise PolicyError(
            f"{where}: unknown variable(s) {', '.join(sorted(unknown))}; "
            f"this expression may use {', '.join(sorted(sample))}"
        )
    try:
        value = program.execute(sample)
    except KeyError as exc:
        owners = " or ".join(f"{k} (declared: {v})" for k, v in declared.items())
        raise PolicyError(
            f"{where}: refers to {exc.args[0]!r}, which is not declared in {owners}"
        ) from None
    except Exception as exc:
        raise PolicyError(f"{where}: cannot be evaluated: {exc}") from None
    if not isinstance(value, bool):
        raise PolicyError(f"{where}: must be a boolean expression, got {type(value).__name__}")
    return program


def _sample_arguments(schema: dict[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties", {})
    out = {}
    for key, prop in properties.items():
        kind = prop.get("type", "string") if isinstance(prop, dict) else "string"
        if isinstance(kind, list):
            kind = kind[0]
        out[key] = (
            prop.get("enum", [None])[0]
            if isinstance(prop, dict) and "enum" in prop
            else _JSON_SAMPLES.get(kind, "XX")
        )
    return out


def _compile_tool(
    type_name: str,
    name: str,
    tool: Tool,
    sample: dict[str, Any],
    *,
    source: str,
    root: yaml.Node | None,
) -> CompiledTool:
    loc = ("decision_types", type_name, "tools", name, "schema")
    try:
        validator_class = jsonschema.validators.validator_for(tool.schema_)
        validator_class.check_schema(tool.schema_)
    except jsonschema.SchemaError as exc:
        where = f"{source}:{line_of(root, loc)}: {dotted(loc)}"
        raise PolicyError(f"{where}: not a valid JSON Schema: {exc.message}") from None
    args = _sample_arguments(tool.schema_)
    activation = {**sample, "args": args}
    declared_inputs = ", ".join(sorted(sample["inputs"]))
    limits = [
        _compile_boolean(
            limit.when,
            ("decision_types", type_name, "tools", name, "limits", i, "when"),
            activation,
            source=source,
            root=root,
            declared={"args": ", ".join(sorted(args)) or "nothing", "inputs": declared_inputs},
        )
        for i, limit in enumerate(tool.limits)
    ]
    return CompiledTool(name, tool, validator_class(tool.schema_), limits)


#: fields of a decision type that change neither what it decides nor what it answers
_PRESENTATION_FIELDS = {"description", "review", "example_inputs"}


def spec_version(spec: DecisionType) -> str:
    """Content id of what a decision type decides with: its section of the policy as
    validated (defaults filled in, so spelling a default out changes nothing), less its
    description, review-page settings and example inputs. Two policy versions that differ
    only elsewhere (an endpoint's URL, another decision type) give it the same version."""
    section = spec.model_dump(mode="json", by_alias=True, exclude=_PRESENTATION_FIELDS)
    return content_id(canonical_json(section))


def compile_decision_type(
    name: str, spec: DecisionType, *, source: str, root: yaml.Node | None
) -> CompiledDecisionType:
    sample = _sample_activation(name, spec)
    declared = {"inputs": ", ".join(sorted(spec.inputs))}
    programs = [
        _compile_boolean(
            rule.when,
            ("decision_types", name, "rules", index, "when"),
            sample,
            source=source,
            root=root,
            declared=declared,
        )
        for index, rule in enumerate(spec.rules)
    ]
    combined = cel.compile("[" + ", ".join(f"({r.when})" for r in spec.rules) + "]")
    bands = spec.bands.model_dump()
    compiled = CompiledDecisionType(
        name=name,
        spec=spec,
        input_model=_input_model(name, spec.inputs),
        programs=programs,
        combined=combined,
        rules_version=content_id(canonical_json([r.model_dump() for r in spec.rules])),
        thresholds_version=content_id(canonical_json({"decision_type": name, "bands": bands})),
        spec_version=spec_version(spec),
        bands=bands,
        tools={
            tool_name: _compile_tool(name, tool_name, tool, sample, source=source, root=root)
            for tool_name, tool in spec.tools.items()
        },
        surfaces={key: f.input_surface for key, f in spec.inputs.items()},
    )
    if spec.llm is not None and spec.llm.mode == "structured":
        _compile_llm(compiled, sample, source=source, root=root)
    if spec.example_inputs is not None:
        try:
            compiled.validate_inputs(spec.example_inputs)
        except RequestError as exc:
            loc = ("decision_types", name, "example_inputs")
            raise PolicyError(
                f"{source}:{line_of(root, loc)}: {dotted(loc)}: {exc.message}"
            ) from None
    return compiled


def _compile_llm(
    compiled: CompiledDecisionType,
    sample: dict[str, Any],
    *,
    source: str,
    root: yaml.Node | None,
) -> None:
    """Load the prompt template (it must render with the declared inputs), check the output
    schema, and compile the gate's checks over `proposal` and `inputs`."""
    name, spec = compiled.name, compiled.spec
    assert spec.llm is not None and spec.llm.output_schema is not None
    base = ("decision_types", name, "llm")
    try:
        template = get_template(str(spec.llm.prompt))
        template.render(sample["inputs"], ["sample context"])
    except PromptError as exc:
        where = f"{source}:{line_of(root, (*base, 'prompt'))}: {dotted((*base, 'prompt'))}"
        raise PolicyError(f"{where}: {exc}") from None
    schema = spec.llm.output_schema
    try:
        validator_class = jsonschema.validators.validator_for(schema)
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as exc:
        loc = (*base, "output_schema")
        where = f"{source}:{line_of(root, loc)}: {dotted(loc)}"
        raise PolicyError(f"{where}: not a valid JSON Schema: {exc.message}") from None
    proposal = _sample_arguments(schema)
    activation = {**sample, "proposal": proposal}
    declared = {
        "proposal": ", ".join(sorted(proposal)) or "nothing",
        "inputs": ", ".join(sorted(sample["inputs"])),
    }
    compiled.prompt = template
    compiled.output_validator = validator_class(schema)
    compiled.checks = [
        _compile_boolean(
            check.when,
            ("decision_types", name, "gate", i, "when"),
            activation,
            source=source,
            root=root,
            declared=declared,
        )
        for i, check in enumerate(spec.gate)
    ]
