"""Prompt templates in files: `templates/<id>.yaml` with a `system` and a `user` message,
rendered with the request's validated inputs (and retrieved context, if any) by a
sandboxed Jinja2 environment (no attribute access to Python internals, undefined names
are errors). A template's version is the SHA-256 of its file's bytes; the audit store keeps
every version content-addressed, so a record's template can be fetched again byte for
byte."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from warden.canonical import content_id

TEMPLATES = Path(__file__).parent / "templates"
_ENV = SandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False
)


class PromptError(ValueError):
    pass


@dataclass(frozen=True)
class PromptTemplate:
    id: str
    version: str
    raw: bytes
    system: Any  # a compiled jinja2 Template
    user: Any

    def render(
        self, inputs: dict[str, Any], context: list[str] | None = None
    ) -> list[dict[str, str]]:
        """The chat messages for one request."""
        values = {"inputs": inputs, "context": context or []}
        try:
            return [
                {"role": "system", "content": self.system.render(values).strip()},
                {"role": "user", "content": self.user.render(values).strip()},
            ]
        except TemplateError as exc:
            raise PromptError(f"prompt {self.id}: {exc}") from None

    def ref(self) -> dict[str, str]:
        return {"id": self.id, "version": self.version}


def parse_template(template_id: str, raw: bytes) -> PromptTemplate:
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PromptError(f"prompt {template_id}: not a YAML file: {exc}") from None
    if not isinstance(data, dict) or set(data) - {"description", "system", "user"}:
        raise PromptError(f"prompt {template_id}: keys are description, system, user")
    if not isinstance(data.get("system"), str) or not isinstance(data.get("user"), str):
        raise PromptError(f"prompt {template_id}: `system` and `user` must be strings")
    try:
        system = _ENV.from_string(data["system"])
        user = _ENV.from_string(data["user"])
    except TemplateError as exc:
        raise PromptError(f"prompt {template_id}: {exc}") from None
    return PromptTemplate(template_id, content_id(raw), raw, system, user)


@functools.cache
def get_template(template_id: str) -> PromptTemplate:
    path = TEMPLATES / f"{template_id}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in TEMPLATES.glob("*.yaml"))) or "none"
        raise PromptError(f"unknown prompt template {template_id!r} (shipped: {known})")
    return parse_template(template_id, path.read_bytes())
