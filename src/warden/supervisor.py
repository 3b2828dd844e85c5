"""`warden serve --workers N`: request workers in N processes feeding one audit writer.

The parent process opens the data directory as `warden serve` does (the writable audit
store and its lock, the policy activation), binds the listening socket, serves appends on
`<data_dir>/audit.sock` (`warden.audit.writer_service`) and starts N workers
(`python -m warden.worker`), each inheriting the listening socket and running the whole
gateway with a `RemoteAuditStore`. It restarts a worker that dies (and logs it); on
SIGTERM/SIGINT it stops the workers, then drains and closes the writer. Workers die with
the parent (PR_SET_PDEATHSIG, and a lost writer connection), so no worker answers a
request after the writer is gone.

Prometheus metrics run in prometheus_client's multiprocess mode (a private directory per
run): counters and histograms are summed over the processes, gauges carry a `pid` label."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from warden.errors import WardenError

#: a worker that dies this soon after starting, this many times running, stops the server
FAST_FAILURE_SECONDS = 10.0
MAX_FAST_FAILURES = 3
STOP_GRACE_SECONDS = 15.0
SOCKET_NAME = "audit.sock"
MAX_UNIX_PATH = 104  # sun_path is 108 bytes on Linux, 104 on the BSDs


def worker_count(value: str) -> int:
    """`--workers`: a positive number, or `auto` (one per CPU)."""
    if value == "auto":
        return max(os.cpu_count() or 1, 1)
    try:
        count = int(value)
    except ValueError:
        raise WardenError(f"--workers: {value!r} is not a number or 'auto'") from None
    if count < 1:
        raise WardenError(f"--workers: must be at least 1 (got {count})")
    return count


def writer_socket_path(data_dir: Path) -> Path:
    path = data_dir.resolve() / SOCKET_NAME
    if len(str(path).encode()) >= MAX_UNIX_PATH:
        # a Unix socket path is limited to ~104 bytes: use a private directory instead
        return Path(tempfile.mkdtemp(prefix="warden-")) / SOCKET_NAME
    return path


@dataclass
class Worker:
    index: int
    proc: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)


class Supervisor:
    def __init__(
        self,
        data_dir: Path,
        policy_source: str,
        policy_version: str,
        listener: socket.socket,
        socket_path: Path,
        count: int,
        console: Console,
        breaker_board: Path | None = None,
        series_board: Path | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.policy_source = policy_source
        self.policy_version = policy_version
        self.listener = listener
        self.socket_path = socket_path
        self.count = count
        self.console = console
        self.breaker_board = breaker_board
        self.series_board = series_board
        self.workers: list[Worker] = []
        self.fast_failures = 0
        self.failed: str | None = None

    def spawn(self, index: int) -> Worker:
        argv = [
            sys.executable,
            "-m",
            "warden.worker",
            "--data-dir",
            str(self.data_dir),
            "--policy-source",
            self.policy_source,
            "--policy-version",
            self.policy_version,
            "--writer-socket",
            str(self.socket_path),
            "--listen-fd",
            str(self.listener.fileno()),
            "--parent-pid",
            str(os.getpid()),
            "--index",
            str(index),
        ]
        if self.breaker_board is not None:
            argv += ["--breaker-board", str(self.breaker_board)]
        if self.series_board is not None:
            argv += ["--series-board", str(self.series_board)]
        # a session of its own: a terminal's Ctrl-C reaches the parent, which stops the
        # workers in order (stop accepting, finish in-flight requests, then the writer)
        proc = subprocess.Popen(
            argv,
            pass_fds=(self.listener.fileno(),),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        return Worker(index, proc)

    def check(self) -> None:
        """Restart the workers that exited (called every few hundred ms)."""
        from prometheus_client import multiprocess

        for i, worker in enumerate(self.workers):
            code = worker.proc.poll()
            if code is None:
                continue
            multiprocess.mark_process_dead(worker.proc.pid)  # type: ignore[no-untyped-call]
            lived = time.monotonic() - worker.started
            self.console.print(
                f"[yellow]worker {worker.index} (pid {worker.proc.pid}) exited with "
                f"{_describe(code)} after {lived:.1f} s; restarting it[/]",
                highlight=False,
            )
            self.fast_failures = self.fast_failures + 1 if lived < FAST_FAILURE_SECONDS else 0
            if self.fast_failures >= MAX_FAST_FAILURES:
                self.failed = (
                    f"workers keep dying at start ({self.fast_failures} in a row); stopping"
                )
                return
            self.workers[i] = self.spawn(worker.index)

    async def run(self, stop: asyncio.Event) -> None:
        self.workers = [self.spawn(i) for i in range(self.count)]
        while not stop.is_set() and self.failed is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)
            if not stop.is_set():
                self.check()
        await self.stop_workers()

    async def stop_workers(self) -> None:
        for worker in self.workers:
            if worker.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while time.monotonic() < deadline and any(w.proc.poll() is None for w in self.workers):
            await asyncio.sleep(0.05)
        for worker in self.workers:
            if worker.proc.poll() is None:
                self.console.print(
                    f"[red]worker pid {worker.proc.pid} ignored SIGTERM; killing it[/]"
                )
                worker.proc.kill()
                worker.proc.wait()


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


def serve_workers(data_dir: Path, policy: Path | None, host: str, port: int, count: int) -> None:
    console = Console(stderr=True)
    metrics_dir = tempfile.mkdtemp(prefix="warden-metrics-")
    run_dir = tempfile.mkdtemp(prefix="warden-run-")  # the workers' shared boards
    if "prometheus_client" in sys.modules and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        raise WardenError("internal: prometheus_client was imported before multiprocess set-up")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # inherited by every worker
    from warden.gateway import Gateway
    from warden.server import banner, seeded_line

    socket_path: Path | None = None
    try:
        gateway = Gateway.open(data_dir, policy)
        try:
            # before the socket is bound: no connection waits in the backlog meanwhile
            history = gateway.recent_history()
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            listener = socket.create_server((host, port), family=family, backlog=2048)
            listener.set_inheritable(True)
            socket_path = writer_socket_path(data_dir)
            banner(console, gateway, data_dir, host, port, count)
            from warden.endpoints.board import BreakerBoard

            board_path = Path(run_dir) / "breakers.bin"
            BreakerBoard.create(board_path, list(gateway.policy.routes.endpoints)).close()
            from warden.baselines import seed_board
            from warden.series_board import SeriesBoard, series_names

            series_path = Path(run_dir) / "series.bin"
            expected = {f"review:{n}": p0 for n, p0 in gateway.monitor.expected.items()}
            names = series_names(list(gateway.policy.decision_types))
            with contextlib.closing(
                SeriesBoard.create(series_path, names, expected=expected)
            ) as series_board:
                seed_board(series_board, history)  # the workers replay it when they start
            seeded_line(console, history)
            supervisor = Supervisor(
                data_dir,
                gateway.policy.source,
                gateway.policy.version,
                listener,
                socket_path,
                count,
                console,
                board_path,
                series_path,
            )
            from warden.runtime import tune_for_serving

            tune_for_serving()  # the writer allocates per entry: no rescans of the policy
            _run_loop(_main(gateway.store, supervisor))
            listener.close()
        finally:
            gateway.close()  # drains the writer queue: everything acknowledged is durable
        if supervisor.failed:
            raise WardenError(supervisor.failed)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)
        if socket_path is not None and socket_path.parent != data_dir.resolve():
            shutil.rmtree(socket_path.parent, ignore_errors=True)


async def _main(store: Any, supervisor: Supervisor) -> None:
    from warden.audit.writer_service import WriterService

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    service = WriterService(store, supervisor.socket_path)
    await service.start()
    try:
        await supervisor.run(stop)
    finally:
        await service.close()


def _run_loop(main: Any) -> None:
    import uvloop

    uvloop.run(main)
