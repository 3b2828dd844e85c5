"""One request worker of `warden serve --workers N` (started by `warden.supervisor`, not
by hand): the whole gateway — policy, guard detectors (warmed before it accepts),
endpoints with their own health checks and breakers — on the inherited listening socket,
with a RemoteAuditStore whose appends go to the parent's audit writer.

Per worker (not shared between processes): endpoint health and circuit breakers, the
output-anomaly rolling baselines, the band monitor's review-share window, the connection
pool to the model endpoints. Threshold activations made through another worker are picked
up within a second (`THRESHOLDS_POLL_SECONDS`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

THRESHOLDS_POLL_SECONDS = 1.0
log = logging.getLogger("warden.worker")
PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """SIGTERM this process when the parent dies (Linux); if it already died, exit."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:
        sys.exit("warden worker: the supervising process is gone")


class WorkerHeader:
    """ASGI middleware: `X-Warden-Worker: <pid>` on every response (which process served)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.header = (b"x-warden-worker", str(os.getpid()).encode())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), self.header]
            await send(message)

        await self.app(scope, receive, send_with_header)


async def follow_thresholds(gateway: Any, seen: int) -> None:
    """Apply threshold activations another worker logged from entry `seen` on (each worker
    holds its own; `seen` is the log's size before the gateway read the active ones, so
    an activation landing while this worker starts is not missed)."""
    from warden.models.thresholds import active_thresholds

    store = gateway.store
    while True:
        await asyncio.sleep(THRESHOLDS_POLL_SECONDS)
        try:
            size = store.size()
            if size == seen:
                continue
            fresh = "thresholds" in store.kinds_since(seen)
            seen = size
            if fresh:
                apply_thresholds(gateway, active_thresholds(store))
        except Exception:  # keep following: a failed read is retried on the next tick
            log.exception("worker: reading threshold activations failed")


def apply_thresholds(gateway: Any, active: dict[str, Any]) -> None:
    for name, version in active.items():
        held = gateway.bands.thresholds.get(name)
        if held is None or held.version != version.version:
            gateway.bands.thresholds[name] = version
            expected = version.document["fitted_on"].get("review_share")
            gateway.monitor.set_expected(name, expected)


def open_gateway(data_dir: Path, socket_path: Path, policy_source: str, version: str) -> Any:
    """The gateway over the remote store, on exactly the policy the parent activated
    (fetched from the audit store by its content hash, not re-read from the file)."""
    from warden.audit.remote_store import RemoteAuditStore
    from warden.auth import KeyRing
    from warden.errors import WardenError
    from warden.gateway import Gateway
    from warden.models.registry import ModelRegistry
    from warden.models.serving import load_policy_models, referenced_models
    from warden.policy.loader import load_policy_bytes

    store = RemoteAuditStore(data_dir, socket_path)
    try:
        blob = store.get_blob(version)
        if blob is None or blob[0] != "policy":
            raise WardenError(f"policy {version} is not in the audit store")
        policy = load_policy_bytes(blob[1], source=policy_source)
        store.opened_at_size = store.size()  # before the gateway reads active thresholds
        models = {}
        if referenced_models(policy):
            models = load_policy_models(policy, ModelRegistry(data_dir), store)
        return Gateway(policy, store, KeyRing(data_dir / "keys.yaml"), models)
    except BaseException:
        store.close()
        raise


def share_windows(gateway: Any, path: Path) -> None:
    """The output guard's length windows and the band monitor's review windows, kept with
    the other workers on the parent's series board (`warden.series_board`)."""
    from warden.guard.surfaces import anomaly_checker
    from warden.series_board import SeriesBoard, series_names

    names = list(gateway.policy.decision_types)
    board = SeriesBoard(path, series_names(names))
    gateway.monitor.share(board, names)
    anomaly_checker().share(board)


async def run(gateway: Any, listener: socket.socket) -> None:
    import uvicorn

    from warden.api.app import create_app
    from warden.api.openai_compat import FrontDoorFirst
    from warden.server import uvicorn_config

    app = FrontDoorFirst(create_app(gateway, close_on_shutdown=True), gateway)
    server = uvicorn.Server(uvicorn_config(WorkerHeader(app)))

    def writer_lost(reason: str) -> None:
        print(f"warden worker {os.getpid()}: {reason}; stopping", file=sys.stderr, flush=True)
        server.should_exit = True

    gateway.store.on_lost = writer_lost
    await gateway.store.connect()
    follower = asyncio.create_task(follow_thresholds(gateway, gateway.store.opened_at_size))
    try:
        await server.serve(sockets=[listener])
    finally:
        follower.cancel()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m warden.worker")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--policy-source", required=True)
    parser.add_argument("--policy-version", required=True)
    parser.add_argument("--writer-socket", type=Path, required=True)
    parser.add_argument("--listen-fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--breaker-board", type=Path, help="the workers' shared breakers")
    parser.add_argument("--series-board", type=Path, help="the workers' shared windows")
    args = parser.parse_args(argv)
    die_with_parent(args.parent_pid)
    listener = socket.socket(fileno=args.listen_fd)

    import uvloop

    from warden.guard.surfaces import warm_up
    from warden.runtime import tune_for_serving

    gateway = open_gateway(
        args.data_dir, args.writer_socket, args.policy_source, args.policy_version
    )
    if args.breaker_board is not None:
        from warden.endpoints.board import BreakerBoard

        gateway.endpoints.share_breakers(
            BreakerBoard(args.breaker_board, list(gateway.policy.routes.endpoints))
        )
    if args.series_board is not None:
        share_windows(gateway, args.series_board)
    try:
        warm_up(t.spec.guard.output for t in gateway.policy.decision_types.values())
        tune_for_serving()
        uvloop.run(run(gateway, listener))
    finally:
        gateway.close()


if __name__ == "__main__":
    main()
