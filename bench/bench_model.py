"""The scoring model: its cost inside the decide gate, and its quality on a held-out split.

    .venv/bin/python bench/bench_model.py [--rows 40000] [--calibration-rows 40000] [--json F]

Speed: the decide gate's `evaluate` (CEL rules + features + LightGBM `predict` on one row,
one thread) on 5,000 stream requests, against the same rules without the model; and the
model call alone. Quality: the model trained by `warden model train` (same config), then
`warden calibrate`'s procedure on a fresh generated stream (seed 424242), held-out half:
PR-AUC, ECE before/after isotonic calibration, and the expected cost per decision of the
chosen thresholds against the two naive baselines. No MLflow here: the model is built from
the training run's bytes."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, percentile, stream

from warden.audit.null_store import NullAuditStore
from warden.gates.decide import evaluate
from warden.models.calibrate import calibrate
from warden.models.loaded import LoadedModel
from warden.models.policies import SCORED_POLICY
from warden.models.train import TrainConfig, train
from warden.policy.loader import load_policy_file


def _timed(fn: Any, rows: list[Any], repeats: int = 3) -> dict[str, float]:
    """Wall-clock and thread CPU time per call, best of `repeats` (by wall-clock p99). On a
    shared VM the wall-clock tail is mostly preemption; CPU time is what the code costs."""
    best: tuple[list[float], list[float]] | None = None
    for _ in range(repeats):
        wall, cpu = [], []
        for row in rows:
            started, started_cpu = time.perf_counter_ns(), time.thread_time_ns()
            fn(row)
            cpu.append((time.thread_time_ns() - started_cpu) / 1000)
            wall.append((time.perf_counter_ns() - started) / 1000)
        if best is None or percentile(wall, 99) < percentile(best[0], 99):
            best = (wall, cpu)
    assert best is not None
    wall, cpu = best
    return {
        "p50_us": percentile(wall, 50),
        "p99_us": percentile(wall, 99),
        "max_us": max(wall),
        "cpu_p50_us": percentile(cpu, 50),
        "cpu_p99_us": percentile(cpu, 99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=TrainConfig().rows)
    parser.add_argument("--calibration-rows", type=int, default=40_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    started = time.perf_counter()
    trained, _ = train(TrainConfig(rows=args.rows))
    train_s = time.perf_counter() - started
    model = LoadedModel.from_bytes("fraud-lgbm", "bench", trained.text, trained.feature_set,
                                   sha256=trained.sha256)  # fmt: skip
    policy = load_policy_file(SCORED_POLICY)
    compiled = policy.decision_types["payment_fraud"]
    requests = [
        (compiled.validate_inputs(r["inputs"]), r["jurisdiction"]) for r in stream(5000, seed=3)
    ]
    speed = {
        "rules_only": _timed(lambda r: evaluate(compiled, r[0], r[1], None), requests),
        "rules_and_model": _timed(lambda r: evaluate(compiled, r[0], r[1], model), requests),
        "model_call_only": _timed(lambda r: model.score(r[0]), requests),
    }
    started = time.perf_counter()
    result = calibrate(policy, {"fraud-lgbm@champion": model}, NullAuditStore(), "payment_fraud",
                       generator_rows=args.calibration_rows)  # fmt: skip
    calibrate_s = time.perf_counter() - started
    quality = result.summary
    out = {
        "benchmark": "model",
        "machine": machine(),
        "model_sha256": trained.sha256,
        "train_seconds": round(train_s, 2),
        "train_rows": args.rows,
        "calibrate_seconds": round(calibrate_s, 2),
        "speed": speed,
        "quality": quality,
    }
    print(f"model {trained.sha256}  trained on {args.rows} rows in {train_s:.1f}s "
          f"(test PR-AUC {trained.metrics['test_pr_auc']:.4f})")  # fmt: skip
    print("decide gate, per decision (µs)     p50      p99      max  cpu p50  cpu p99")
    for name, s in speed.items():
        print(f"  {name:<28} {s['p50_us']:8.1f} {s['p99_us']:8.1f} {s['max_us']:8.1f} "
              f"{s['cpu_p50_us']:8.1f} {s['cpu_p99_us']:8.1f}")  # fmt: skip
    extra = speed["rules_and_model"]["p99_us"] - speed["rules_only"]["p99_us"]
    print(f"  model's share of the gate at p99: {extra:.1f} µs (target: gate ≤ 2,000 µs p99)")
    q = quality
    print(f"held out: {q['held_out_rows']} rows, {q['held_out_positives']} positive; "
          f"PR-AUC {q['pr_auc']:.4f}; ECE raw {q['ece_raw']:.4f} → calibrated "
          f"{q['ece_calibrated']:.4f} (target ≤ 0.02); took {calibrate_s:.1f}s")  # fmt: skip
    print("expected cost per decision            approve≤  decline≥  review   cost")
    rows = (
        ("chosen thresholds (calibrated)", "chosen"),
        ("baseline: fixed policy bands", "baseline_static_bands"),
        ("baseline: one threshold, no review", "baseline_single_threshold"),
    )
    for label, key in rows:
        c = q[key]
        print(f"  {label:<36} {c['approve_at_or_below']:8.4f} {c['decline_at_or_above']:8.4f} "
              f"{c['review_share']:7.2%} {c['cost_per_decision']:7.4f}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
