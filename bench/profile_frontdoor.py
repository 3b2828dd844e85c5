"""Where the front door's time goes: `warden serve` (same set-up as
`bench_gateway_overhead.py`: example policy pointed at one `warden dev upstream`) driven by
`bench/loadgen`, reporting for each client count the server's CPU per request (user +
system time of the whole process, every thread, read from /proc over the measured
seconds), req/s and p50 — and, with ``--py-spy``, a sampled profile of the measured
seconds folded into the pipeline's parts (share of samples whose stack passes through a
function; a stack can count in several rows).

    .venv/bin/python bench/profile_frontdoor.py [--concurrency 1,32] [--seconds 8] [--py-spy]
                                                [--workers 2]

With ``--workers N`` the CPU is summed over the parent (the audit writer) and its N
request workers, and split per process as well.

CPU per request is much steadier than latency on a shared VM: it does not count the time
the process waits for a core.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import httpx
from bench_gateway_overhead import (
    LOADGEN,
    bodies,
    process,
    run_loadgen,
    wait_http,
    warden_server,
)
from common import free_port

#: (row, substring of a py-spy frame "function (file:line)") — first match per row
PARTS: tuple[tuple[str, str], ...] = (
    ("output guard: Presidio PII", "analyze (presidio_analyzer/analyzer_engine.py"),
    ("output guard: anomaly checks", "check (warden/guard/anomaly.py"),
    ("output gate (all)", "warden/gates/outputs.py"),
    ("input guard", "warden/gates/inputs.py"),
    ("LLM gate (all)", "warden/gates/llm.py"),
    ("model call (aiohttp client)", "aiohttp/client.py"),
    ("model call (http1 client)", "warden/endpoints/http1.py"),
    ("audit writer thread", "warden/audit/sqlite_store.py"),
    ("checkpoint signing", "warden/audit/checkpoint.py"),
    ("canonical JSON", "warden/canonical.py"),
    ("pydantic", "pydantic"),
    ("front door", "warden/frontdoor.py"),
    ("uvicorn/httptools", "uvicorn/"),
    ("idle (selector wait)", "select (selectors.py"),
)


def commit_counts(base_url: str) -> tuple[float, float]:
    """(commits, entries) so far, from the server's /metrics."""
    commits = entries = 0.0
    for line in httpx.get(f"{base_url}/metrics", timeout=10).text.splitlines():
        if line.startswith("warden_audit_batch_entries_count"):
            commits = float(line.split()[-1])
        elif line.startswith("warden_audit_batch_entries_sum"):
            entries = float(line.split()[-1])
    return commits, entries


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of the whole process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def children(pid: int) -> list[int]:
    """The direct children of `pid` (the request workers of `warden serve --workers`)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return sorted(out)


def cpu_tree(pid: int, kids: list[int]) -> dict[int, tuple[float, float]]:
    """(user, system) per process: the parent and its workers."""
    return {p: cpu_split(p) for p in [pid, *kids]}


def fold(collapsed: Path) -> tuple[int, Counter[str]]:
    total = 0
    rows: Counter[str] = Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        for row, needle in PARTS:
            if needle in stack:
                rows[row] += n
    return total, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--py-spy", action="store_true", help="also sample a profile")
    parser.add_argument("--keep", type=Path, help="copy py-spy's folded stacks here")
    parser.add_argument(
        "--idle",
        action="store_true",
        help="py-spy also samples waiting threads (wall time, e.g. fsync and socket waits)",
    )
    parser.add_argument(
        "--nonblocking",
        action="store_true",
        help="py-spy samples without pausing the server (less overhead, torn stacks possible)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="warden serve --workers (CPU summed over all)"
    )
    args = parser.parse_args()
    if not LOADGEN.exists():
        subprocess.run(["make", "-C", str(LOADGEN.parent), "loadgen"], check=True)
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    with tempfile.TemporaryDirectory(prefix="warden-prof-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        body_file = tmp / "bodies.jsonl"
        body_file.write_text("".join(json.dumps(b) + "\n" for b in bodies()))
        port = free_port()
        upstream = f"http://127.0.0.1:{port}/v1"
        sim_argv = [sys.executable, "-m", "warden", "dev", "upstream", "--region", "eu-west-1"]
        sim_argv += ["--port", str(port)]
        sim = stack.enter_context(process(sim_argv, tmp / "upstream.log"))
        wait_http(f"http://127.0.0.1:{port}/health", sim, 30, "simulator")
        target = stack.enter_context(warden_server(tmp, upstream, args.workers))
        pid = int(target.notes["pid"])
        kids = children(pid) if args.workers > 1 else []
        for c in [int(x) for x in args.concurrency.split(",")]:
            run_loadgen(target.url, target.headers, body_file, c, 1.0, 1.0)  # warm
            spy = None
            if args.py_spy:
                out = tmp / f"spy-{c}.txt"
                spy_argv = [
                    py_spy,
                    "record",
                    "-p",
                    str(pid),
                    "-r",
                    "250",
                    "-d",
                    str(math.ceil(args.seconds)),
                ]
                spy_argv += ["-f", "raw", "-o", str(out), "--threads"]
                if args.idle:
                    spy_argv.append("--idle")
                if args.nonblocking:
                    spy_argv.append("--nonblocking")
                if kids:
                    spy_argv.append("--subprocesses")
                spy = subprocess.Popen(
                    spy_argv,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            base_url = target.url.split("/v1/")[0]
            commits0, entries0 = commit_counts(base_url)
            before = cpu_tree(pid, kids)
            t0 = time.monotonic()
            run = run_loadgen(target.url, target.headers, body_file, c, args.seconds, 0.0)
            elapsed = time.monotonic() - t0
            after = cpu_tree(pid, kids)
            commits1, entries1 = commit_counts(base_url)
            user0 = sum(u for u, _ in before.values())
            sys0 = sum(s for _, s in before.values())
            user1 = sum(u for u, _ in after.values())
            sys1 = sum(s for _, s in after.values())
            cpu = user1 - user0 + sys1 - sys0
            n = int(run["requests"])
            per = 1000 / max(n, 1)
            if kids:
                split = ", ".join(
                    f"{'writer' if p == pid else f'worker {p}'} "
                    f"{(sum(after[p]) - sum(before[p])) * per:.2f} "
                    f"(user {(after[p][0] - before[p][0]) * per:.2f})"
                    for p in after
                )
                print(f"    per process (ms CPU/request): {split}", flush=True)
            print(
                f"{c:>3} clients: {run['rps']:8.1f} req/s  p50 {run['p50_ms']:7.2f} ms  "
                f"server CPU {cpu * per:5.2f} ms/request (user {(user1 - user0) * per:.2f}, "
                f"system {(sys1 - sys0) * per:.2f}; {cpu / elapsed:.2f} cores), "
                f"{(entries1 - entries0) / max(commits1 - commits0, 1):.2f} entries/commit",
                flush=True,
            )
            if spy is not None:
                spy.wait(timeout=args.seconds + 60)
                total, rows = fold(out)
                if args.keep is not None:
                    args.keep.mkdir(parents=True, exist_ok=True)
                    shutil.copy(out, args.keep / out.name)
                for row, _ in PARTS:
                    print(f"      {rows[row] / max(total, 1):6.1%}  {row}")


if __name__ == "__main__":
    main()
