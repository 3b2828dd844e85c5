"""Load a policy file: parse YAML, validate it, compile its rules, and name its version.

The version of a policy is the SHA-256 of the file's exact bytes, so the file an auditor
fetches back by version is byte-for-byte the one that decided."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from warden.canonical import content_id
from warden.errors import PolicyError
from warden.policy.attack_surface import check_redteam
from warden.policy.compiled import CompiledDecisionType, compile_decision_type, spec_version
from warden.policy.errors_format import format_validation_error
from warden.policy.model import Policy
from warden.policy.residency import RouteTable, compile_routes

MAX_POLICY_BYTES = 1_000_000


@dataclass(frozen=True)
class LoadedPolicy:
    policy: Policy
    version: str
    raw: bytes
    source: str
    decision_types: dict[str, CompiledDecisionType]
    #: the residency section compiled; `routes.version` is the residency policy version
    routes: RouteTable

    def decision_type(self, name: str) -> CompiledDecisionType | None:
        return self.decision_types.get(name)


def load_policy_file(path: str | Path) -> LoadedPolicy:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PolicyError(f"{path}: policy file not found", code="policy.not_found") from None
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy file: {exc.strerror}") from None
    return load_policy_bytes(raw, source=str(path))


def spec_versions(raw: bytes) -> dict[str, str]:
    """Each decision type's `spec_version` in a stored policy file, without compiling its
    rules; {} when the file does not parse or does not validate under this release's schema
    (an older policy that no longer loads is treated as different in every decision type)."""
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
        policy = Policy.model_validate(data)
    except (UnicodeDecodeError, yaml.YAMLError, ValidationError):
        return {}
    return {name: spec_version(spec) for name, spec in policy.decision_types.items()}


def load_policy_bytes(raw: bytes, source: str = "<policy>") -> LoadedPolicy:
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError(f"{source}: policy file is larger than {MAX_POLICY_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(f"{where}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: the policy must be a YAML mapping at the top level")
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        lines = format_validation_error(exc, Policy, source, root)
        raise PolicyError("\n".join(lines)) from None
    check_redteam(policy, source=source, root=root)
    compiled = {}
    for name, spec in policy.decision_types.items():
        compiled[name] = compile_decision_type(name, spec, source=source, root=root)
    return LoadedPolicy(
        policy=policy,
        version=content_id(raw),
        raw=raw,
        source=source,
        decision_types=compiled,
        routes=compile_routes(policy, source=source, root=root),
    )
