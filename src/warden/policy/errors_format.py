"""Turn pydantic validation errors on a YAML document into one precise line each:
`file:line: key.path: what was expected (got …)`."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from warden.errors import RequestError

Loc = tuple[int | str, ...]


def dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def line_of(root: yaml.Node | None, loc: Loc) -> int | None:
    """1-based line of the YAML node at `loc` (or of its nearest existing parent)."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = None
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    found = (key_node, value_node)
                    break
            if found is None:
                return line
            line = found[0].start_mark.line + 1
            node = found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _unwrap(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else annotation
    return annotation


def model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The pydantic model class that governs the mapping at `loc`, if any."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
            continue
        origin = typing.get_origin(current)
        if origin in (dict, list):
            current = typing.get_args(current)[-1]
            continue
        return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def describe(error: dict[str, Any], schema: type[BaseModel]) -> str:
    loc: Loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = model_at(schema, loc[:-1])
        allowed = sorted(parent.model_fields) if parent is not None else []
        key = str(loc[-1])
        hint = difflib.get_close_matches(key, allowed, n=1)
        msg = f"unknown key {key!r}"
        if hint:
            msg += f" (did you mean {hint[0]!r}?)"
        if allowed:
            msg += f"; allowed keys: {', '.join(allowed)}"
        return msg
    if kind == "missing":
        return "required key is missing"
    message = str(error["msg"])
    if (
        "input" in error
        and kind not in ("model_type", "dict_type")
        and not isinstance(error["input"], dict | list)
    ):
        message += f" (got {error['input']!r})"
    return message


def format_validation_error(
    exc: ValidationError, schema: type[BaseModel], source: str, root: yaml.Node | None
) -> list[str]:
    lines = []
    for error in exc.errors():
        loc: Loc = tuple(error["loc"])
        line = line_of(root, loc)
        where = f"{source}:{line}" if line is not None else source
        lines.append(f"{where}: {dotted(loc)}: {describe(dict(error), schema)}")
    return lines


def request_error(error: Any, *, allowed: str | None = None) -> tuple[str, str]:
    """`(path, message)` for the first pydantic error of a request body (HTTP or Python
    API): the field path, then what is wrong with it; `allowed` lists the body's keys for
    an unknown-field error."""
    loc = tuple(p for p in error["loc"] if p != "body")
    path = dotted(loc) if loc else "body"
    kind = error["type"]
    if kind == "json_invalid":
        return path, f"body: not valid JSON ({error.get('ctx', {}).get('error', 'parse error')})"
    if kind == "model_type" and not loc:
        return path, "request body must be a JSON object"
    if kind == "missing":
        return path, f"{path}: required field is missing"
    if kind == "extra_forbidden":
        return path, f"{path}: unknown field" + (f" (allowed: {allowed})" if allowed else "")
    return path, f"{path}: {error['msg']}"


Body = TypeVar("Body", bound=BaseModel)


def validated_body(model: type[Body], payload: Any) -> Body:
    """`payload` as `model`, or a `RequestError` (422) naming the first wrong field (an
    unknown field's message lists the body's keys)."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        allowed = ", ".join(model.model_fields)
        path, message = request_error(exc.errors()[0], allowed=allowed)
        raise RequestError(message, field=path) from None
