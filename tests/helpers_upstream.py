"""Start the upstream *simulator* (`warden dev upstream`) as a real subprocess on a free
127.0.0.1 port, kill it like a crash, restart it on the same port, and read its own access
log. Timeouts everywhere, so a hung child never hangs the test suite.

    from tests.helpers_upstream import start_upstream

    up = start_upstream("eu-west-1", log_dir=tmp_path, failure_rate=0.2)
    client = openai.OpenAI(base_url=up.url, api_key="sim")
    ...
    up.kill(); up.restart(); up.access_log_entries()

or the `upstreams` fixture (import it into the test module), which stops everything it
started at teardown:

    def test_x(upstreams): eu = upstreams("eu-west-1"); us = upstreams("us-east-1")
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from tests.helpers_server import cli_env, free_port, wait_until_answering

SIMULATOR = [sys.executable, "-m", "warden", "dev", "upstream"]


class Upstream:
    """One simulator process. `.url` is the OpenAI base URL (ends in /v1)."""

    def __init__(
        self,
        region: str,
        port: int,
        access_log: Path,
        stderr_log: Path,
        opts: dict[str, Any],
    ) -> None:
        self.region = region
        self.port = port
        self.access_log = access_log
        self.stderr_log = stderr_log
        self.opts = opts
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/v1"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def argv(self) -> list[str]:
        args = [*SIMULATOR, "--region", self.region, "--port", str(self.port)]
        args += ["--access-log", str(self.access_log)]
        for key, value in self.opts.items():
            flag = f"--{key.replace('_', '-')}"
            args += [flag] if value is True else [flag, str(value)]
        return args

    def start(self, timeout: float = 20) -> Upstream:
        assert not self.running, "simulator already running"
        with self.stderr_log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=cli_env(),
            )
        wait_until_answering(
            self.proc, f"{self.base}/health", timeout, "simulator", self.output, self.stop
        )
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, exactly like a crash."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self, timeout: float = 20) -> Upstream:
        """Start again on the same port with the same options; the access log is appended."""
        self.stop()
        return self.start(timeout)

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL if it does not exit in `timeout` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def output(self) -> str:
        return self.stderr_log.read_text(errors="replace") if self.stderr_log.exists() else ""

    def access_log_entries(self, path: str | None = "/v1/chat/completions") -> list[dict[str, Any]]:
        """The simulator's own access log as dicts (only `path` requests; None: all)."""
        if not self.access_log.exists():
            return []
        entries = [
            json.loads(line) for line in self.access_log.read_text().splitlines() if line.strip()
        ]
        return [e for e in entries if path is None or e["path"] == path]

    def __enter__(self) -> Upstream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_upstream(
    region: str,
    port: int | None = None,
    *,
    log_dir: Path | None = None,
    **opts: Any,
) -> Upstream:
    """Start `warden dev upstream` and wait for /health. `opts` are the command's options
    (latency_ms, latency_jitter_ms, failure_rate, bad_json_rate, seed, model)."""
    port = port or free_port()
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="warden-upstream-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    stem = f"upstream-{region}-{port}"
    upstream = Upstream(
        region, port, log_dir / f"{stem}.access.jsonl", log_dir / f"{stem}.stderr.log", opts
    )
    return upstream.start()


@pytest.fixture
def upstreams(tmp_path: Path) -> Iterator[Callable[..., Upstream]]:
    """A factory `upstreams(region, port=None, **opts) -> Upstream`; all stopped at teardown."""
    started: list[Upstream] = []

    def factory(region: str, port: int | None = None, **opts: Any) -> Upstream:
        upstream = start_upstream(region, port, log_dir=tmp_path / "upstreams", **opts)
        started.append(upstream)
        return upstream

    yield factory
    for upstream in started:
        upstream.stop()
