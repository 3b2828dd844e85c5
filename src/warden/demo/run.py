"""`warden demo`: a seeded card-payment stream through the whole pipeline on the embedded
store, then the evidence: bands per jurisdiction, latency, the audit log verified, and one
decision's full record with its inclusion proof checked against a signed checkpoint."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.syntax import Syntax
from rich.table import Table

from warden.audit.checkpoint import CheckpointVerifier
from warden.audit.verify import verify_log
from warden.auth import Principal, Role
from warden.demo.claims import ClaimsConfig, claim_requests
from warden.demo.scoring import REGISTRY_FILES, calibrate_bands, prepare_model, print_reproduced
from warden.demo.stream import StreamConfig, payment_requests, strip_truth
from warden.errors import WardenError
from warden.gateway import Gateway, RefusedError, verify_proof_document
from warden.models.policies import SCORED_POLICY
from warden.review.invite import print_invite
from warden.runtime import tune_for_serving

BANDS = ("auto_approve", "review", "auto_decline")


@dataclass
class DemoResult:
    latencies_ms: list[float] = field(default_factory=list)
    by_band: Counter[tuple[str, str]] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    truth: Counter[tuple[bool, str]] = field(default_factory=Counter)
    seconds: float = 0.0
    review_example: str | None = None


def _prepare_dir(data_dir: Path, fresh: bool) -> None:
    if fresh and data_dir.exists():
        if any(data_dir.iterdir()) and not (data_dir / "audit.db").exists():
            raise WardenError(
                f"{data_dir} exists and is not a Warden data directory; choose another --data-dir"
            )
        for item in data_dir.iterdir():  # the model registry stays: training is slow
            if item.name in REGISTRY_FILES:
                continue
            shutil.rmtree(item) if item.is_dir() else item.unlink()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


async def _drive(
    gateway: Gateway,
    stream: list[dict[str, Any]],
    concurrency: int,
    caller: Principal,
    progress: Progress,
) -> DemoResult:
    result = DemoResult()
    task = progress.add_task("deciding", total=len(stream))
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for item in stream:
        queue.put_nowait(item)

    async def worker() -> None:
        while not queue.empty():
            item = queue.get_nowait()
            truth = item["_truth"]
            started = time.perf_counter()
            try:
                outcome = await gateway.decide(strip_truth(item), caller)
            except RefusedError as exc:
                result.refused[exc.code] += 1
            else:
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
                band = outcome["outcome"]
                result.by_band[(outcome["jurisdiction"], band)] += 1
                result.truth[(bool(truth["fraud"]), band)] += 1
                if band == "review" and result.review_example is None and outcome["reasons"]:
                    result.review_example = outcome["decision_id"]
            progress.advance(task)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result


async def _drive_claims(
    gateway: Gateway,
    claims: list[dict[str, Any]],
    concurrency: int,
    caller: Principal,
    progress: Progress,
) -> Counter[tuple[str, str]]:
    """Run the claims stream; count (attack or 'clean', outcome)."""
    task = progress.add_task("claims", total=len(claims))
    outcomes: Counter[tuple[str, str]] = Counter()
    queue = list(reversed(claims))

    async def worker() -> None:
        while queue:
            item = queue.pop()
            attack = item["_truth"]["attack"] or "clean"
            request = {k: v for k, v in item.items() if k != "_truth"}
            try:
                outcome = (await gateway.decide(request, caller))["outcome"]
            except RefusedError as exc:
                outcome = f"refused ({exc.code})"
            outcomes[(attack, outcome)] += 1
            progress.advance(task)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, 8))))
    return outcomes


def _print_claims(
    console: Console, gateway: Gateway, outcomes: Counter[tuple[str, str]], start_seq: int
) -> None:
    from warden.guard.stats import guard_stats, stats_table

    console.print(stats_table(guard_stats(gateway.store.iter_entries(start_seq))))
    table = Table(title="Claims: where each kind of input went", title_justify="left")
    table.add_column("input")
    columns = sorted({o for _, o in outcomes}, key=lambda o: (o.startswith("refused"), o))
    for column in columns:
        table.add_column(column, justify="right")
    for attack in sorted({a for a, _ in outcomes}, key=lambda a: (a != "clean", a)):
        table.add_row(attack, *(str(outcomes[(attack, c)]) for c in columns))
    console.print(table)


def run_demo(
    data_dir: Path,
    *,
    requests: int,
    concurrency: int,
    seed: int,
    fresh: bool,
    console: Console,
    claims: int = 300,
    triage: int = 120,
) -> DemoResult:
    _prepare_dir(data_dir, fresh)
    tune_for_serving()
    console.rule("[bold]Warden demo — card-payment fraud screening, embedded SQLite audit")
    stream = list(payment_requests(requests, StreamConfig(seed=seed)))
    caller = Principal("demo-payments-service", Role.SERVICE)
    reviewer = Principal("demo-reviewer", Role.REVIEWER)
    prepare_model(data_dir, console)
    with contextlib.ExitStack() as stack:
        sims = {}
        policy_path = SCORED_POLICY
        if triage:  # model endpoints: simulators on free ports, the policy pointed at them
            from warden.endpoints.simulated import simulated_policy
            from warden.policy.loader import load_policy_file

            data_dir.mkdir(parents=True, exist_ok=True)
            simulated = stack.enter_context(
                simulated_policy(
                    load_policy_file(SCORED_POLICY), data_dir / "upstreams", latency_ms=20.0
                )
            )
            sims = simulated.endpoints
            policy_path = simulated.path
        gateway = stack.enter_context(Gateway.open(data_dir, policy_path))
        console.print(f"data directory  {data_dir.resolve()}")
        console.print(f"policy          {gateway.policy.source}  version {gateway.policy.version}")
        console.print(
            f"audit log       origin {gateway.store.origin}, verifier key {gateway.store.vkey}",
            highlight=False,
        )
        calibrate_bands(gateway, data_dir, console, rows=min(20_000, max(10_000, 5 * requests)))
        columns = (
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console) as progress:
            result = asyncio.run(_drive(gateway, stream, concurrency, caller, progress))
        _print_summary(console, result, requests)
        if claims:
            console.rule("[bold]Claims intake — text, documents and tool calls through the guard")
            claim_stream = list(claim_requests(claims, ClaimsConfig(seed=seed)))
            start = gateway.store.size()
            with Progress(*columns, console=console) as progress:
                outcomes = asyncio.run(
                    _drive_claims(gateway, claim_stream, concurrency, caller, progress)
                )
            _print_claims(console, gateway, outcomes, start)
        if triage:
            _run_triage(console, gateway, caller, sims, triage, seed)
        _print_audit(console, gateway, result, reviewer)
        print_reproduced(gateway, result.review_example, console)
        queued = len(gateway.review_queue(reviewer, limit=100_000))
    console.print(
        f"\nNext: [bold]warden serve --data-dir {data_dir} --policy {SCORED_POLICY}[/] for the "
        "HTTP API with the model; "
        f"[bold]warden audit verify --data-dir {data_dir}[/] to check the log again."
    )
    print_invite(console, data_dir, queued, policy=SCORED_POLICY)
    return result


def _run_triage(
    console: Console,
    gateway: Gateway,
    caller: Principal,
    sims: dict[str, Any],
    n: int,
    seed: int,
) -> None:
    from warden.demo.triage import drive_triage, triage_requests, window
    from warden.endpoints.verify import access_log_line, routes_table, verify_routes

    console.rule("[bold]Claims triage — a model proposes, the gate verifies, residency routes")
    console.print(
        "upstream simulators (stand-ins for hosted models, not models): "
        + ", ".join(f"{s.name} {s.region} :{s.port}" for s in sims.values())
        + f"; the EU primary ({sims['llm-eu-1'].region}) is killed halfway",
        highlight=False,
    )
    since, until = window()
    requests = triage_requests(n, seed)
    outcomes = asyncio.run(drive_triage(gateway, requests, caller, sims))
    table = Table(title="Claims triage outcomes per jurisdiction", title_justify="left")
    table.add_column("jurisdiction")
    kinds = sorted({o for _, o in outcomes})
    for kind in kinds:
        table.add_column(kind, justify="right")
    for jurisdiction in sorted({j for j, _ in outcomes}):
        table.add_row(jurisdiction, *(str(outcomes[(jurisdiction, k)]) for k in kinds))
    console.print(table)
    report = verify_routes(
        gateway.store,
        gateway.policy.policy,
        since,
        until,
        [s.access_log for s in sims.values()],
    )
    console.print(routes_table(report, title="Routing per jurisdiction (warden routes verify)"))
    line = access_log_line(report)
    if line:
        console.print(line, highlight=False)
    if report.ok:
        console.print(
            "[green]OK[/] every model call went to a zone its jurisdiction allows — by the audit "
            "log and by the simulators' own access logs"
        )
    else:
        console.print(f"[red]{len(report.violations)} residency violations[/]")


def _print_summary(console: Console, result: DemoResult, requests: int) -> None:
    table = Table(title="Decisions per band and jurisdiction", title_justify="left")
    table.add_column("jurisdiction")
    for band in BANDS:
        table.add_column(band, justify="right")
    table.add_column("total", justify="right")
    for jurisdiction in sorted({j for j, _ in result.by_band}):
        counts = [result.by_band[(jurisdiction, band)] for band in BANDS]
        table.add_row(jurisdiction, *map(str, counts), str(sum(counts)))
    totals = [sum(v for (j, b), v in result.by_band.items() if b == band) for band in BANDS]
    table.add_row("[bold]all", *map(str, totals), str(sum(totals)))
    console.print(table)
    for code, count in sorted(result.refused.items()):
        console.print(
            f"refused (HTTP 422)  {code}: {count}  — recorded in the audit log, counted on /metrics"
        )

    quality = Table(title="Against the generator's ground truth", title_justify="left")
    quality.add_column("truth")
    for band in BANDS:
        quality.add_column(band, justify="right")
    for fraud in (True, False):
        quality.add_row(
            "fraud" if fraud else "legitimate",
            *(str(result.truth[(fraud, band)]) for band in BANDS),
        )
    console.print(quality)

    lat = result.latencies_ms
    decided = len(lat)
    console.print(
        f"{decided} decisions in {result.seconds:.2f}s = {decided / result.seconds:,.0f}/s   "
        f"latency p50 {percentile(lat, 50):.2f} ms  p95 {percentile(lat, 95):.2f} ms  "
        f"p99 {percentile(lat, 99):.2f} ms  (mean {statistics.fmean(lat) if lat else 0:.2f} ms; "
        "each includes the durable audit commit)"
    )


def _print_audit(
    console: Console, gateway: Gateway, result: DemoResult, reviewer: Principal
) -> None:
    store = gateway.store
    decision_id = result.review_example
    if decision_id is not None:  # a reviewer claims and decides one queued case: new entries
        asyncio.run(gateway.review_claim(decision_id, reviewer))
        asyncio.run(
            gateway.review(
                decision_id,
                reviewer,
                {
                    "outcome": "decline",
                    "rationale": "Demo: new device and high-risk merchant category; "
                    "customer unreachable.",
                    "label": "positive",
                },
            )
        )
    checkpoints = list(store.checkpoints())
    report = verify_log(
        store.iter_entries(), checkpoints, CheckpointVerifier(store.vkey), origin=store.origin
    )
    console.print(
        f"audit log: {report.entries} entries, {len(checkpoints)} signed checkpoints "
        f"(one per group commit, {report.entries / max(len(checkpoints), 1):.1f} entries each "
        f"on average); verify: "
        + (
            "[green]OK — every checkpoint matches the recomputed Merkle tree[/]"
            if report.ok
            else f"[red]FAILED: {report.problems[0]}[/]"
        )
    )
    if decision_id is None:
        return
    record = gateway.record(decision_id, reviewer)
    console.rule(
        f"[bold]Full audit record of decision {decision_id}, as a reviewer reads it "
        f"({record.get('pii_masked', 0)} personal-data values masked)"
    )
    console.print(Syntax(json.dumps(record, indent=2), "json", word_wrap=True))
    # the proof is read by a role that may see the raw entry, so its content is checked too
    proof = gateway.proof(decision_id, Principal("demo-admin", Role.ADMIN))
    summary = verify_proof_document(proof, store.vkey)
    console.rule("[bold]Inclusion proof against the latest signed checkpoint")
    console.print(
        f"leaf index {proof['leaf_index']}, tree size {proof['tree_size']}, "
        f"{len(proof['proof'])} proof hashes"
    )
    console.print(
        Panel(
            proof["checkpoint"].rstrip("\n"), title="signed checkpoint (C2SP note)", expand=False
        ),
        highlight=False,
    )
    console.print(f"[green]verified:[/] {summary}")
