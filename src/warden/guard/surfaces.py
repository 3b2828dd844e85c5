"""Inspect each input surface of a request with the detectors the policy names, and the
outward text with the output filters. Pure library code: the inputs/outputs gates and
`warden redteam` call it; it never decides what happens to a request, it reports findings
with the action the policy attaches to them."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from warden.guard.signals import Signal
from warden.policy.compiled import CompiledDecisionType
from warden.policy.model import DocumentGuard, OutputGuard, TextGuard, ToolArgsGuard


@dataclass
class Finding:
    """What one surface check found. `hit` means the policy's action applies."""

    surface: str
    field: str
    score: float = 0.0
    hit: bool = False
    action: str | None = None
    code: str | None = None
    reason: str = ""
    signals: list[Signal] = dc_field(default_factory=list)
    extra: dict[str, Any] = dc_field(default_factory=dict)

    def as_record(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "surface": self.surface,
            "field": self.field,
            "score": round(self.score, 4),
            "hit": self.hit,
            "signals": [s.as_record() for s in self.signals],
        }
        if self.hit:
            out.update(action=self.action, code=self.code, reason=self.reason)
        out.update(self.extra)
        return out


@functools.cache
def injection_detector() -> Any:
    from warden.guard.injection import InjectionDetector

    return InjectionDetector.load_default()


def _strings(value: Any, path: str) -> list[tuple[str, str]]:
    """Every string inside a JSON value, with its path (tool arguments)."""
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [s for i, v in enumerate(value) for s in _strings(v, f"{path}[{i}]")]
    return []


def inspect_text(field_path: str, text: str, guard: TextGuard, surface: str = "text") -> Finding:
    report = injection_detector().scan(text, surface)
    finding = Finding(surface, field_path, score=float(report.score), signals=list(report.signals))
    if report.score >= guard.injection_threshold:
        finding.hit, finding.action = True, guard.on_hit
        finding.code = f"inputs.injection.{surface}"
        finding.reason = (
            f"{field_path}: possible prompt injection (score "
            f"{report.score:.2f} ≥ {guard.injection_threshold})"
        )
    return finding


@dataclass
class DocumentInspection:
    finding: Finding
    data: bytes
    recorded: dict[str, Any]


def inspect_document(
    field_path: str, document: dict[str, Any], guard: DocumentGuard
) -> DocumentInspection:
    """Decode, analyse and scan one uploaded document. Raises DocumentError (a 422 with a
    precise reason) for malformed, encrypted, oversized or page-bomb input."""
    from warden.guard.documents import DocumentError, DocumentLimits, analyze_document

    raw = document["data_base64"]
    if len(raw) > guard.max_bytes * 4 // 3 + 8:
        raise DocumentError(
            f"{field_path}: document is larger than the limit of {guard.max_bytes} bytes",
            code="document.too_large",
            field=field_path,
        )
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise DocumentError(
            f"{field_path}.data_base64: not valid base64",
            code="document.malformed",
            field=f"{field_path}.data_base64",
        ) from None
    limits = DocumentLimits(max_bytes=guard.max_bytes, max_pages=guard.max_pages)
    report = analyze_document(
        data, document["content_type"], name=field_path, field=field_path, limits=limits
    )
    scan = injection_detector().scan(report.all_text_for_scanning, "document")
    signals = [*report.signals, *scan.signals]
    finding = Finding(
        "document",
        field_path,
        score=float(scan.score),
        signals=signals,
        extra={
            "pages": report.pages,
            "hidden": len(report.hidden),
            "sha256": hashlib.sha256(data).hexdigest(),
        },
    )
    serious = [h for h in report.hidden if h.score >= guard.hidden_min_score]
    if serious:
        techniques = sorted({h.technique for h in serious})
        finding.hit, finding.action = True, guard.on_hidden_content
        finding.code = "inputs.document.hidden_content"
        finding.reason = f"{field_path}: hidden or active content ({', '.join(techniques)})"
    if scan.score >= guard.injection_threshold:
        stricter = "refuse" if "refuse" in (finding.action, guard.on_hit) else "review"
        finding.hit, finding.action = True, stricter
        finding.code = finding.code or "inputs.injection.document"
        finding.reason = "; ".join(
            filter(
                None,
                [
                    finding.reason,
                    (
                        f"{field_path}: possible prompt injection (score {scan.score:.2f} ≥ "
                        f"{guard.injection_threshold})"
                    ),
                ],
            )
        )
    recorded = {
        "name": document["name"],
        "content_type": document["content_type"],
        "content": "sha256:" + hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
    }
    return DocumentInspection(finding, data, recorded)


def inspect_tool_call(
    index: int,
    call: dict[str, Any],
    compiled: CompiledDecisionType,
    inputs: dict[str, Any],
    guard: ToolArgsGuard,
) -> Finding:
    path = f"tool_calls[{index}]"
    name = call["name"]
    arguments = call["arguments"]
    finding = Finding("tool_args", path, extra={"tool": name})
    problems: list[str] = []
    tool = compiled.tools.get(name)
    if tool is None:
        allowed = ", ".join(sorted(compiled.tools)) or "none"
        problems.append(
            f"{path}.name: tool {name!r} is not allowed for {compiled.name} (allowed: {allowed})"
        )
    else:
        problems += [f"{path}.{p}" for p in tool.schema_errors(arguments)]
        if not problems:
            activation = {
                **{"inputs": inputs, "jurisdiction": None, "decision_type": compiled.name},
                "args": arguments,
            }
            for outcome in tool.check_limits(activation):
                if outcome.error is not None:
                    problems.append(
                        f"{path}: limit {outcome.limit.when!r} could not be "
                        f"checked ({outcome.error})"
                    )
                elif not outcome.passed:
                    problems.append(f"{path}: {outcome.limit.message}")
    for arg_path, text in _strings(arguments, f"{path}.arguments"):
        report = injection_detector().scan(text, "tool_args")
        finding.signals += list(report.signals)
        finding.score = max(finding.score, float(report.score))
        if report.score >= guard.injection_threshold:
            problems.append(f"{arg_path}: possible prompt injection (score {report.score:.2f})")
    if problems:
        finding.hit, finding.action = True, guard.on_hit
        finding.code = "inputs.tool_call_rejected"
        finding.reason = "; ".join(problems)
    finding.extra["verdict"] = "rejected" if problems else "verified"
    finding.extra["problems"] = problems
    return finding


@functools.cache
def pii_redactor() -> Any:
    from warden.guard.pii import PiiRedactor

    return PiiRedactor.default()


@functools.cache
def anomaly_checker() -> Any:
    from warden.guard.anomaly import OutputAnomalyChecker

    return OutputAnomalyChecker()


def warm_up(output_guards: Iterable[OutputGuard]) -> None:
    """Build the process-wide detectors now, before the first request: the injection
    models (and the second stage's sentence encoder), the anomaly checker and — when some
    decision type redacts or reviews PII — Presidio (its import alone takes seconds on a
    loaded 2-core VM, and a first request that builds it stalls every request in flight
    behind it)."""
    injection_detector().warm()
    anomaly_checker()
    if any(guard.pii != "off" for guard in output_guards):
        pii_redactor()


def string_values(value: Any) -> list[str]:
    """Every string inside a JSON value, depth first (a proposal's text a person reads)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in string_values(v)]
    if isinstance(value, list):
        return [s for v in value for s in string_values(v)]
    return []


def redact_values(value: Any, guard: OutputGuard) -> Any:
    """A copy of a JSON value with personal data redacted in each of its strings."""
    if isinstance(value, str):
        return pii_redactor().redact(value, entities=set(guard.pii_entities)).text
    if isinstance(value, dict):
        return {k: redact_values(v, guard) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_values(v, guard) for v in value]
    return value


@dataclass
class OutputInspection:
    text: str
    findings: list[Finding]


def inspect_output(
    text: str,
    *,
    decision_type: str,
    canary: str | None,
    guard: OutputGuard,
    observe: bool = True,
) -> OutputInspection:
    """PII, anomaly and canary checks on an outward text; `observe=False` keeps the answer
    out of the decision type's rolling length baseline (a red-team exercise)."""
    findings: list[Finding] = []
    out = text
    if guard.pii != "off":
        result = pii_redactor().redact(text, entities=set(guard.pii_entities))
        if result.findings:
            f = Finding(
                "output",
                "output",
                score=1.0,
                signals=pii_redactor().signals(result.findings),
                extra={"pii_counts": dict(result.counts)},
            )
            if guard.pii == "redact":
                out = result.text
                f.extra["redacted"] = True
            else:
                f.hit, f.action, f.code = True, "review", "outputs.pii"
                f.reason = "output contains personal data"
            findings.append(f)
    checker = anomaly_checker()
    signals = checker.check(text, decision_type=decision_type, canary=canary)
    if observe:
        checker.observe(decision_type, len(text))
    canary_signals = [s for s in signals if s.detector == "output.canary"]
    other = [s for s in signals if s.detector != "output.canary"]
    if canary_signals:
        findings.append(
            Finding(
                "output",
                "output",
                score=1.0,
                hit=True,
                action=guard.canary,
                code="outputs.canary_leak",
                signals=canary_signals,
                reason="output leaks the system prompt's canary token",
            )
        )
    if other and guard.anomaly != "off":
        findings.append(
            Finding(
                "output",
                "output",
                score=max(s.score for s in other),
                hit=True,
                action="review",
                code="outputs.anomaly",
                signals=other,
                reason="; ".join(s.detail for s in other),
            )
        )
    return OutputInspection(out, findings)
