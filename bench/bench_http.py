"""Decisions over HTTP: `warden serve` (uvicorn, one process, durable SQLite audit) driven
by the compiled closed-loop load generator `bench/loadgen` at a fixed concurrency.

    make -C bench loadgen
    .venv/bin/python bench/bench_http.py [--concurrency 32] [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from common import free_port, machine, stream

BENCH = Path(__file__).parent
LOADGEN = BENCH / "loadgen"


def warden(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "warden", *args], capture_output=True, text=True, check=True, **kw
    )


def start_server(data: Path, port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [sys.executable, "-m", "warden", "serve", "--data-dir", str(data), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit(
        "server did not start: " + (server.stderr.read() if server.stderr else b"").decode()
    )


def run_loadgen(
    url: str, key: str, bodies: Path, concurrency: int, seconds: float, warmup: float
) -> dict[str, Any]:
    if not LOADGEN.exists():
        subprocess.run(["make", "-C", str(BENCH), "loadgen"], check=True)
    out = subprocess.run(
        [
            str(LOADGEN),
            "-c",
            str(concurrency),
            "-d",
            str(seconds),
            "-w",
            str(warmup),
            "-H",
            f"X-API-Key: {key}",
            "--bodies",
            str(bodies),
            "--json",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def run(concurrency: int, seconds: float, warmup: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="warden-http-bench-") as tmp:
        data = Path(tmp) / "data"
        key = warden(
            "keys", "create", "bench", "--role", "service", "--data-dir", str(data)
        ).stdout.strip()
        bodies = Path(tmp) / "bodies.jsonl"
        bodies.write_text("\n".join(json.dumps(r) for r in stream(5000)) + "\n")
        port = free_port()
        server = start_server(data, port)
        try:
            result = run_loadgen(
                f"http://127.0.0.1:{port}/v1/decisions", key, bodies, concurrency, seconds, warmup
            )
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        verify = subprocess.run(
            [sys.executable, "-m", "warden", "audit", "verify", "--data-dir", str(data)],
            capture_output=True,
            text=True,
        )
    commits = batch_sum = 0.0
    for line in metrics.splitlines():
        if line.startswith("warden_audit_batch_entries_count"):
            commits = float(line.split()[-1])
        if line.startswith("warden_audit_batch_entries_sum"):
            batch_sum = float(line.split()[-1])
    return {
        "benchmark": "http",
        "concurrency": concurrency,
        "seconds": seconds,
        "loadgen": result,
        "entries_per_commit": batch_sum / commits if commits else None,
        "audit_verify": verify.stdout.strip().splitlines()[-1] if verify.stdout else "",
        "machine": machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    result = run(args.concurrency, args.seconds, args.warmup)
    lg = result["loadgen"]
    table = Table(
        title=f"HTTP POST /v1/decisions, {args.concurrency} concurrent clients, "
        f"{args.seconds:.0f}s measured"
    )
    for column in (
        "decisions/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "non-2xx",
        "entries/commit",
    ):
        table.add_column(column, justify="right")
    non_2xx = sum(v for k, v in lg["status"].items() if not k.startswith("2")) + lg["errors"]
    table.add_row(
        f"{lg['rps']:,.0f}",
        f"{lg['p50_ms']:.2f}",
        f"{lg['p90_ms']:.2f}",
        f"{lg['p99_ms']:.2f}",
        f"{lg['max_ms']:.2f}",
        str(non_2xx),
        f"{result['entries_per_commit'] or 0:.1f}",
    )
    console = Console()
    console.print(table)
    console.print(f"audit verify after the run: {result['audit_verify']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
