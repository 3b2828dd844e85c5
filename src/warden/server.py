"""Run the HTTP API with uvicorn on the embedded store."""

from __future__ import annotations

from pathlib import Path

import uvicorn
from rich.console import Console

from warden.api.app import create_app
from warden.gateway import Gateway
from warden.guard.surfaces import warm_up
from warden.runtime import tune_for_serving


def serve(data_dir: Path, policy: Path | None, host: str, port: int) -> None:
    console = Console(stderr=True)
    gateway = Gateway.open(data_dir, policy)
    try:
        keys = gateway.keyring.principals() if gateway.keyring else []
        console.print(
            f"Warden on http://{host}:{port} (OpenAPI: /docs) — data {data_dir}, policy "
            f"{gateway.policy.version[:19]}…, {gateway.store.size()} audit entries, "
            f"{len(keys)} API key(s)",
            highlight=False,
        )
        if not keys:
            console.print(
                "[yellow]no API keys yet:[/] create one with "
                "`warden keys create NAME --role service` and restart"
            )
        config = uvicorn.Config(
            create_app(gateway, close_on_shutdown=True),
            host=host,
            port=port,
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_level="warning",
            backlog=2048,
            proxy_headers=False,
            server_header=False,
        )
        warm_up(t.spec.guard.output for t in gateway.policy.decision_types.values())
        tune_for_serving()
        uvicorn.Server(config).run()
    finally:
        gateway.close()
