"""The residency section compiled: for every (jurisdiction, data class, decision type) the
ordered endpoints a request may be sent to, fixed at load.

Everything that could send data to the wrong place is refused here, with the file, line
and key path: a route naming an unknown endpoint, an endpoint in a zone the jurisdiction
does not allow, an endpoint named for a data class it may not receive, a model-calling
decision type with no route in some jurisdiction. What is left is a lookup table of
`RoutePlan`s; the router can only ever choose among a plan's `allowed` endpoints."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import yaml

from warden.canonical import canonical_json, content_id
from warden.errors import PolicyError
from warden.policy.errors_format import dotted, line_of
from warden.policy.model import Endpoint, Policy, Route


@dataclass(frozen=True)
class RoutePlan:
    """Where one kind of request may go. `allowed` is the only list a call may use."""

    jurisdiction: str
    data_class: str
    decision_type: str
    allowed: tuple[str, ...]
    #: endpoints of the registry a request of this kind must not reach, and why
    not_allowed: tuple[tuple[str, str], ...]
    allowed_zones: tuple[str, ...]
    on_unavailable: str
    #: the route it came from, as a key path into the policy
    route: str


@dataclass(frozen=True)
class RouteTable:
    version: str
    plans: dict[tuple[str, str, str], RoutePlan]
    endpoints: dict[str, Endpoint]

    def plan(self, jurisdiction: str, data_class: str, decision_type: str) -> RoutePlan | None:
        return self.plans.get((jurisdiction, data_class, decision_type))


def residency_version(policy: Policy) -> str:
    """Hash of everything that decides where data may go (the residency policy version)."""
    section: dict[str, Any] = {
        "residency": {k: v.model_dump() for k, v in policy.residency.items()},
        "endpoints": {k: v.model_dump() for k, v in policy.endpoints.items()},
        "data_classes": list(policy.data_classes),
    }
    return content_id(canonical_json(section))


def _where(source: str, root: yaml.Node | None, loc: tuple[int | str, ...]) -> str:
    return f"{source}:{line_of(root, loc)}: {dotted(loc)}"


def _specificity(route: Route, data_class: str, decision_type: str) -> int | None:
    if route.decision_type not in ("*", decision_type):
        return None
    if route.data_class not in ("*", data_class):
        return None
    return (route.decision_type != "*") * 2 + (route.data_class != "*")


def compile_routes(policy: Policy, *, source: str, root: yaml.Node | None) -> RouteTable:
    endpoints = policy.endpoints
    classes = set(policy.data_classes)
    for name, endpoint in endpoints.items():
        for i, data_class in enumerate(endpoint.data_classes):
            if data_class not in classes:
                loc: tuple[int | str, ...] = ("endpoints", name, "data_classes", i)
                raise PolicyError(
                    f"{_where(source, root, loc)}: unknown data class {data_class!r} "
                    f"(data_classes: {', '.join(policy.data_classes)})"
                )
    for jurisdiction, rule in policy.residency.items():
        for r, route in enumerate(rule.routes):
            base: tuple[int | str, ...] = ("residency", jurisdiction, "routes", r)
            if route.decision_type != "*" and route.decision_type not in policy.decision_types:
                raise PolicyError(
                    f"{_where(source, root, (*base, 'decision_type'))}: unknown decision type "
                    f"{route.decision_type!r} "
                    f"(declared: {', '.join(sorted(policy.decision_types))})"
                )
            if route.data_class != "*" and route.data_class not in classes:
                raise PolicyError(
                    f"{_where(source, root, (*base, 'data_class'))}: unknown data class "
                    f"{route.data_class!r} (data_classes: {', '.join(policy.data_classes)})"
                )
            if len(set(route.endpoints)) != len(route.endpoints):
                raise PolicyError(
                    f"{_where(source, root, (*base, 'endpoints'))}: an endpoint is named twice"
                )
            for e, name in enumerate(route.endpoints):
                loc = (*base, "endpoints", e)
                found = endpoints.get(name)
                if found is None:
                    hint = difflib.get_close_matches(name, list(endpoints), n=1)
                    known = ", ".join(sorted(endpoints)) or "none"
                    raise PolicyError(
                        f"{_where(source, root, loc)}: unknown endpoint {name!r}"
                        + (f" (did you mean {hint[0]!r}?)" if hint else "")
                        + f"; endpoints: {known}"
                    )
                endpoint = found
                if endpoint.zone not in rule.allowed_zones:
                    raise PolicyError(
                        f"{_where(source, root, loc)}: endpoint {name!r} is in zone "
                        f"{endpoint.zone}, which {jurisdiction} does not allow "
                        f"(allowed_zones: {', '.join(rule.allowed_zones)})"
                    )
                if route.data_class != "*" and route.data_class not in endpoint.data_classes:
                    raise PolicyError(
                        f"{_where(source, root, loc)}: endpoint {name!r} may not receive "
                        f"{route.data_class!r} data (its data_classes: "
                        f"{', '.join(endpoint.data_classes)})"
                    )
    plans: dict[tuple[str, str, str], RoutePlan] = {}
    for jurisdiction, rule in policy.residency.items():
        for type_name, spec in policy.decision_types.items():
            if spec.llm is None:
                continue
            for data_class in policy.data_classes:
                best: tuple[int, int] | None = None
                for r, route in enumerate(rule.routes):
                    score = _specificity(route, data_class, type_name)
                    if score is not None and (best is None or score > best[0]):
                        best = (score, r)
                if best is None:
                    if data_class == spec.llm.data_class:
                        loc = ("residency", jurisdiction, "routes")
                        raise PolicyError(
                            f"{_where(source, root, loc)}: no route for decision type "
                            f"{type_name!r} (data class {data_class!r}): its model calls "
                            f"from {jurisdiction} would have nowhere to go"
                        )
                    continue
                route = rule.routes[best[1]]
                allowed = tuple(
                    n for n in route.endpoints if data_class in endpoints[n].data_classes
                )
                not_allowed = tuple(
                    (n, _why_not(endpoints[n], rule.allowed_zones, data_class))
                    for n in sorted(endpoints)
                    if n not in allowed
                )
                plans[(jurisdiction, data_class, type_name)] = RoutePlan(
                    jurisdiction,
                    data_class,
                    type_name,
                    allowed,
                    not_allowed,
                    tuple(rule.allowed_zones),
                    rule.on_unavailable,
                    dotted(("residency", jurisdiction, "routes", best[1])),
                )
    return RouteTable(residency_version(policy), plans, dict(endpoints))


def _why_not(endpoint: Endpoint, zones: list[str], data_class: str) -> str:
    if endpoint.zone not in zones:
        return f"zone {endpoint.zone} not allowed"
    if data_class not in endpoint.data_classes:
        return f"may not receive {data_class} data"
    return "not on the route"
