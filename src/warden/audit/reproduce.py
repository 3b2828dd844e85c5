"""Reproduce a decision from its audit record and say, field by field, whether the result
is identical.

Everything comes from the audit store, never from what is active now: the policy version
the record names (its file, stored content-addressed at activation), the model artifact by
its SHA-256 (stored when the model was loaded), the thresholds version (stored when it was
proposed), and the inputs verbatim (documents fetched back by their content address). The
gates run again without the commit gate — nothing is written — and every leaf of every
gate's result, the outcome, score and thresholds version are compared. Timings (fields
named `*_us`, `*_ms`, `latency*`) differ by nature and are listed as skipped.

Recorded LLM calls are replayed from their recorded raw response body (candidates,
attempts and skips as they happened); the prompt is rendered again from the recorded
template version and compared, and nothing is sent to any endpoint."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from warden.audit.entry import StoredEntry, final_record
from warden.audit.record import drop_newer_fields, gate_results
from warden.audit.store import AuditStore
from warden.auth import Principal, Role
from warden.errors import ConflictError, NotFoundError, echo
from warden.gates.admission import AdmissionGate
from warden.gates.bands import BandsGate
from warden.gates.decide import DecideGate
from warden.gates.inputs import InputsGate
from warden.gates.llm import LlmGate
from warden.gates.outputs import OutputsGate
from warden.gates.proposal import ProposalGate
from warden.gates.residency import ResidencyGate
from warden.models.loaded import LoadedModel
from warden.models.serving import model_from_store
from warden.models.thresholds import ThresholdsVersion, load_version
from warden.pipeline.context import DecisionContext, DecisionRequest
from warden.pipeline.runner import Pipeline
from warden.policy.compiled import CompiledDecisionType
from warden.policy.loader import load_policy_bytes
from warden.prompts.registry import parse_template

_VOLATILE_SUFFIXES = ("_us", "_ms", "_seconds")


@dataclass
class FieldResult:
    path: str
    recorded: Any
    reproduced: Any
    status: str  # "same", "different", "skipped"


@dataclass
class ReproduceReport:
    decision_id: str
    policy_version: str
    model: dict[str, str] | None
    thresholds_version: str | None
    fields: list[FieldResult] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return all(f.status != "different" for f in self.fields)

    def as_dict(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "identical": self.identical,
            "policy_version": self.policy_version,
            "model": self.model,
            "thresholds_version": self.thresholds_version,
            "compared": sum(f.status != "skipped" for f in self.fields),
            "different": [f.path for f in self.fields if f.status == "different"],
            "fields": [
                {"path": f.path, "status": f.status, "recorded": f.recorded,
                 "reproduced": f.reproduced}
                for f in self.fields
            ],
        }  # fmt: skip


def _leaves(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        for key in sorted(value):
            yield from _leaves(value[key], f"{path}.{key}" if path else str(key))
    elif isinstance(value, list) and value and any(isinstance(v, dict | list) for v in value):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{path}[{i}]")
    else:
        yield path, value


def _volatile(path: str) -> bool:
    last = path.rsplit(".", 1)[-1]
    return last.endswith(_VOLATILE_SUFFIXES) or last.startswith("latency")


def _compare(recorded: Any, reproduced: Any, prefix: str) -> list[FieldResult]:
    a = dict(_leaves(recorded, prefix))
    b = dict(_leaves(reproduced, prefix))
    out = []
    for path in sorted(set(a) | set(b)):
        ra, rb = a.get(path), b.get(path)
        status = "skipped" if _volatile(path) else ("same" if ra == rb else "different")
        out.append(FieldResult(path, ra, rb, status))
    return out


def _restore_inputs(store: AuditStore, recorded: Any) -> Any:
    """Put documents (recorded by content address) back as the caller sent them."""
    if not isinstance(recorded, dict):
        return recorded
    out = dict(recorded)
    for key, value in recorded.items():
        if isinstance(value, dict) and str(value.get("content", "")).startswith("sha256:"):
            found = store.get_blob(value["content"])
            if found is None:
                raise NotFoundError(f"inputs.{key}: document {value['content']} is not stored")
            out[key] = {
                "name": value["name"],
                "content_type": value["content_type"],
                "data_base64": base64.b64encode(found[1]).decode(),
            }
    return out


def _gate_result(record: dict[str, Any], gate: str) -> dict[str, Any] | None:
    for item in record.get("gates", []):
        if item["gate"] == gate:
            result: dict[str, Any] = item["result"]
            return result
    return None


def reproduce_entries(store: AuditStore, entries: list[StoredEntry]) -> ReproduceReport:
    decision = final_record(entries)
    if decision.kind not in ("decision", "refusal"):
        raise ConflictError(f"entry {decision.seq} is a {decision.kind!r}, not a decision")
    record = decision.body()
    policy_version = record["policy"]["version"]
    blob = store.get_blob(policy_version)
    if blob is None:
        raise NotFoundError(f"policy {echo(policy_version)} is not in the audit store")
    policy = load_policy_bytes(blob[1], source=f"stored policy {policy_version}")

    decide = _gate_result(record, "decide") or {}
    models: dict[str, LoadedModel] = {}
    compiled = policy.decision_type(record["decision_type"])
    model_record = decide.get("model")
    if model_record and compiled is not None and compiled.spec.model:
        models[compiled.spec.model] = model_from_store(store, model_record)
    thresholds: dict[str, ThresholdsVersion] = {}
    version = record.get("thresholds_version")
    if compiled is not None and version and version != compiled.thresholds_version:
        thresholds[compiled.name] = load_version(store, version)

    llm = _gate_result(record, "llm")
    recorded_template = (llm or {}).get("template")
    if compiled is not None and compiled.prompt is not None and recorded_template:
        _use_recorded_template(store, compiled, recorded_template)
    chat = None
    if llm and llm.get("mode") == "chat":  # the front door's body, as the gate recorded it
        chat = {"messages": llm.get("messages", []), **llm.get("request_params", {})}
    request = DecisionRequest(
        record["decision_type"],
        record["jurisdiction"],
        _restore_inputs(store, record["request"]["inputs"]),
        record["request"].get("idempotency_key"),
        record["request"].get("request_hash"),
        record["request"].get("tool_calls"),
        data_class=record["request"].get("data_class"),
        context=record["request"].get("context"),
        chat=chat,
    )
    record_format = int(record.get("record_format", 1))
    caller = Principal(record["caller"]["name"], Role(record["caller"]["role"]))
    ctx = DecisionContext(record["decision_id"], request, caller, policy, record["received_at"])
    # the per-request canary went into the recorded prompt; the same one renders it again
    ctx.canary = (llm or {}).get("canary")
    pipeline = Pipeline(
        [
            AdmissionGate(),
            ResidencyGate(checks_data_class=record_format >= 3),
            InputsGate(),
            # model calls are replayed from their recorded raw response, never re-sent
            LlmGate(None, None, recorded=llm or {}),
            ProposalGate(),
            DecideGate(models),
            BandsGate(thresholds),
            OutputsGate(),
        ]
    )
    if _in_loop():
        _run_in_thread(pipeline, ctx)
    else:
        asyncio.run(pipeline.run(ctx))

    report = ReproduceReport(
        record["decision_id"],
        policy_version,
        {k: model_record[k] for k in ("name", "version", "sha256")} if model_record else None,
        version,
    )
    drop_newer_fields(ctx.results, record_format)
    recorded_gates = {k: v for k, v in gate_results(record).items() if k != "commit"}
    for name in sorted(set(recorded_gates) | set(ctx.results)):
        report.fields += _compare(recorded_gates.get(name), ctx.results.get(name), name)
    bands = ctx.results.get("bands", {})
    reproduced_top = {
        "outcome": ctx.outcome(),
        "score": bands.get("score"),
        "thresholds_version": bands.get("thresholds_version"),
        "output": ctx.results.get("outputs", {}).get("text"),
        "stop": None
        if ctx.stop is None
        else {
            "gate": ctx.stop.gate,
            "code": ctx.stop.code,
            "disposition": ctx.stop.disposition,
            "message": ctx.stop.message,
            "field": ctx.stop.field,
        },
    }
    recorded_top = {key: record.get(key) for key in reproduced_top}
    report.fields = _compare(recorded_top, reproduced_top, "") + report.fields
    return report


def _use_recorded_template(
    store: AuditStore, compiled: CompiledDecisionType, template: dict[str, str]
) -> None:
    """Render with the prompt template version the record names, fetched from the audit
    store (stored at policy activation), even if the shipped template has changed since.
    `compiled` belongs to this reproduction's freshly loaded policy, so this changes
    nothing that serves requests."""
    assert compiled.prompt is not None
    if compiled.prompt.version == template["version"]:
        return
    blob = store.get_blob(template["version"])
    if blob is None:
        raise NotFoundError(
            f"prompt template {template['id']} {template['version']} is not in the audit store"
        )
    compiled.prompt = parse_template(template["id"], blob[1])


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _run_in_thread(pipeline: Pipeline, ctx: DecisionContext) -> None:
    """Called from inside an event loop (the API): run the gates on a loop of their own."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, pipeline.run(ctx)).result()


def reproduce(store: AuditStore, decision_id: str) -> ReproduceReport:
    entries = store.entries_for(decision_id)
    if not entries:
        raise NotFoundError(f"no decision with id {echo(decision_id)}")
    return reproduce_entries(store, entries)
