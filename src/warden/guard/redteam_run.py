"""`warden redteam`, the run: send every probe (`warden.guard.redteam`) through its door —
in-process (`Gateway.decide`, `warden.frontdoor.chat_completion`) or to a running gateway by
URL (`POST /v1/decisions`, `POST /v1/chat/completions` with the Warden headers) — then read
the decision's audit record and judge it by its gate results, not by the outcome alone.

An attack on an input surface is *detected* when the record's inputs gate has a hit on that
surface (or refused the document) and the decision was not auto-approved; a benign probe
with such a hit is a false positive. On the output surface a hit of the outputs gate that
stopped the answer, or a redaction of personal data, is a detection. In-process, LLM decision types
are answered by upstream *simulators* started for the run (`warden dev upstream
--scripted`, one per HTTP endpoint of the policy), so nothing hosted is called."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from warden.audit.record import gate_results
from warden.guard.redteam import SURFACES, Probe, Target
from warden.policy.loader import LoadedPolicy

_STOPPED = ("review", "auto_decline", "refused")


@dataclass(frozen=True)
class Verdict:
    """What the audit record says about one probe."""

    decision_id: str | None
    outcome: str  # auto_approve | review | auto_decline | refused | error
    signal: bool  # a guard hit (or redaction) on the probe's surface
    reached: bool = True  # the output guard saw a model answer (output probes)
    #: the answer left with its personal data redacted, and nothing else was hit (output)
    redacted: bool = False
    error: str | None = None  # no decision was recorded (the probe itself is broken)


@dataclass
class SurfaceResult:
    surface: str
    decision_type: str
    attacks: int = 0
    detected: int = 0
    benign: int = 0
    false_positives: int = 0
    #: attacks with a guard hit that were nevertheless auto-approved (must be 0)
    flagged_but_approved: int = 0
    #: output probes stopped before a model answered (not counted in the rates)
    unreached: int = 0
    errors: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)
    false_alarms: list[str] = field(default_factory=list)
    min_detection: float = 0.0
    max_fpr: float = 1.0

    @property
    def detection_rate(self) -> float:
        return self.detected / self.attacks if self.attacks else 0.0

    @property
    def false_positive_rate(self) -> float:
        return self.false_positives / self.benign if self.benign else 0.0

    @property
    def passed(self) -> bool:
        return (
            self.attacks > 0
            and not self.errors
            and self.flagged_but_approved == 0
            and self.detection_rate >= self.min_detection
            and self.false_positive_rate <= self.max_fpr
        )

    def problems(self) -> list[str]:
        out = []
        if self.attacks == 0:
            out.append("no attack reached this surface")
        if self.errors:
            out.append(f"{len(self.errors)} probes not decided ({self.errors[0]})")
        if self.flagged_but_approved:
            out.append(f"{self.flagged_but_approved} flagged attacks auto-approved")
        if self.detection_rate < self.min_detection:
            misses = ", ".join(sorted(set(self.misses))) or "-"
            out.append(f"detection {self.detection_rate:.1%} < {self.min_detection:.0%} ({misses})")
        if self.false_positive_rate > self.max_fpr:
            alarms = ", ".join(sorted(set(self.false_alarms))) or "-"
            out.append(f"FPR {self.false_positive_rate:.1%} > {self.max_fpr:.0%} ({alarms})")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "misses": sorted(set(self.misses)),
            "false_alarms": sorted(set(self.false_alarms)),
            "errors": self.errors[:5],
            "detection_rate": round(self.detection_rate, 4),
            "false_positive_rate": round(self.false_positive_rate, 4),
            "passed": self.passed,
        }


@dataclass
class SurfaceTotal(SurfaceResult):
    """One surface over every decision type; it passes when each of them does."""

    failed: list[str] = field(default_factory=list)  # the decision types that did not

    @property
    def passed(self) -> bool:
        return not self.failed


@dataclass
class Report:
    target: str  # the URL, or "in-process"
    results: list[SurfaceResult]
    totals: list[SurfaceTotal]
    targets: list[Target]
    #: endpoint name → simulator URL (in-process runs of LLM decision types)
    simulators: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "passed": self.passed,
            "simulators": self.simulators,
            "results": [r.as_dict() for r in self.results],
            "totals": [
                {
                    k: v
                    for k, v in t.as_dict().items()
                    if k not in ("min_detection", "max_fpr", "decision_type")
                }
                for t in self.totals
            ],
            "not_probed": {t.decision_type: t.skipped for t in self.targets if t.skipped},
            "no_attack_surface": [t.decision_type for t in self.targets if not t.surfaces],
        }


def judge(probe: Probe, record: dict[str, Any]) -> Verdict:
    """Read the probe's surface off a decision (or refusal) record's gate results."""
    gates = gate_results(record)
    outcome = str(record.get("outcome"))
    decision_id = record.get("decision_id")
    if probe.surface == "output":
        result = gates.get("outputs", {})
        findings = result.get("findings", [])
        hit = any(f.get("hit") for f in findings)
        redacted = not hit and any(f.get("redacted") for f in findings)
        reached = bool(result.get("checked"))
        return Verdict(decision_id, outcome, hit or redacted, reached, redacted=redacted)
    result = gates.get("inputs", {})
    signal = any(
        f.get("hit") and f.get("surface") == probe.surface for f in result.get("findings", [])
    )
    if "error" in result and probe.surface == "document":  # a refused (broken) document
        signal = True
    return Verdict(decision_id, outcome, signal)


def summarise(
    policy: LoadedPolicy, probes: Iterable[Probe], verdicts: Iterable[Verdict]
) -> list[SurfaceResult]:
    thresholds = policy.policy.redteam
    results: dict[tuple[str, str], SurfaceResult] = {}
    for probe, verdict in zip(probes, verdicts, strict=True):
        key = (probe.decision_type, probe.surface)
        r = results.get(key)
        if r is None:
            low, high = thresholds.for_surface(probe.decision_type, probe.surface)
            r = results[key] = SurfaceResult(
                probe.surface, probe.decision_type, min_detection=low, max_fpr=high
            )
        if verdict.error is not None:
            r.errors.append(f"{probe.kind}: {verdict.error}")
            continue
        if not verdict.reached:
            r.unreached += 1
            continue
        if probe.attack:
            r.attacks += 1
            # a redaction is the output guard's answer to personal data: the rest is sent
            stopped = verdict.outcome in _STOPPED or verdict.redacted
            if verdict.signal and stopped:
                r.detected += 1
            else:
                r.misses.append(probe.kind)
                if verdict.signal:
                    r.flagged_but_approved += 1
        else:
            r.benign += 1
            if verdict.signal:
                r.false_positives += 1
                r.false_alarms.append(probe.kind)
    order = {name: i for i, name in enumerate(policy.decision_types)}
    return sorted(
        results.values(), key=lambda r: (order[r.decision_type], SURFACES.index(r.surface))
    )


def totals(results: list[SurfaceResult]) -> list[SurfaceTotal]:
    """One line per surface over every decision type."""
    out: dict[str, SurfaceTotal] = {}
    for r in results:
        t = out.setdefault(r.surface, SurfaceTotal(r.surface, "total"))
        t.attacks += r.attacks
        t.detected += r.detected
        t.benign += r.benign
        t.false_positives += r.false_positives
        t.flagged_but_approved += r.flagged_but_approved
        t.unreached += r.unreached
        t.errors += r.errors
        t.misses += r.misses
        t.false_alarms += r.false_alarms
        if not r.passed:
            t.failed.append(r.decision_type)
    return sorted(out.values(), key=lambda t: SURFACES.index(t.surface))


# ------------------------------------------------------------------------------ doors


def _record_of(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    for entry in entries:
        if entry["kind"] in ("decision", "refusal"):
            body: dict[str, Any] = entry["body"]
            return body
    return None


async def _drive_in_process(
    policy_path: Path, data_dir: Path, probes: list[Probe], progress: Callable[[], None]
) -> list[Verdict]:
    from warden.audit.entry import final_record
    from warden.auth import Principal, Role
    from warden.errors import WardenError
    from warden.frontdoor import chat_completion
    from warden.gateway import Gateway

    # probes are exercises here too, so a kept --data-dir holds them as such
    red = Principal("warden-redteam", Role.REDTEAM)
    out = []
    with Gateway.open(data_dir, policy_path) as gateway:
        try:
            for probe in probes:
                decision_id: str | None
                try:
                    if probe.door == "chat":
                        answer = await chat_completion(gateway, probe.request, probe.headers, red)
                        decision_id = answer.decision_id
                    else:
                        decision_id = (await gateway.decide(probe.request, red))["decision_id"]
                except WardenError as exc:
                    decision_id = getattr(exc, "decision_id", None)
                    if decision_id is None:
                        out.append(Verdict(None, "error", False, error=f"{exc.code}: {exc}"))
                        progress()
                        continue
                record = final_record(gateway.store.entries_for(decision_id)).body()
                out.append(judge(probe, record))
                progress()
        finally:  # the model endpoints' connection pool belongs to this loop
            await gateway.endpoints.stop()
    return out


def _require_redteam_key(http: Any, url: str) -> None:
    """Before any probe: the key must have the `redteam` role, so that the gateway records
    every probe as an exercise and none of them lands in its reviewers' queue, its band
    monitor or its guard statistics."""
    from warden.errors import AuthError, WardenError

    response = http.get("/v1/whoami")
    if response.status_code in (401, 403):
        try:
            message = response.json().get("error", {}).get("message", "not allowed")
        except ValueError:
            message = "not allowed"
        raise AuthError(
            f"{url}/v1/whoami: HTTP {response.status_code} ({message}): pass a key with "
            "role redteam with --api-key or WARDEN_API_KEY"
        )
    if response.status_code != 200:
        raise WardenError(
            f"{url}/v1/whoami: HTTP {response.status_code}: is this a Warden gateway "
            "(and one recent enough to tell a red-team key)?"
        )
    me = response.json()
    if me.get("role") != "redteam":
        raise WardenError(
            f"--api-key: key {me.get('name')!r} has role {me.get('role')!r}; a red team "
            "against a live gateway needs a key with role redteam (`warden keys create "
            "NAME --role redteam`), whose decisions are recorded as exercises and kept out "
            "of the review queue, the band monitor and the guard statistics"
        )


def _drive_over_http(
    url: str, api_key: str, probes: list[Probe], progress: Callable[[], None]
) -> list[Verdict]:
    import httpx

    from warden.errors import AuthError

    out = []
    with httpx.Client(base_url=url, headers={"X-API-Key": api_key}, timeout=60) as http:
        _require_redteam_key(http, url)
        for probe in probes:
            path = "/v1/chat/completions" if probe.door == "chat" else "/v1/decisions"
            response = http.post(path, json=probe.request, headers=probe.headers)
            decision_id = response.headers.get("x-warden-decision-id")
            if decision_id is None:
                try:
                    error = response.json().get("error", {})
                except ValueError:
                    error = {}
                decision_id = error.get("decision_id")
                if response.status_code in (401, 403):  # every probe would fail alike
                    raise AuthError(
                        f"{url}{path}: HTTP {response.status_code} "
                        f"({error.get('message', 'not allowed')}): pass the key of a service "
                        "that may decide with --api-key or WARDEN_API_KEY"
                    )
                if decision_id is None:
                    message = error.get("message") or response.text[:200]
                    detail = f"HTTP {response.status_code}: {message}"
                    out.append(Verdict(None, "error", False, error=detail))
                    progress()
                    continue
            got = http.get(f"/v1/decisions/{decision_id}")
            record = _record_of(got.json().get("entries", [])) if got.status_code == 200 else None
            if record is None:
                out.append(
                    Verdict(decision_id, "error", False, error=f"record: HTTP {got.status_code}")
                )
            else:
                out.append(judge(probe, record))
            progress()
    return out


def run_redteam(
    policy: LoadedPolicy,
    probes: list[Probe],
    targets: list[Target],
    *,
    data_dir: Path | None = None,
    url: str | None = None,
    api_key: str | None = None,
    progress: Callable[[], None] = lambda: None,
    on_simulators: Callable[[dict[str, str]], None] = lambda _: None,
) -> Report:
    """Drive the probes and summarise them per (decision type, surface)."""
    simulators: dict[str, str] = {}
    if url is not None:
        verdicts = _drive_over_http(url.rstrip("/"), api_key or "", probes, progress)
    else:
        verdicts = _run_local(policy, probes, data_dir, simulators, on_simulators, progress)
    results = summarise(policy, probes, verdicts)
    return Report(url or "in-process", results, totals(results), targets, simulators)


def _run_local(
    policy: LoadedPolicy,
    probes: list[Probe],
    data_dir: Path | None,
    simulators: dict[str, str],
    on_simulators: Callable[[dict[str, str]], None],
    progress: Callable[[], None],
) -> list[Verdict]:
    from warden.endpoints.simulated import simulated_policy

    llm = {n for n, c in policy.decision_types.items() if c.spec.llm is not None}
    needs_models = any(p.decision_type in llm for p in probes)
    with tempfile.TemporaryDirectory(prefix="warden-redteam-") as tmp:
        work = Path(tmp)
        home = data_dir or work / "data"
        if needs_models and any(e.kind == "openai_chat" for e in policy.policy.endpoints.values()):
            with simulated_policy(policy, work / "upstreams", scripted=True) as sim:
                simulators.update({n: s.url for n, s in sim.endpoints.items()})
                on_simulators(simulators)
                return asyncio.run(_drive_in_process(sim.path, home, probes, progress))
        source = Path(policy.source)
        if not source.is_file():
            source = work / "policy.yaml"
            source.write_bytes(policy.raw)
        return asyncio.run(_drive_in_process(source, home, probes, progress))
