"""Gateway overhead, side by side in one run: the same upstream simulator (`warden dev
upstream`) and the same compiled load generator (`bench/loadgen`) against

  direct   the simulator itself,
  warden   Warden's OpenAI-compatible front door `POST /v1/chat/completions` (`warden serve`:
           API key, admission, residency routing, input guard, LLM call with an intent entry
           committed before it, output guard, durable SQLite audit with group commit),
  litellm  the LiteLLM proxy, a pinned release (bench/litellm-requirements.txt) in its own
           venv bench/.venv-litellm, no database, routing the model name to the simulator.

All servers are started first; then each round measures every target with 1 client
(added latency) and with 32 concurrent clients (throughput), alternating, and the tables
show the median over the rounds (a load spike from elsewhere on the shared VM then hits
every target alike). Added latency = the target's percentile minus the direct one at the
same concurrency. Everything runs on 127.0.0.1; every run is bounded in time.

    make -C bench loadgen
    .venv/bin/python bench/bench_gateway_overhead.py [--rounds 3] [--seconds 6] [--targets …]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from common import free_port, machine

BENCH = Path(__file__).parent
ROOT = BENCH.parent
LOADGEN = BENCH / "loadgen"
RESULTS = BENCH / "results"
LITELLM_VENV = BENCH / ".venv-litellm"
LITELLM_REQUIREMENTS = BENCH / "litellm-requirements.txt"
LITELLM_VERSION = "1.81.13"
#: releases known to be compromised (credential stealers uploaded to PyPI): never install
LITELLM_COMPROMISED = {"1.82.7", "1.82.8", "1.107.0"}
LITELLM_KEY = "sk-bench-overhead"
MODEL = "sim-triage-1"
POLICY = ROOT / "examples" / "policy.yaml"
TARGET_P50_RATIO = 1 / 5
#: `warden serve --workers` counts to run, as for LiteLLM: one process (the default; the
#: audit writer is a thread), and two request workers feeding a writer process (2 cores)
DEFAULT_WARDEN_WORKERS = "1,2"
TARGET_RPS_RATIO = 5.0

console = Console(width=130)


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} at start")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer {url} within {timeout:.0f} s")


@contextmanager
def process(
    argv: list[str], log: Path, *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A child in its own process group, stopped (SIGTERM, then SIGKILL) on exit."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def bodies(n: int = 200) -> list[dict[str, Any]]:
    """Chat requests a claims assistant might get; the same file for every target."""
    kinds = [
        ("device", "my phone screen cracked when I dropped it on the pavement"),
        ("travel", "my suitcase was delayed three days and I had to buy clothes"),
        ("household", "water damage in the kitchen after a pipe burst behind the sink"),
        ("motor", "a parked car was scratched in the supermarket car park"),
    ]
    out = []
    for i in range(n):
        kind, text = kinds[i % len(kinds)]
        amount = 80 + (i * 37) % 2900
        out.append(
            {
                "model": MODEL,
                "messages": [
                    {"role": "system", "content": "You help customers with insurance claims."},
                    {
                        "role": "user",
                        "content": f"Claim {i}: {kind} claim, amount: {amount}.00 EUR. "
                        f"Description: {text}. What happens next?",
                    },
                ],
                "max_tokens": 200,
            }
        )
    return out


def run_loadgen(
    url: str, headers: list[str], body_file: Path, concurrency: int, seconds: float, warmup: float
) -> dict[str, Any]:
    argv = [str(LOADGEN), "-c", str(concurrency), "-d", str(seconds), "-w", str(warmup)]
    for header in headers:
        argv += ["-H", header]
    argv += ["--bodies", str(body_file), "--timeout", "30", "--json", url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + warmup + 90)
    if not out.stdout.strip():
        raise RuntimeError(f"loadgen printed nothing (exit {out.returncode}): {out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


@dataclass
class Target:
    name: str
    label: str
    url: str = ""
    headers: list[str] = field(default_factory=list)
    rounds: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    runs: dict[int, dict[str, Any]] = field(default_factory=dict)  # medians over rounds
    skipped: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)


def probe(target: Target, body: dict[str, Any]) -> httpx.Response:
    headers = dict(h.split(": ", 1) for h in target.headers)
    return httpx.post(target.url, json=body, headers=headers, timeout=30)


def measure(target: Target, body_file: Path, c: int, seconds: float, warmup: float) -> None:
    run = run_loadgen(target.url, target.headers, body_file, c, seconds, warmup)
    target.rounds.setdefault(c, []).append(run)
    console.print(
        f"  {target.label}: {c} client(s), {warmup:g}+{seconds:g} s: {run['rps']:,.0f} req/s, "
        f"p50 {ms(run['p50_ms'])} ms",
        highlight=False,
    )


def medians(target: Target) -> None:
    """Per client count, the median of each figure over the rounds (the rounds alternate
    the targets, so a load spike from elsewhere on the shared VM hits all of them)."""
    for c, runs in target.rounds.items():
        merged: dict[str, Any] = {"rounds": len(runs)}
        for key in ("rps", "p50_ms", "p90_ms", "p99_ms", "max_ms"):
            values = [r[key] for r in runs if r[key] is not None]
            merged[key] = statistics.median(values) if values else None
        status: dict[str, int] = {}
        for r in runs:
            for code, n in r["status"].items():
                status[code] = status.get(code, 0) + n
        merged["status"] = status
        merged["errors"] = sum(r["errors"] for r in runs)
        target.runs[c] = merged


# --------------------------------------------------------------------------- LiteLLM


def litellm_python() -> Path:
    return LITELLM_VENV / "bin" / "python"


def ensure_litellm() -> str:
    """Install the pinned LiteLLM proxy into bench/.venv-litellm (once per requirements)."""
    pinned = LITELLM_REQUIREMENTS.read_text()
    if f"litellm=={LITELLM_VERSION}\n" not in pinned:
        raise SystemExit(f"{LITELLM_REQUIREMENTS} does not pin litellm=={LITELLM_VERSION}")
    stamp = LITELLM_VENV / f".installed-{hashlib.sha256(pinned.encode()).hexdigest()[:16]}"
    if not stamp.exists():
        console.print(f"installing litellm[proxy]=={LITELLM_VERSION} into {LITELLM_VENV} …")
        if LITELLM_VENV.exists():
            shutil.rmtree(LITELLM_VENV)
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        pip = [str(litellm_python()), "-m", "pip", "install", "--quiet"]
        for extra in (["--upgrade", "pip"], ["-r", str(LITELLM_REQUIREMENTS)]):
            done = subprocess.run([*pip, *extra], capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"pip install {' '.join(extra)} failed:\n{done.stderr[-3000:]}")
        stamp.touch()
    version = subprocess.run(
        [
            str(litellm_python()),
            "-c",
            "import importlib.metadata as m; print(m.version('litellm'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if version in LITELLM_COMPROMISED or version != LITELLM_VERSION:
        raise SystemExit(f"refusing to run litellm {version} (want {LITELLM_VERSION})")
    return version


def litellm_config(tmp: Path, upstream: str, workers: int) -> Path:
    config = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"openai/{MODEL}",
                    "api_base": upstream,
                    "api_key": "sim-key",
                },
            }
        ],
        "litellm_settings": {"set_verbose": False, "json_logs": True, "request_timeout": 30},
        "general_settings": {
            "master_key": LITELLM_KEY,
            "disable_spend_logs": True,
            "disable_error_logs": True,
        },
    }
    path = tmp / f"litellm-{workers}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextmanager
def litellm_server(tmp: Path, upstream: str, workers: int) -> Iterator[Target]:
    port = free_port()
    config = litellm_config(tmp, upstream, workers)
    argv = [
        str(LITELLM_VENV / "bin" / "litellm"),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        str(workers),
    ]
    if workers > 1:
        # uvicorn's own supervisor kills a worker that is not up within 5 s, which LiteLLM's
        # import does not meet on this machine; its Gunicorn mode supervises the same
        # uvicorn workers without that limit
        argv.append("--run_gunicorn")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no download of the cost map at start
        "LITELLM_MODE": "PRODUCTION",  # no .env loading
        "LITELLM_LOG": "ERROR",
        "NO_DOCS": "True",
    }
    log = tmp / f"litellm-{workers}.log"
    with process(argv, log, env=env, cwd=tmp) as proc:
        wait_http(f"http://127.0.0.1:{port}/health/liveliness", proc, 300, "litellm")
        yield Target(
            f"litellm_{workers}w",
            f"LiteLLM {LITELLM_VERSION} ({workers} worker{'s' if workers > 1 else ''})",
            f"http://127.0.0.1:{port}/v1/chat/completions",
            [f"Authorization: Bearer {LITELLM_KEY}"],
        )


# ---------------------------------------------------------------------------- Warden


def warden_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "warden", *args], capture_output=True, text=True, timeout=120
    )


def warden_policy(tmp: Path, upstream: str) -> Path:
    """The example policy with every HTTP endpoint pointed at the one simulator."""
    text = POLICY.read_text()
    doc = yaml.safe_load(text)
    for endpoint in (doc.get("endpoints") or {}).values():
        if endpoint.get("kind") == "openai_chat":
            endpoint["base_url"] = upstream
    path = tmp / "policy.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@contextmanager
def warden_server(
    tmp: Path, upstream: str, workers: int = 1, name: str = "warden"
) -> Iterator[Target]:
    """`warden serve` (with `workers` request worker processes feeding one audit writer)."""
    data = tmp / f"warden-data-{workers}w"
    key = warden_cli("keys", "create", "bench", "--role", "service", "--data-dir", str(data))
    if key.returncode != 0:
        raise RuntimeError(f"warden keys create failed: {key.stderr}")
    policy = warden_policy(tmp, upstream)
    port = free_port()
    argv = [sys.executable, "-m", "warden", "serve", "--data-dir", str(data)]
    argv += ["--policy", str(policy), "--port", str(port), "--workers", str(workers)]
    with process(argv, tmp / f"warden-{workers}w.log") as proc:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc, 90, "warden serve")
        if workers > 1:  # the port answers as soon as one worker is up: wait for them all
            wait_workers(f"http://127.0.0.1:{port}/healthz", proc, workers, 90)
        target = Target(
            name,
            f"Warden front door ({workers} worker{'s' if workers > 1 else ''})",
            f"http://127.0.0.1:{port}/v1/chat/completions",
            [
                f"Authorization: Bearer {key.stdout.strip()}",
                "X-Warden-Jurisdiction: EU",
                "X-Warden-Decision-Type: assistant_chat",
            ],
        )
        target.notes["pid"] = proc.pid
        yield target
        target.notes.pop("pid", None)  # for profile_frontdoor.py only
        try:
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            target.notes["entries_per_commit"] = entries_per_commit(metrics)
        except httpx.HTTPError:
            pass
    verify = warden_cli("audit", "verify", "--data-dir", str(data))
    target.notes["audit_verify"] = (verify.stdout.strip().splitlines() or ["?"])[-1]
    target.notes["audit_kinds"] = audit_kinds(data)


def wait_workers(url: str, proc: subprocess.Popen[bytes], workers: int, timeout: float) -> None:
    """Until `workers` different worker pids answered (fresh connections)."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < workers:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"warden serve: only {len(seen)} of {workers} workers answered")
        try:
            seen.add(httpx.get(url, timeout=2).headers.get("x-warden-worker", "?"))
        except httpx.HTTPError:
            time.sleep(0.2)


def entries_per_commit(metrics: str) -> float | None:
    count = total = 0.0
    for line in metrics.splitlines():
        if line.startswith("warden_audit_batch_entries_count"):
            count = float(line.split()[-1])
        elif line.startswith("warden_audit_batch_entries_sum"):
            total = float(line.split()[-1])
    return round(total / count, 1) if count else None


def audit_kinds(data: Path) -> dict[str, int]:
    """Entries per kind in the audit log (intent entries must be there)."""
    import sqlite3

    counts: dict[str, int] = {}
    for db in data.glob("*.db"):
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                rows = conn.execute("SELECT kind, COUNT(*) FROM entries GROUP BY kind").fetchall()
        except sqlite3.Error:
            continue
        for kind, n in rows:
            counts[str(kind)] = counts.get(str(kind), 0) + int(n)
    return counts


# ----------------------------------------------------------------------------- report


def upstream_log_summary(path: Path) -> dict[str, int]:
    """From the simulator's own access log: completions served, and how many carried a
    decision id (only Warden sends one, so these are the front door's model calls)."""
    served = with_id = 0
    if path.exists():
        for line in path.open():
            entry = json.loads(line)
            if entry["path"] == "/v1/chat/completions":
                served += 1
                with_id += entry["decision_id"] is not None
    return {"completions": served, "with_decision_id": with_id}


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def non_2xx(run: dict[str, Any]) -> int:
    return sum(v for k, v in run["status"].items() if not k.startswith("2")) + run["errors"]


def derive(targets: list[Target], levels: list[int]) -> dict[str, Any]:
    direct = next((t for t in targets if t.name == "direct"), None)
    out: dict[str, Any] = {}
    for t in targets:
        for c, run in t.runs.items():
            d = direct.runs.get(c) if direct else None
            row = {
                "rps": run["rps"],
                "p50_ms": run["p50_ms"],
                "p99_ms": run["p99_ms"],
                "non_2xx": non_2xx(run),
            }
            if d and t is not direct and run["p50_ms"] is not None:
                row["added_p50_ms"] = round(run["p50_ms"] - d["p50_ms"], 3)
                row["added_p99_ms"] = round(run["p99_ms"] - d["p99_ms"], 3)
            out.setdefault(t.name, {})[str(c)] = row
    return out


def verdict(derived: dict[str, Any], levels: list[int]) -> dict[str, Any]:
    """Each figure compares each side's best configuration for it: Warden's worker count
    is chosen per figure exactly as LiteLLM's is (both run 1 and 2 workers)."""
    low, high = str(min(levels)), str(max(levels))
    wardens = {k: v for k, v in derived.items() if k.startswith("warden")}
    litellms = {k: v for k, v in derived.items() if k.startswith("litellm")}
    if not wardens or not litellms:
        return {}

    def best(side: dict[str, Any], level: str, key: str, *, highest: bool) -> tuple[str, float]:
        rows = [(name, float(v[level][key])) for name, v in side.items() if level in v]
        return (max if highest else min)(rows, key=lambda row: row[1])

    out: dict[str, Any] = {}
    for level in (low, high):
        w_name, w_p50 = best(wardens, level, "added_p50_ms", highest=False)
        l_name, l_p50 = best(litellms, level, "added_p50_ms", highest=False)
        out[f"added_p50_ratio_c{level}"] = w_p50 / l_p50 if l_p50 > 0 else None
        out[f"added_p50_c{level}"] = {w_name: w_p50, l_name: l_p50}
    w_name, w_rps = best(wardens, high, "rps", highest=True)
    l_name, l_rps = best(litellms, high, "rps", highest=True)
    rps_ratio = w_rps / l_rps if l_rps else None
    out[f"rps_ratio_c{high}"] = rps_ratio
    out[f"rps_c{high}"] = {w_name: w_rps, l_name: l_rps}
    p50_ratios = [out[f"added_p50_ratio_c{level}"] for level in (low, high)]
    out["p50_target_met"] = all(r is not None and r <= TARGET_P50_RATIO for r in p50_ratios)
    out["rps_target_met"] = rps_ratio is not None and rps_ratio >= TARGET_RPS_RATIO
    return out


def print_tables(targets: list[Target], derived: dict[str, Any], summary: dict[str, Any]) -> None:
    table = Table(title="Gateway overhead: POST /v1/chat/completions through each target")
    for col in ("target", "clients", "req/s", "p50 ms", "p99 ms", "added p50", "added p99"):
        table.add_column(col, justify="left" if col == "target" else "right")
    table.add_column("non-2xx", justify="right")
    for t in targets:
        if t.skipped:
            table.add_row(t.label, "-", f"[yellow]skipped: {t.skipped}[/]", *[""] * 5)
            continue
        for c, run in sorted(t.runs.items()):
            row = derived[t.name][str(c)]
            table.add_row(
                t.label,
                str(c),
                f"{run['rps']:,.0f}",
                ms(run["p50_ms"]),
                ms(run["p99_ms"]),
                ms(row.get("added_p50_ms")),
                ms(row.get("added_p99_ms")),
                str(row["non_2xx"]),
            )
    console.print(table)
    if summary:
        for key, value in summary.items():
            if isinstance(value, float):
                console.print(f"{key}: {value:.3f}")
            else:
                console.print(f"{key}: {value}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=6, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians)")
    parser.add_argument("--concurrency", default="1,32", help="client counts, e.g. 1,32")
    parser.add_argument("--targets", default="direct,warden,litellm")
    parser.add_argument("--litellm-workers", default="1,2", help="LiteLLM worker counts to run")
    parser.add_argument(
        "--warden-workers",
        default=str(DEFAULT_WARDEN_WORKERS),
        help="Warden request worker counts to run, e.g. 1,2 (warden serve --workers)",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="simulator latency")
    parser.add_argument("--json", type=Path, default=RESULTS / "gateway_overhead.json")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    wanted = set(args.targets.split(","))
    if not LOADGEN.exists():
        subprocess.run(["make", "-C", str(BENCH), "loadgen"], check=True)
    litellm_version = ensure_litellm() if "litellm" in wanted else None
    targets: list[Target] = []
    with tempfile.TemporaryDirectory(prefix="warden-overhead-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        body_list = bodies()
        body_file = tmp / "bodies.jsonl"
        body_file.write_text("".join(json.dumps(b) + "\n" for b in body_list))
        port = free_port()
        sim_argv = [sys.executable, "-m", "warden", "dev", "upstream", "--region", "eu-west-1"]
        sim_argv += ["--port", str(port), "--latency-ms", str(args.latency_ms)]
        sim_argv += ["--access-log", str(tmp / "upstream.access.jsonl")]
        upstream = f"http://127.0.0.1:{port}/v1"
        sim = stack.enter_context(process(sim_argv, tmp / "upstream.log"))
        wait_http(f"http://127.0.0.1:{port}/health", sim, 30, "simulator")
        # every server is started first, then the rounds alternate between them
        if "direct" in wanted:
            targets.append(Target("direct", "direct (simulator)", f"{upstream}/chat/completions"))
        if "warden" in wanted:
            counts = [int(w) for w in args.warden_workers.split(",")]
            for n in counts:
                name = "warden" if len(counts) == 1 else f"warden_{n}w"
                targets.append(stack.enter_context(warden_server(tmp, upstream, n, name)))
        if "litellm" in wanted:
            for workers in [int(w) for w in args.litellm_workers.split(",")]:
                targets.append(stack.enter_context(litellm_server(tmp, upstream, workers)))
        for target in targets:
            first = probe(target, body_list[0])
            if first.status_code == 404 and target.name.startswith("warden"):
                target.skipped = "no POST /v1/chat/completions front door in this build"
            elif first.status_code != 200:
                target.skipped = f"answered {first.status_code}: {first.text[:200]}"
        for round_no in range(1, args.rounds + 1):
            console.print(f"round {round_no} of {args.rounds}")
            for c in levels:
                for target in targets:
                    if not target.skipped:
                        measure(target, body_file, c, args.seconds, args.warmup)
        for target in targets:
            medians(target)
        stack.close()  # stop the servers: Warden's audit log is verified on the way out
        upstream_log = upstream_log_summary(tmp / "upstream.access.jsonl")
    derived = derive(targets, levels)
    summary = verdict(derived, levels)
    print_tables(targets, derived, summary)
    for t in targets:
        if t.notes:
            console.print(f"{t.label}: {json.dumps(t.notes)}", highlight=False)
    console.print(f"simulator access log: {json.dumps(upstream_log)}", highlight=False)
    result = {
        "benchmark": "gateway_overhead",
        "seconds": args.seconds,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "concurrency": levels,
        "simulator_latency_ms": args.latency_ms,
        "litellm_version": litellm_version,
        "upstream_access_log": upstream_log,
        "targets": {
            t.name: {
                "label": t.label,
                "skipped": t.skipped,
                "median": t.runs,
                "loadgen_rounds": t.rounds,
                "notes": t.notes,
            }
            for t in targets
        },
        "derived": derived,
        "verdict": summary,
        "targets_wanted": {
            "added_p50_ratio_max": TARGET_P50_RATIO,
            "rps_ratio_min": TARGET_RPS_RATIO,
        },
        "machine": machine(),
    }
    args.json.parent.mkdir(exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
