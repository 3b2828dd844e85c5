"""Run the real `warden` command line and `warden serve` as subprocesses, with timeouts
everywhere so a hung child never hangs the test suite."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import httpx

from tests.conftest import EXAMPLE_POLICY

WARDEN = [sys.executable, "-m", "warden"]


def cli_env() -> dict[str, str]:
    # wide, colourless output so messages are not wrapped or decorated
    return {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*WARDEN, *args],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=timeout,
        check=False,
    )


def create_key(data_dir: Path, name: str, role: str) -> str:
    result = run_cli("keys", "create", name, "--role", role, "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert key.startswith("wk_") and " " not in key, result.stdout
    return key


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_answering(
    proc: subprocess.Popen[bytes],
    url: str,
    timeout: float,
    what: str,
    output: Callable[[], str],
    give_up: Callable[[], None],
) -> None:
    """Poll `url` until it answers 200; fail with the process's output if it exits first
    or does not answer within `timeout` seconds (then `give_up` stops it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode} at start:\n{output()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    give_up()
    raise AssertionError(f"{what} did not answer {url} in {timeout} s:\n{output()}")


class WardenServer:
    """`python -m warden serve` on a data directory; a fresh free port on every start."""

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        *,
        policy: Path = EXAMPLE_POLICY,
        workers: int = 1,
    ) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.policy = policy
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout: float = 20) -> None:
        assert self.proc is None or self.proc.poll() is not None, "server already running"
        self.port = free_port()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    *WARDEN,
                    "serve",
                    "--data-dir",
                    str(self.data_dir),
                    "--policy",
                    str(self.policy),
                    "--port",
                    str(self.port),
                    "--workers",
                    str(self.workers),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=cli_env(),
            )
        started = time.monotonic()
        wait_until_answering(
            self.proc, f"{self.url}/healthz", timeout, "warden serve", self.log, self.close
        )
        if self.workers > 1:
            self.wait_for_workers(timeout - (time.monotonic() - started))

    def wait_for_workers(self, timeout: float) -> None:
        """Until every request worker answered once (fresh connections): the port answers
        as soon as the first worker is up, and a test that needs both must not race the
        second one's start (loading models takes a while on a loaded machine)."""
        assert self.proc is not None
        seen: set[str] = set()
        deadline = time.monotonic() + max(timeout, 1.0)
        while len(seen) < self.workers:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"warden serve exited with {self.proc.returncode}:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                self.close()
                raise AssertionError(
                    f"only {len(seen)} of {self.workers} workers answered:\n{self.log()}"
                )
            try:
                seen.add(httpx.get(f"{self.url}/healthz", timeout=2).headers["x-warden-worker"])
            except httpx.TransportError:
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, exactly like a crash."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM: a graceful stop; returns the exit code (kills it if it hangs)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.close()
            raise AssertionError(
                f"warden serve ignored SIGTERM for {timeout} s:\n{self.log()}"
            ) from None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def __enter__(self) -> WardenServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
