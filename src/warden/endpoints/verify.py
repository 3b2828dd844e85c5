"""`warden routes verify`: prove from the log — and, with access logs, from the upstreams'
own records — that every model call went to a zone its jurisdiction allows.

From the audit log (decisions and refusals in the window): per jurisdiction, requests,
model calls, the share served in an allowed zone, violations (any attempt, not only the
one that answered, outside the recorded allowed zones), unlabeled/unknown-jurisdiction
refusals, and per jurisdiction the requests refused for their data class (unknown to the
policy, or with no endpoint allowed to receive it) — those never reach a model.

From access logs (one JSON line per upstream request with `decision_id`, `region`): every
request that carried a decision id must belong to a decision (its intent or final record)
whose jurisdiction allows the zone of the endpoint with that region — so the check does
not rely on Warden's word alone."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from warden.audit.completeness import parse_ts
from warden.audit.entry import store_ts
from warden.audit.store import AuditStore
from warden.policy.model import Policy

CHAT_PATH = "/v1/chat/completions"


@dataclass
class JurisdictionStats:
    requests: int = 0
    model_calls: int = 0
    served: int = 0
    served_in_allowed_zone: int = 0
    review_unavailable: int = 0
    refused_unavailable: int = 0
    #: refused before any model call: a data class the policy does not know, or one that
    #: no endpoint of the jurisdiction's route may receive
    refused_unknown_data_class: int = 0
    refused_no_route: int = 0
    by_endpoint: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        share = self.served_in_allowed_zone / self.served if self.served else None
        return {
            "requests": self.requests,
            "model_calls": self.model_calls,
            "served": self.served,
            "served_in_allowed_zone": self.served_in_allowed_zone,
            "share_in_allowed_zone": share,
            "unavailable_review": self.review_unavailable,
            "unavailable_refused": self.refused_unavailable,
            "refused_unknown_data_class": self.refused_unknown_data_class,
            "refused_no_route": self.refused_no_route,
            "served_by": dict(sorted(self.by_endpoint.items())),
        }


@dataclass
class RoutesReport:
    since: str
    until: str
    jurisdictions: dict[str, JurisdictionStats] = field(default_factory=dict)
    unlabeled: int = 0
    unknown_jurisdiction: int = 0
    violations: list[dict[str, Any]] = field(default_factory=list)
    access_log: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.violations

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "until": self.until,
            "jurisdictions": {k: v.as_dict() for k, v in sorted(self.jurisdictions.items())},
            "unlabeled": self.unlabeled,
            "unknown_jurisdiction": self.unknown_jurisdiction,
            "violations": self.violations,
            "access_log": self.access_log,
            "ok": self.ok,
        }


def _llm(record: dict[str, Any]) -> dict[str, Any] | None:
    for gate in record.get("gates", []):
        if gate.get("gate") == "llm":
            result: dict[str, Any] = gate["result"]
            return result
    return None


def verify_routes(
    store: AuditStore,
    policy: Policy,
    since: datetime,
    until: datetime,
    access_logs: Iterable[Path] = (),
) -> RoutesReport:
    report = RoutesReport(since.isoformat(), until.isoformat())
    jurisdiction_of: dict[str, str | None] = {}
    for entry in store.entries_between(
        store_ts(since), store_ts(until), ("decision", "refusal", "intent")
    ):
        if not entry.decision_id:
            continue
        body = entry.body()
        jurisdiction_of.setdefault(entry.decision_id, body.get("jurisdiction"))
        if entry.kind == "intent":
            continue
        jurisdiction = body.get("jurisdiction")
        stop = body.get("stop") or {}
        if stop.get("code") == "residency.unlabeled":
            report.unlabeled += 1
            continue
        if stop.get("code") == "residency.unknown_jurisdiction":
            report.unknown_jurisdiction += 1
            continue
        stats = report.jurisdictions.setdefault(str(jurisdiction), JurisdictionStats())
        stats.requests += 1
        if stop.get("code") == "residency.unknown_data_class":
            stats.refused_unknown_data_class += 1
            continue
        if stop.get("code") == "residency.no_route":
            stats.refused_no_route += 1
            continue
        llm = _llm(body)
        if not llm or "mode" not in llm:  # no model call for this decision type
            continue
        stats.model_calls += 1
        allowed = set(llm.get("allowed_zones") or policy.residency[str(jurisdiction)].allowed_zones)
        for attempt in llm.get("attempts", []):
            if attempt.get("zone") not in allowed:
                report.violations.append(
                    {
                        "source": "audit",
                        "decision_id": entry.decision_id,
                        "jurisdiction": jurisdiction,
                        "endpoint": attempt.get("endpoint"),
                        "zone": attempt.get("zone"),
                        "allowed_zones": sorted(allowed),
                    }
                )
        served = llm.get("served_by")
        if served:
            stats.served += 1
            stats.served_in_allowed_zone += served.get("zone") in allowed
            name = str(served.get("endpoint"))
            stats.by_endpoint[name] = stats.by_endpoint.get(name, 0) + 1
        elif stop.get("code") == "llm.unavailable":
            if body.get("outcome") == "refused":
                stats.refused_unavailable += 1
            else:
                stats.review_unavailable += 1
    paths = list(access_logs)
    if paths:
        report.access_log = _cross_check(
            report, policy, since, until, paths, _JurisdictionLookup(store, jurisdiction_of)
        )
    return report


class _JurisdictionLookup:
    """Jurisdiction of a decision id: from the entries in the window, else from the log by
    id (a call logged upstream just inside the window may belong to an intent written
    just before it)."""

    def __init__(self, store: AuditStore, seen: dict[str, str | None]) -> None:
        self.store = store
        self.seen = seen

    def get(self, decision_id: str) -> tuple[bool, str | None]:
        if decision_id not in self.seen:
            entries = self.store.entries_for(decision_id)
            if not entries:
                return False, None
            self.seen[decision_id] = entries[0].body().get("jurisdiction")
        return True, self.seen[decision_id]


def _cross_check(
    report: RoutesReport,
    policy: Policy,
    since: datetime,
    until: datetime,
    paths: list[Path],
    jurisdiction_of: _JurisdictionLookup,
) -> dict[str, Any]:
    zone_of_region = {e.region: e.zone for e in policy.endpoints.values()}
    summary: dict[str, Any] = {
        "files": [str(p) for p in paths],
        "requests": 0,
        "with_decision_id": 0,
        "without_decision_id": 0,
        "unknown_decision": [],
        "by_region": {},
    }
    for path in paths:
        with path.open() as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    raise ValueError(f"{path}:{number}: not a JSON line") from None
                if row.get("path") != CHAT_PATH or not since <= parse_ts(row["ts"]) < until:
                    continue
                summary["requests"] += 1
                region = str(row.get("region"))
                summary["by_region"][region] = summary["by_region"].get(region, 0) + 1
                decision_id = row.get("decision_id")
                if not decision_id:
                    summary["without_decision_id"] += 1
                    continue
                summary["with_decision_id"] += 1
                known, jurisdiction = jurisdiction_of.get(decision_id)
                if not known:
                    summary["unknown_decision"].append(decision_id)
                    continue
                rule = policy.residency.get(str(jurisdiction))
                zone = zone_of_region.get(region)
                if rule is None or zone is None or zone not in rule.allowed_zones:
                    report.violations.append(
                        {
                            "source": f"{path.name}:{number}",
                            "decision_id": decision_id,
                            "jurisdiction": jurisdiction,
                            "region": region,
                            "zone": zone,
                            "allowed_zones": sorted(rule.allowed_zones) if rule else [],
                        }
                    )
    return summary


def routes_table(report: RoutesReport, title: str | None = None) -> Table:
    """The per-jurisdiction summary as a table (the CLI and the demo print it). The column
    of data-class refusals appears only when there are some, to keep the table narrow."""
    data_class_refusals = any(
        s.refused_unknown_data_class or s.refused_no_route for s in report.jurisdictions.values()
    )
    columns = [
        "jurisdiction",
        "requests",
        "model calls",
        "served",
        "in allowed zone",
        "served by",
        "unavailable → review / refused",
    ]
    if data_class_refusals:
        columns.append("data class refused: unknown / no route")
    table = Table(*columns, title=title, title_justify="left")
    for name, stats in sorted(report.jurisdictions.items()):
        row = stats.as_dict()
        share = row["share_in_allowed_zone"]
        cells = [
            name,
            str(stats.requests),
            str(stats.model_calls),
            str(stats.served),
            "-" if share is None else f"{share:.1%}",
            ", ".join(f"{k} {v}" for k, v in row["served_by"].items()) or "-",
            f"{stats.review_unavailable} / {stats.refused_unavailable}",
        ]
        if data_class_refusals:
            cells.append(f"{stats.refused_unknown_data_class} / {stats.refused_no_route}")
        table.add_row(*cells)
    return table


def access_log_line(report: RoutesReport) -> str | None:
    log = report.access_log
    if log is None:
        return None
    return (
        f"access logs: {log['requests']} upstream requests, {log['with_decision_id']} with a "
        f"decision id, {log['without_decision_id']} without, {len(log['unknown_decision'])} "
        f"naming a decision this log does not hold; by region: {log['by_region']}"
    )
