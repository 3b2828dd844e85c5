"""Residency routing decision: (jurisdiction, data class, decision type) → the ordered
allowed endpoints and the skipped ones with reasons. Target ≤ 50 µs p99.

Times exactly what the LLM gate does before a call — the plan lookup in the compiled
route table and `Router.route` (breaker and health state of every allowed endpoint) —
over a mixed EU/UK/US stream, once with every breaker closed and once with the EU primary's
breaker open (the failover path); then both again with the breakers on a shared breaker
board (`warden serve --workers N`: every routing decision first reads each allowed
endpoint's slot of the memory-mapped board). Each sample is one routing decision timed with
perf_counter_ns; figures include the timer's own cost (~0.1 µs)."""

from __future__ import annotations

import argparse
import gc
import json
import random
import tempfile
import time
from pathlib import Path

from common import machine, percentile

from warden.endpoints.board import BreakerBoard
from warden.endpoints.router import Router
from warden.policy.loader import load_policy_file

POLICY = Path(__file__).resolve().parents[1] / "examples" / "policy.yaml"


def run(router: Router, keys: list[tuple[str, str, str]]) -> list[float]:
    table = router.table
    samples = []
    clock = time.perf_counter_ns
    for key in keys:
        t0 = clock()
        plan = table.plan(*key)
        assert plan is not None
        routing = router.route(plan)
        samples.append((clock() - t0) / 1000)
        assert routing.candidates or routing.skipped
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=200_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    policy = load_policy_file(POLICY)
    rng = random.Random(5)
    types = ["claims_triage", "assistant_chat"]
    keys = [
        (
            rng.choice(["EU", "EU", "UK", "US"]),
            rng.choice(policy.policy.data_classes),
            rng.choice(types),
        )
        for _ in range(args.n)
    ]
    runs: list[tuple[str, list[float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for shared in (False, True):
            router = Router(policy.routes)
            if shared:
                path = Path(tmp) / "breakers.bin"
                names = list(policy.routes.endpoints)
                BreakerBoard.create(path, names).close()
                board = BreakerBoard(path, names)
                for name, breaker in router.breakers.items():
                    breaker.board = board.slot(name)
            suffix = ", shared board" if shared else ""
            run(router, keys[:10_000])  # warm up
            gc.collect()
            gc.disable()
            runs.append((f"all breakers closed{suffix}", run(router, keys)))
            for _ in range(3):
                router.breakers["llm-eu-1"].record_failure()
            assert router.breakers["llm-eu-1"].state == "open"
            runs.append((f"EU primary breaker open{suffix}", run(router, keys)))
            gc.enable()
    results = {}
    for name, samples in runs:
        row = {
            "n": len(samples),
            "p50_us": round(percentile(samples, 50), 2),
            "p99_us": round(percentile(samples, 99), 2),
            "p999_us": round(percentile(samples, 99.9), 2),
            "max_us": round(max(samples), 2),
        }
        results[name] = row
        print(
            f"{name:40s} n={row['n']}  p50 {row['p50_us']:.2f} µs  p99 {row['p99_us']:.2f} µs  "
            f"p99.9 {row['p999_us']:.2f} µs  max {row['max_us']:.1f} µs  (target p99 ≤ 50 µs)"
        )
    out = {"benchmark": "routing", "results": results, "machine": machine()}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
