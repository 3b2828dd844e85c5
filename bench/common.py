"""Shared bits of the benchmarks: the request stream, percentiles, machine facts."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from typing import Any

from warden.demo.stream import StreamConfig, payment_requests, strip_truth


def stream(n: int, seed: int = 11) -> list[dict[str, Any]]:
    """Labelled payment requests (no unlabeled ones, no idempotency keys)."""
    out = []
    for item in payment_requests(n, StreamConfig(seed=seed, unlabeled_share=0.0)):
        request = strip_truth(item)
        request.pop("idempotency_key", None)
        out.append(request)
    return out


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (everything the benchmarks start listens there)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()
    try:
        sqlite = subprocess.run(
            ["python3", "-c", "import sqlite3; print(sqlite3.sqlite_version)"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        sqlite = "?"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite,
        "load_avg_1m_at_start": round(load[0], 2),
    }
