"""Decisions through the Python API with the durable SQLite audit store, and the same
stream on a null store in the same run (the audit-cost ratio).

    .venv/bin/python bench/bench_python_api.py [--requests 20000] [--concurrency 1,32,128]
                                               [--scoring rules|model]

`--scoring model` (the default) runs the scored policy: the CEL rules plus the LightGBM
model (`fraud-lgbm`, trained here once with `warden model train`'s config; built from the
training run's bytes, no MLflow) and the calibrated-band lookup; `rules` runs the bundled
rules-only policy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, percentile, stream

from warden.audit.null_store import NullAuditStore
from warden.audit.sqlite_store import SQLiteAuditStore
from warden.auth import Principal, Role
from warden.gateway import DEFAULT_POLICY, Gateway
from warden.models.loaded import LoadedModel
from warden.models.policies import SCORED_POLICY
from warden.models.train import TrainConfig, train
from warden.policy.loader import load_policy_file
from warden.runtime import tune_for_serving

CALLER = Principal("bench", Role.SERVICE)


async def drive(
    gateway: Gateway, requests: list[dict[str, Any]], concurrency: int
) -> dict[str, float]:
    latencies: list[float] = []
    queue = list(reversed(requests))

    async def worker() -> None:
        while queue:
            request = queue.pop()
            started = time.perf_counter()
            await gateway.decide(request, CALLER)
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    return {
        "decisions": len(latencies),
        "per_second": len(latencies) / seconds,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
    }


def scoring_setup(scoring: str) -> tuple[Path, dict[str, LoadedModel]]:
    if scoring == "rules":
        return DEFAULT_POLICY, {}
    trained, _ = train(TrainConfig())
    model = LoadedModel.from_bytes(
        "fraud-lgbm", "bench", trained.text, trained.feature_set, sha256=trained.sha256
    )
    return SCORED_POLICY, {"fraud-lgbm@champion": model}


def run(requests: int, levels: list[int], repeats: int, scoring: str) -> dict[str, Any]:
    data = stream(requests)
    policy_path, models = scoring_setup(scoring)
    policy = load_policy_file(policy_path)
    rows = []
    for concurrency in levels:
        best: dict[str, dict[str, float]] = {}
        for _ in range(repeats):  # alternate the two stores so drift hits both alike
            null = Gateway(policy, NullAuditStore(), models=models)
            result = asyncio.run(drive(null, data, concurrency))
            if result["per_second"] > best.get("null", {}).get("per_second", 0):
                best["null"] = result
            tmp = Path(tempfile.mkdtemp(prefix="warden-bench-"))
            try:
                store = SQLiteAuditStore(tmp)
                with Gateway(policy, store, models=models) as durable:
                    durable.activate_policy()
                    result = asyncio.run(drive(durable, data, concurrency))
                    result["commits"] = sum(1 for _ in durable.store.checkpoints())
            finally:
                shutil.rmtree(tmp)
            if result["per_second"] > best.get("sqlite", {}).get("per_second", 0):
                best["sqlite"] = result
        rows.append(
            {
                "concurrency": concurrency,
                "sqlite": best["sqlite"],
                "null": best["null"],
                "ratio": best["sqlite"]["per_second"] / best["null"]["per_second"],
            }
        )
    return {
        "benchmark": "python_api",
        "scoring": scoring,
        "requests": requests,
        "repeats": repeats,
        "machine": machine(),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", default="1,32,128")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--scoring", choices=("rules", "model"), default="model")
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        help="sys.setswitchinterval (default: Warden's own setting)",
    )
    args = parser.parse_args()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    levels = [int(x) for x in args.concurrency.split(",")]
    tune_for_serving()
    result = run(args.requests, levels, args.repeats, args.scoring)
    what = "rules only" if args.scoring == "rules" else "rules + model"
    table = Table(
        title=f"Python API, {what}, {args.requests} decisions per run (best of {args.repeats})"
    )
    for column in (
        "in flight",
        "SQLite audit /s",
        "p50 ms",
        "p99 ms",
        "entries/commit",
        "null store /s",
        "ratio",
    ):
        table.add_column(column, justify="right")
    for row in result["rows"]:
        s, n = row["sqlite"], row["null"]
        table.add_row(
            str(row["concurrency"]),
            f"{s['per_second']:,.0f}",
            f"{s['p50_ms']:.2f}",
            f"{s['p99_ms']:.2f}",
            f"{s['decisions'] / s['commits']:.1f}",
            f"{n['per_second']:,.0f}",
            f"{row['ratio']:.2f}",
        )
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
