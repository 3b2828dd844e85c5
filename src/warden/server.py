"""Run the HTTP API with uvicorn on the embedded store: one process (the default), or
request workers in several processes feeding one audit writer (`warden.supervisor`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from rich.console import Console

from warden.runtime import tune_for_serving

if TYPE_CHECKING:
    from warden.baselines import RecentHistory


def uvicorn_config(app: Any, **listen: Any) -> uvicorn.Config:
    """The server settings every Warden HTTP process uses (one process or a worker)."""
    return uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        backlog=2048,
        proxy_headers=False,
        server_header=False,
        **listen,
    )


def banner(
    console: Console, gateway: Any, data_dir: Path, host: str, port: int, workers: int = 1
) -> None:
    keys = gateway.keyring.principals() if gateway.keyring else []
    procs = f", {workers} request workers" if workers > 1 else ""
    console.print(
        f"Warden on http://{host}:{port} (OpenAPI: /docs) — data {data_dir}, "
        f"policy {gateway.policy.version[:19]}…, {gateway.store.size()} audit entries, "
        f"{len(keys)} API key(s){procs}",
        highlight=False,
    )
    if not keys:
        console.print(
            "[yellow]no API keys yet:[/] create one with "
            "`warden keys create NAME --role service` and restart"
        )


def seeded_line(console: Console, history: RecentHistory) -> None:
    """Say what the restart took over from the audit log (`warden.baselines`)."""
    if not history.lengths and not history.outcomes:
        return
    parts = [
        f"{name} {counts['lengths']} answer lengths, {counts['outcomes']} outcomes"
        for name, counts in history.summary().items()
    ]
    console.print(
        f"baselines seeded from the audit log's tail ({history.scanned:,} records read in "
        f"{history.seconds:.2f} s): {'; '.join(parts)}"
    )


def serve(data_dir: Path, policy: Path | None, host: str, port: int, workers: int = 1) -> None:
    if workers > 1:
        from warden.supervisor import serve_workers

        serve_workers(data_dir, policy, host, port, workers)
        return
    from warden.api.app import create_app
    from warden.api.openai_compat import FrontDoorFirst
    from warden.gateway import Gateway
    from warden.guard.surfaces import warm_up

    console = Console(stderr=True)
    gateway = Gateway.open(data_dir, policy)
    try:
        history = gateway.recent_history()
        gateway.seed_windows(history)
        banner(console, gateway, data_dir, host, port)
        seeded_line(console, history)
        app = FrontDoorFirst(create_app(gateway, close_on_shutdown=True), gateway)
        config = uvicorn_config(app, host=host, port=port)
        warm_up(t.spec.guard.output for t in gateway.policy.decision_types.values())
        tune_for_serving()
        uvicorn.Server(config).run()
    finally:
        gateway.close()
