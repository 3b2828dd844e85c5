"""The demo's claims-triage part: upstream *simulators* (`warden dev upstream`, real
processes on free 127.0.0.1 ports) stand in for hosted models in their regions; a seeded
stream of EU, UK and US claims goes through the LLM and proposal gates; halfway the EU
primary is killed, so the EU claims fail over to the EU secondary; then the routing per
jurisdiction is proved from the log and cross-checked against the simulators' own access
logs (`warden routes verify`)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from warden.auth import Principal
from warden.endpoints.rebase import rebase_endpoints
from warden.errors import WardenError
from warden.gateway import Gateway, RefusedError

#: endpoint of the bundled policy → the region its simulator reports
SIMULATED = {"llm-eu-1": "eu-west-1", "llm-eu-2": "eu-central-1", "llm-us-1": "us-east-1"}
CURRENCY = {"EU": "EUR", "UK": "GBP", "US": "USD"}
DESCRIPTIONS = [
    ("device", "My phone fell on the pavement and the screen cracked."),
    ("travel", "My suitcase was delayed for three days and I bought clothes."),
    ("household", "A pipe burst in the kitchen and damaged the floor."),
    ("device", "My laptop was stolen from a café, I paid in cash and have no receipt."),
    ("motor", "Someone scratched my car in a car park; there are no witnesses."),
    ("travel", "My flight was cancelled and I had to pay for a hotel night."),
]


@dataclass
class Simulator:
    name: str
    region: str
    port: int
    access_log: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def simulators(log_dir: Path, latency_ms: float = 20.0) -> Iterator[dict[str, Simulator]]:
    """Start one simulator per simulated endpoint; stop them all on exit."""
    log_dir.mkdir(parents=True, exist_ok=True)
    started: dict[str, Simulator] = {}
    try:
        for name, region in SIMULATED.items():
            port = _free_port()
            log = log_dir / f"upstream-{region}.access.jsonl"
            argv = [
                sys.executable,
                "-m",
                "warden",
                "dev",
                "upstream",
                "--region",
                region,
                "--port",
                str(port),
                "--access-log",
                str(log),
                "--latency-ms",
                str(latency_ms),
            ]
            proc = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
            )
            started[name] = Simulator(name, region, port, log, proc)
        deadline = time.monotonic() + 20
        for sim in started.values():
            while True:
                if sim.proc.poll() is not None:
                    raise WardenError(f"the {sim.region} simulator exited at start")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"http://127.0.0.1:{sim.port}/health", timeout=1).is_success:
                        break
                if time.monotonic() > deadline:
                    raise WardenError(f"the {sim.region} simulator did not start in 20 s")
                time.sleep(0.05)
        yield started
    finally:
        for sim in started.values():
            sim.stop()


def demo_policy(bundled: Path, sims: dict[str, Simulator], out: Path) -> Path:
    out.write_bytes(rebase_endpoints(bundled.read_bytes(), {n: s.url for n, s in sims.items()}))
    return out


def triage_requests(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        jurisdiction = rng.choice(["EU", "EU", "EU", "UK", "US"])
        kind, text = rng.choice(DESCRIPTIONS)
        amount = round(rng.choice([rng.uniform(40, 900), rng.uniform(900, 8000)]), 2)
        out.append(
            {
                "decision_type": "claims_triage",
                "jurisdiction": jurisdiction,
                "inputs": {
                    "policy_number": f"P-{300000 + i:06d}",
                    "claim_type": kind,
                    "claim_amount": amount,
                    "currency": CURRENCY[jurisdiction],
                    "description": f"{text} I am claiming {amount:.2f} {CURRENCY[jurisdiction]}.",
                },
            }
        )
    return out


async def drive_triage(
    gateway: Gateway,
    requests: list[dict[str, Any]],
    caller: Principal,
    sims: dict[str, Simulator],
    concurrency: int = 16,
) -> Counter[tuple[str, str]]:
    """Decide the stream; kill the EU primary halfway. Counts (jurisdiction, outcome)."""
    outcomes: Counter[tuple[str, str]] = Counter()
    queue = list(reversed(requests))
    half = len(requests) // 2

    async def worker() -> None:
        while queue:
            request = queue.pop()
            if len(queue) == half:
                sims["llm-eu-1"].kill()
            try:
                outcome = (await gateway.decide(request, caller))["outcome"]
            except RefusedError as exc:
                outcome = f"refused ({exc.code})"
            outcomes[(request["jurisdiction"], outcome)] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await gateway.endpoints.stop()
    return outcomes


def window() -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now, now + timedelta(days=1)
