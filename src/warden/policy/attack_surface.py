"""Which surfaces of a decision type an attacker can reach (and `warden redteam` probes):
free text and documents among its inputs, tool calls when it declares tools, and the
model's outward answer when a chat model writes one. Also the load-time check of the
policy's `redteam` section against them."""

from __future__ import annotations

import yaml

from warden.errors import PolicyError
from warden.policy.errors_format import dotted, line_of
from warden.policy.model import DecisionType, Policy


def attack_surfaces(spec: DecisionType) -> list[str]:
    """The guarded surfaces of one decision type, in pipeline order."""
    found = {field.input_surface for field in spec.inputs.values()}
    out: list[str] = [s for s in ("text", "document") if s in found]
    if spec.tools:
        out.append("tool_args")
    if spec.llm is not None and spec.llm.mode == "chat":  # only chat answers leave Warden
        out.append("output")
    return out


def check_redteam(policy: Policy, *, source: str, root: yaml.Node | None) -> None:
    """`redteam.decision_types` names declared decision types, and only surfaces they have."""
    declared = ", ".join(sorted(policy.decision_types))
    for name, override in policy.redteam.decision_types.items():
        loc: tuple[int | str, ...] = ("redteam", "decision_types", name)
        spec = policy.decision_types.get(name)
        if spec is None:
            raise PolicyError(
                f"{source}:{line_of(root, loc)}: {dotted(loc)}: unknown decision type "
                f"{name!r} (declared: {declared})"
            )
        surfaces = attack_surfaces(spec)
        for key in ("min_detection_rate", "max_false_positive_rate"):
            for surface in getattr(override, key):
                if surface not in surfaces:
                    where = (*loc, key, surface)
                    raise PolicyError(
                        f"{source}:{line_of(root, where)}: {dotted(where)}: {name} has no "
                        f"{surface} surface to attack (it has: {', '.join(surfaces) or 'none'})"
                    )
