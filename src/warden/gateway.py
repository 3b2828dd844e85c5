"""The Python API: one Gateway object that every door (HTTP, CLI, demo) calls.

gw = Gateway.open(data_dir, policy_path)
result = await gw.decide({...}, caller)      # or gw.decide_sync(...)
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from warden import metrics
from warden.audit.entry import NewEntry, StoredEntry, final_record, record_document
from warden.audit.merkle import leaf_hash, verify_inclusion
from warden.audit.sqlite_store import SQLiteAuditStore, utc_now
from warden.audit.store import AuditStore
from warden.auth import KeyRing, Permission, Principal
from warden.baselines import Current, RecentHistory, recent_history
from warden.canonical import NotCanonicalError, canonical_json, content_id, request_hash
from warden.endpoints.runtime import EndpointRuntime
from warden.errors import ConflictError, NotFoundError, RequestError, echo
from warden.gates.admission import AdmissionGate
from warden.gates.bands import BandsGate
from warden.gates.commit import CommitGate, idempotency_unique_key
from warden.gates.decide import DecideGate
from warden.gates.inputs import InputsGate
from warden.gates.llm import LlmGate
from warden.gates.outputs import OutputsGate
from warden.gates.proposal import ProposalGate
from warden.gates.residency import ResidencyGate
from warden.guard.pii import PiiRedactor
from warden.ids import new_decision_id
from warden.models.loaded import LoadedModel
from warden.models.monitor import BandMonitor
from warden.models.registry import ModelRegistry
from warden.pipeline.context import DecisionContext, DecisionRequest
from warden.pipeline.runner import Pipeline
from warden.policy.errors_format import validated_body
from warden.policy.loader import LoadedPolicy, load_policy_file, spec_versions
from warden.review.cases import CaseState
from warden.review.desk import ReviewDesk
from warden.review.masking import mask, may_see_raw_pii
from warden.schemas import DecisionRequestBody

DEFAULT_POLICY = Path(__file__).parent / "demo" / "policy.yaml"


class RefusedError(RequestError):
    """The pipeline refused the request; the refusal itself is in the audit log."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        field: str | None,
        decision_id: str,
        http_status: int = 422,
    ) -> None:
        super().__init__(message, code=code, field=field)
        self.decision_id = decision_id
        self.http_status = http_status

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "decision_id": self.decision_id}


def parse_decision_request(payload: Any, idempotency_key: str | None = None) -> DecisionRequest:
    body = validated_body(DecisionRequestBody, payload)
    if idempotency_key and body.idempotency_key and idempotency_key != body.idempotency_key:
        raise RequestError(
            "idempotency_key: body and Idempotency-Key header disagree", field="idempotency_key"
        )
    key = idempotency_key or body.idempotency_key
    tool_calls = [c.model_dump() for c in body.tool_calls] if body.tool_calls else None
    meaning: dict[str, Any] = {
        "decision_type": body.decision_type,
        "jurisdiction": body.jurisdiction,
        "inputs": body.inputs,
        "tool_calls": tool_calls,
    }
    if body.data_class is not None:
        meaning["data_class"] = body.data_class
    if body.context is not None:
        meaning["context"] = body.context
    try:
        digest = request_hash(meaning)
    except NotCanonicalError as exc:
        raise RequestError(str(exc), field=exc.path) from None
    return DecisionRequest(
        body.decision_type,
        body.jurisdiction,
        body.inputs,
        key,
        digest,
        tool_calls,
        data_class=body.data_class,
        context=body.context,
    )


def response_from_record(record: dict[str, Any], seq: int, *, replayed: bool) -> dict[str, Any]:
    reasons: list[str] = []
    for gate in record["gates"]:
        for fired in gate["result"].get("rules_fired", []):
            reasons.append(fired["reason"])
    if record.get("stop"):
        reasons.append(record["stop"]["message"])
    # the last gate's copy: the outputs gate's redacted one when it redacted
    proposal = next(
        (g["result"]["proposal"] for g in reversed(record["gates"]) if g["result"].get("proposal")),
        None,
    )
    return {
        "decision_id": record["decision_id"],
        "decision_type": record["decision_type"],
        "jurisdiction": record["jurisdiction"],
        "outcome": record["outcome"],
        "score": record["score"],
        "reasons": reasons,
        "policy_version": record["policy"]["version"],
        "thresholds_version": record["thresholds_version"],
        "audit_seq": seq,
        "replayed": replayed,
        "stopped_by": None
        if not record.get("stop")
        else {"gate": record["stop"].get("gate"), "code": record["stop"].get("code")},
        "proposal": proposal,
    }


def held_record(held: StoredEntry, request: DecisionRequest, field: str) -> dict[str, Any]:
    """The record holding `request`'s idempotency key; 409 naming `field` (the body field
    or the header the caller used) when it was made for a different request."""
    record: dict[str, Any] = held.body()
    if record["request"]["request_hash"] != request.request_hash:
        raise ConflictError(
            f"{field}: key {request.idempotency_key!r} was already used with a "
            f"different request (decision {held.decision_id})",
            code="idempotency.conflict",
            field=field,
        )
    return record


class Gateway:
    def __init__(
        self,
        policy: LoadedPolicy,
        store: AuditStore,
        keyring: KeyRing | None = None,
        models: Mapping[str, LoadedModel] | None = None,
    ) -> None:
        from warden.models.thresholds import active_thresholds

        self.policy = policy
        self.store = store
        self.keyring = keyring
        self.endpoints = EndpointRuntime(policy.routes)
        #: requests inside `run_request` now (on this process's event loop)
        self.in_flight = 0
        if isinstance(store, SQLiteAuditStore):
            # one request alone commits on the loop itself: no thread hop per commit
            store.commit_inline_when(lambda: self.in_flight <= 1)
        #: the policy's `model:` references, loaded at start-up (Gateway.open)
        self.models = dict(models or {})
        self.bands = BandsGate(active_thresholds(store))
        self.monitor = BandMonitor()
        for name, version in self.bands.thresholds.items():
            self.monitor.set_expected(name, version.document["fitted_on"].get("review_share"))
        self.pipeline = Pipeline(
            [
                AdmissionGate(),
                ResidencyGate(),
                InputsGate(),
                LlmGate(store, self.endpoints),
                ProposalGate(),
                DecideGate(self.models),
                self.bands,
                OutputsGate(),
                CommitGate(store),
            ]
        )

    @classmethod
    def open(
        cls,
        data_dir: str | Path,
        policy_path: str | Path | None = None,
        *,
        registry: ModelRegistry | None = None,
    ) -> Gateway:
        """Open a data directory. Models the policy names are loaded from `registry`
        (default: the MLflow registry in the data directory) once, here."""
        from warden.models.serving import load_policy_models, referenced_models

        data_dir = Path(data_dir)
        policy = load_policy_file(policy_path or DEFAULT_POLICY)
        store = SQLiteAuditStore(data_dir, on_commit=metrics.observe_commit)
        try:
            models = {}
            if referenced_models(policy):
                models = load_policy_models(policy, registry or ModelRegistry(data_dir), store)
            gateway = cls(policy, store, KeyRing(data_dir / "keys.yaml"), models)
            gateway.activate_policy()
        except BaseException:
            store.close()
            raise
        return gateway

    def recent_history(self) -> RecentHistory:
        """What the output guard's length windows and the band monitor were fed before
        this process started, read from the audit log's tail (`warden.baselines`)."""
        from warden.guard.surfaces import anomaly_checker

        if not isinstance(self.store, SQLiteAuditStore):
            return RecentHistory()  # a request worker: the parent seeds the series board
        current = {}
        for name, compiled in self.policy.decision_types.items():
            active = self.bands.thresholds.get(name)
            model = self.models.get(compiled.spec.model) if compiled.spec.model else None
            current[name] = Current(
                thresholds_version=active.version if active else compiled.thresholds_version,
                model_sha256=model.sha256 if model else None,
                template_version=compiled.prompt.version if compiled.prompt else None,
                from_thresholds=name in self.monitor.expected,
                answers=compiled.spec.llm is not None,
                spec_version=compiled.spec_version,
            )
        store = self.store

        def stored_spec_versions(policy_version: str) -> dict[str, str]:
            blob = store.get_blob(policy_version)
            return spec_versions(blob[1]) if blob is not None and blob[0] == "policy" else {}

        return recent_history(
            store.newest_entries(("decision", "refusal")),
            policy_version=self.policy.version,
            spec_versions=stored_spec_versions,
            current=current,
            lengths=anomaly_checker().window,
            baseline=self.monitor.baseline,
            window=self.monitor.window,
        )

    def seed_windows(self, history: RecentHistory) -> None:
        """Feed `history` to this process's length windows and band monitor (a server that
        does not share them with other workers; workers replay the series board)."""
        from warden.guard.surfaces import anomaly_checker

        checker = anomaly_checker()
        if checker.shared:
            raise RuntimeError("shared windows are seeded through the series board")
        for name, lengths in history.lengths.items():
            for length in lengths:
                checker.observe(name, length)
        for name, outcomes in history.outcomes.items():
            self.monitor.seed(name, outcomes)

    def activate_policy(self) -> None:
        """Store the policy content-addressed and log its activation."""
        blob_id = self.store.put_blob("policy", self.policy.raw)
        assert blob_id == self.policy.version
        prompts = {}
        for compiled in self.policy.decision_types.values():
            if compiled.prompt is not None:  # content-addressed: any version can be fetched
                self.store.put_blob("prompt", compiled.prompt.raw)
                prompts[compiled.prompt.id] = compiled.prompt.version
        body = {
            "policy_version": self.policy.version,
            "name": self.policy.policy.name,
            "source": self.policy.source,
            "activated_at": utc_now(),
            "decision_types": sorted(self.policy.decision_types),
            "residency_policy_version": self.policy.routes.version,
            "prompts": prompts,
        }
        self.store.submit(NewEntry.of("policy", None, body)).result()

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- decisions ---------------------------------------------------------------------
    async def decide(
        self, payload: Any, caller: Principal, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        caller.require(Permission.DECIDE)
        request = parse_decision_request(payload, idempotency_key)
        held = self.held_for(request, caller)
        if held is not None:
            return self._replay(held, request)
        ctx = await self.run_request(request, caller)
        held = self.race_winner(ctx)
        if held is not None:
            return self._replay(held, request)
        return self.response_for(ctx)

    def held_for(self, request: DecisionRequest, caller: Principal) -> StoredEntry | None:
        """The record already holding the request's idempotency key, if any."""
        if not request.idempotency_key:
            return None
        return self.store.by_unique_key(
            idempotency_unique_key(caller.name, request.idempotency_key)
        )

    def race_winner(self, ctx: DecisionContext) -> StoredEntry | None:
        """The record of a concurrent request with the same key that committed first."""
        conflict = ctx.results["commit"].get("conflict_seq")
        if conflict is None:
            return None
        held = self.store.entry(int(conflict))
        assert held is not None
        return held

    async def run_request(self, request: DecisionRequest, caller: Principal) -> DecisionContext:
        """Run an already-parsed request through every gate (the doors parse)."""
        caller.require(Permission.DECIDE)
        ctx = DecisionContext(new_decision_id(), request, caller, self.policy, utc_now())
        self.in_flight += 1
        try:
            await self.pipeline.run(ctx)
        finally:
            self.in_flight -= 1
        if "conflict_seq" not in ctx.results["commit"]:
            self._count(ctx)
        return ctx

    def response_for(self, ctx: DecisionContext) -> dict[str, Any]:
        """The decision response of a finished context; a refusal raises RefusedError."""
        request = ctx.request
        commit = ctx.results["commit"]
        if ctx.stop is not None and ctx.stop.disposition == "refuse":
            raise RefusedError(
                ctx.stop.message,
                code=ctx.stop.code,
                field=ctx.stop.field,
                decision_id=ctx.decision_id,
                http_status=ctx.stop.http_status,
            )
        record_view = {
            "decision_id": ctx.decision_id,
            "decision_type": request.decision_type,
            "jurisdiction": request.jurisdiction,
            "outcome": ctx.outcome(),
            "score": ctx.results.get("bands", {}).get("score"),
            "gates": [{"result": r} for r in ctx.results.values()],
            "stop": None
            if ctx.stop is None
            else {"message": ctx.stop.message, "gate": ctx.stop.gate, "code": ctx.stop.code},
            "policy": {"version": self.policy.version},
            "thresholds_version": ctx.results.get("bands", {}).get("thresholds_version"),
        }
        return response_from_record(record_view, int(commit["seq"]), replayed=False)

    def decide_sync(
        self, payload: Any, caller: Principal, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        async def once() -> dict[str, Any]:
            try:
                return await self.decide(payload, caller, idempotency_key=idempotency_key)
            finally:  # the model endpoints' connection pool belongs to this loop
                await self.endpoints.stop()

        return asyncio.run(once())

    def _replay(self, held: StoredEntry, request: DecisionRequest) -> dict[str, Any]:
        record = held_record(held, request, "idempotency_key")
        return response_from_record(record, held.seq, replayed=True)

    def _count(self, ctx: DecisionContext) -> None:
        outcome = ctx.outcome()
        if ctx.caller.exercise:  # counted apart, and kept out of the band monitor
            metrics.EXERCISES.labels(ctx.request.decision_type, outcome).inc()
            return
        if ctx.stop is not None and ctx.stop.disposition == "refuse":
            metrics.REFUSALS.labels(ctx.stop.code).inc()
            if ctx.stop.code == "residency.unlabeled":
                metrics.UNLABELED.inc()
            return
        metrics.DECISIONS.labels(ctx.request.decision_type, outcome).inc()
        self.monitor.observe(ctx.request.decision_type, outcome)
        metrics.DECISION_LATENCY.labels(ctx.request.decision_type).observe(
            (time.perf_counter_ns() - ctx.started_ns) / 1e9
        )

    # -- reading -----------------------------------------------------------------------
    def entries(self, decision_id: str, caller: Principal) -> list[StoredEntry]:
        caller.require(Permission.READ_DECISION)
        entries = self.store.entries_for(decision_id)
        if not entries:
            raise NotFoundError(f"no decision with id {echo(decision_id)}")
        first = final_record(entries).body()
        if (
            not caller.can(Permission.READ_ANY_DECISION)
            and first.get("caller", {}).get("name") != caller.name
        ):
            raise NotFoundError(f"no decision with id {echo(decision_id)}")
        return entries

    def record(self, decision_id: str, caller: Principal) -> dict[str, Any]:
        """The decision's full record; personal data masked for people who read other
        callers' decisions and whose role the policy does not let see it raw
        (`review.raw_pii_roles`, the same rule as the workbench)."""
        entries = self.entries(decision_id, caller)
        document = record_document(decision_id, entries)
        if not self.sees_raw_pii(caller):
            document, count = mask(document, PiiRedactor.default())
            document["pii_masked"] = count
        return document

    def sees_raw_pii(self, caller: Principal) -> bool:
        """A service reads back only what it sent itself; people reading any decision see
        raw personal data only when their role is in `review.raw_pii_roles`."""
        return not caller.can(Permission.READ_ANY_DECISION) or may_see_raw_pii(caller, self.policy)

    def proof(self, decision_id: str, caller: Principal) -> dict[str, Any]:
        self.entries(decision_id, caller)  # the same read check as the record itself
        document = self.proof_for(self.store, decision_id, caller)
        if not self.sees_raw_pii(caller):
            masked, count = mask(json.loads(document["entry"]), PiiRedactor.default())
            document["entry"] = None
            document["entry_masked"] = masked
            document["pii_masked"] = count
        return document

    @staticmethod
    def proof_for(store: AuditStore, decision_id: str, caller: Principal) -> dict[str, Any]:
        """Inclusion proof of the decision's record against the latest checkpoint."""
        caller.require(Permission.READ_DECISION)
        entries = store.entries_for(decision_id)
        if not entries:
            raise NotFoundError(f"no decision with id {echo(decision_id)}")
        entry = final_record(entries)
        checkpoint = store.latest_checkpoint()
        if checkpoint is None or checkpoint.size <= entry.seq:
            raise NotFoundError(f"decision {echo(decision_id)} is not covered by a checkpoint yet")
        proof = store.inclusion_proof(entry.seq, checkpoint.size)
        return {
            "decision_id": decision_id,
            "leaf_index": entry.seq,
            "tree_size": checkpoint.size,
            "entry": entry.data.decode(),
            "leaf_hash": base64.b64encode(leaf_hash(entry.data)).decode(),
            "proof": [base64.b64encode(h).decode() for h in proof],
            "checkpoint": checkpoint.note,
            "vkey": store.vkey,
        }

    def checkpoint(self, caller: Principal) -> dict[str, Any]:
        caller.require(Permission.READ_AUDIT)
        cp = self.store.latest_checkpoint()
        if cp is None:
            raise NotFoundError("the audit log has no checkpoint yet")
        return {
            "size": cp.size,
            "root": base64.b64encode(cp.root).decode(),
            "created_at": cp.created_at,
            "note": cp.note,
            "vkey": self.store.vkey,
            "origin": self.store.origin,
        }

    # -- review (the desk in warden.review holds the rules) -------------------------------
    @property
    def desk(self) -> ReviewDesk:
        return ReviewDesk(self.store, self.policy)

    def review_queue(self, caller: Principal, limit: int = 100) -> list[dict[str, Any]]:
        return self.desk.queue(caller, limit)

    def review_case(self, decision_id: str, caller: Principal) -> CaseState:
        caller.require(Permission.READ_QUEUE)
        return self.desk.case(self.entries(decision_id, caller))

    async def review_claim(self, decision_id: str, caller: Principal) -> dict[str, Any]:
        caller.require(Permission.REVIEW)
        return await self.desk.claim(self.entries(decision_id, caller), caller)

    async def review_release(self, decision_id: str, caller: Principal) -> dict[str, Any]:
        caller.require(Permission.REVIEW)
        return await self.desk.release(self.entries(decision_id, caller), caller)

    async def review(self, decision_id: str, caller: Principal, payload: Any) -> dict[str, Any]:
        caller.require(Permission.REVIEW)
        desk = self.desk
        desk.parse_review(payload)  # a bad body is a 422 before anything is looked up
        return await desk.decide(self.entries(decision_id, caller), caller, payload)

    # -- models, thresholds, monitoring, reproduce (logic in warden.models / warden.audit) --
    async def propose_thresholds(
        self, caller: Principal, document: dict[str, Any], report: dict[str, Any]
    ) -> dict[str, Any]:
        from warden.models.thresholds import propose

        return await propose(self.store, caller, document, report)

    async def calibrate_thresholds(
        self,
        caller: Principal,
        decision_type: str,
        *,
        rows: int = 40_000,
        seed: int = 424_242,
        review_capacity: float | None = None,
        report_dir: Path | None = None,
    ) -> dict[str, Any]:
        """Calibrate, propose the thresholds version and write the PNG report (default:
        `reports/<version>` in the data directory). Runs off the event loop."""
        caller.require(Permission.ADMIN)

        def fit() -> Any:  # scikit-learn and matplotlib import here, off the loop too
            from warden.models.calibrate import calibrate

            return calibrate(
                self.policy, self.models, self.store, decision_type,
                generator_rows=rows, seed=seed, review_capacity=review_capacity,
            )  # fmt: skip

        def report(out: Path) -> list[Path]:
            from warden.models.report import write_calibration_report

            return write_calibration_report(result, out)

        result = await asyncio.to_thread(fit)
        # the report first, beside its final place, and moved there once the proposal is
        # committed: a report that fails leaves neither a proposal nor a half-written report
        version = content_id(canonical_json(result.document))
        home = getattr(self.store, "data_dir", None)
        out = report_dir or (Path(home) / "reports" / version[7:19] if home else None)
        if out is None:
            proposed = await self.propose_thresholds(caller, result.document, result.summary)
            return {**proposed, "summary": result.summary, "report": []}
        staging = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.partial")
        try:
            written = await asyncio.to_thread(report, staging)
            proposed = await self.propose_thresholds(caller, result.document, result.summary)
            paths = _move_into(written, staging, out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return {**proposed, "summary": result.summary, "report": [str(p) for p in paths]}

    async def approve_thresholds(self, version: str, caller: Principal) -> dict[str, Any]:
        """Activate a proposed thresholds version (a second admin: maker-checker)."""
        from warden.models.thresholds import approve, load_version

        result = await approve(self.store, caller, version)
        active = load_version(self.store, version)
        self.bands.thresholds[active.decision_type] = active
        self.monitor.set_expected(
            active.decision_type, active.document["fitted_on"].get("review_share")
        )
        return result

    def band_monitor(self, caller: Principal) -> dict[str, Any]:
        caller.require(Permission.READ_AUDIT)
        return {"decision_types": self.monitor.status()}

    def reproduce(self, decision_id: str, caller: Principal) -> dict[str, Any]:
        from warden.audit.reproduce import reproduce_entries

        caller.require(Permission.READ_ANY_DECISION)
        return reproduce_entries(self.store, self.entries(decision_id, caller)).as_dict()


def _move_into(files: list[Path], staging: Path, out: Path) -> list[Path]:
    """Move a report written under `staging` into `out` (made if missing; a file of the
    same name there is replaced, nothing else in it is touched)."""
    moved = []
    for path in files:
        target = out / path.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        path.replace(target)
        moved.append(target)
    return moved


def verify_proof_document(doc: dict[str, Any], vkey: str) -> str:
    """Check a proof document end to end; returns a one-line summary or raises."""
    from warden.audit.checkpoint import CheckpointVerifier

    checkpoint = CheckpointVerifier(vkey).verify(doc["checkpoint"])
    if doc.get("entry") is None:
        # masked for the caller's role: the inclusion of the leaf hash can still be proven,
        # that the content hashes to it only by a role that may see the raw entry
        lh = base64.b64decode(doc["leaf_hash"])
        content = "; its content is masked for this role, so only the leaf hash was checked"
    else:
        lh = leaf_hash(doc["entry"].encode())
        if base64.b64encode(lh).decode() != doc["leaf_hash"]:
            raise ValueError("entry does not hash to the stated leaf hash")
        content = ""
    proof = [base64.b64decode(p) for p in doc["proof"]]
    verify_inclusion(lh, doc["leaf_index"], checkpoint.size, proof, checkpoint.root)
    return (
        f"entry {doc['leaf_index']} is included in the log of size {checkpoint.size} "
        f"signed by {vkey.split('+')[0]}{content}"
    )
