"""`warden dev …`: developer tools — the OpenAI-compatible upstream *simulator*."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

dev_app = typer.Typer(
    help="Developer tools: an upstream LLM simulator for tests, demos and benchmarks.",
    no_args_is_help=True,
)


@dev_app.command("upstream")
def upstream(
    region: Annotated[str, typer.Option(help="Region the simulator reports, e.g. eu-west-1.")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    latency_ms: Annotated[
        float, typer.Option(min=0.0, help="Added latency per chat completion.")
    ] = 0.0,
    latency_jitter_ms: Annotated[
        float, typer.Option(min=0.0, help="Uniform ± jitter around --latency-ms.")
    ] = 0.0,
    failure_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of completions answered 503.")
    ] = 0.0,
    bad_json_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of JSON answers made malformed.")
    ] = 0.0,
    access_log: Annotated[
        Path | None, typer.Option(help="Append one JSON line per request here.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of answers, failures and jitter.")] = 0,
    model: Annotated[str, typer.Option(help="Model name the simulator reports.")] = "sim-triage-1",
    scripted: Annotated[
        bool,
        typer.Option(
            help="Answer with the text of a system message starting '[simulator-script] ' "
            "(red-team probes of the output guard)."
        ),
    ] = False,
) -> None:
    """Run an OpenAI chat-completions SIMULATOR (not a model): /v1/chat/completions,
    /v1/models, /health; plausible claims-triage JSON, configurable latency and failures."""
    from warden.endpoints.simulator import SimulatorConfig, serve

    if not region.strip():
        raise typer.BadParameter("must not be empty", param_hint="--region")
    config = SimulatorConfig(
        region=region,
        model=model,
        latency_ms=latency_ms,
        latency_jitter_ms=latency_jitter_ms,
        failure_rate=failure_rate,
        bad_json_rate=bad_json_rate,
        seed=seed,
        access_log=access_log,
        scripted=scripted,
    )
    console = Console(stderr=True)

    def ready() -> None:
        console.print(
            f"upstream SIMULATOR {model} ({region}) on http://{host}:{port}/v1"
            + (f", access log {access_log}" if access_log else "")
            + (", scripted answers on" if scripted else ""),
            highlight=False,
            soft_wrap=True,
        )

    try:
        serve(config, host, port, ready)
    except OSError as exc:
        console.print(f"[bold red]error:[/] cannot listen on {host}:{port}: {exc.strerror}")
        raise typer.Exit(2) from None
