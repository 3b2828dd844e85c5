"""A policy's HTTP model endpoints served by upstream *simulators* (`warden dev upstream`,
one real process per endpoint on a free 127.0.0.1 port, in the endpoint's region), and the
policy file rebased onto them — for tools that must drive LLM decision types without the
hosted models (`warden redteam`)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from warden.endpoints.rebase import rebase_endpoints
from warden.errors import WardenError
from warden.policy.loader import LoadedPolicy


@dataclass
class SimulatedEndpoint:
    name: str
    region: str
    port: int
    access_log: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def kill(self) -> None:
        """kill -9: an endpoint that vanishes mid-run (the demo's outage)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class SimulatedPolicy:
    """The rebased policy file and the simulators behind its endpoints."""

    path: Path
    endpoints: dict[str, SimulatedEndpoint]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def simulated_policy(
    policy: LoadedPolicy,
    workdir: Path,
    *,
    scripted: bool = False,
    latency_ms: float = 0.0,
    timeout: float = 20.0,
) -> Iterator[SimulatedPolicy]:
    """Start one simulator per `openai_chat` endpoint of `policy` and write the policy,
    rebased onto them, to `workdir/policy.yaml`; stop them all on exit. `scripted`: the
    simulators answer chat requests with a scripted answer when the request carries one
    (`warden dev upstream --scripted`); `latency_ms`: each answer's added latency."""
    workdir.mkdir(parents=True, exist_ok=True)
    started: dict[str, SimulatedEndpoint] = {}
    try:
        for name, endpoint in policy.policy.endpoints.items():
            if endpoint.kind != "openai_chat":
                continue
            port = _free_port()
            log = workdir / f"upstream-{name}.access.jsonl"
            argv = [sys.executable, "-m", "warden", "dev", "upstream"]
            argv += ["--region", endpoint.region, "--port", str(port), "--access-log", str(log)]
            argv += ["--model", endpoint.model, "--latency-ms", str(latency_ms)]
            argv += ["--scripted"] if scripted else []
            proc = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
            )
            started[name] = SimulatedEndpoint(name, endpoint.region, port, log, proc)
        deadline = time.monotonic() + timeout
        for sim in started.values():
            while True:
                if sim.proc.poll() is not None:
                    raise WardenError(f"the simulator for endpoint {sim.name} exited at start")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"http://127.0.0.1:{sim.port}/health", timeout=1).is_success:
                        break
                if time.monotonic() > deadline:
                    raise WardenError(f"the simulator for {sim.name} did not start in {timeout} s")
                time.sleep(0.05)
        path = workdir / "policy.yaml"
        path.write_bytes(rebase_endpoints(policy.raw, {n: s.url for n, s in started.items()}))
        yield SimulatedPolicy(path, started)
    finally:
        for sim in started.values():
            sim.stop()
