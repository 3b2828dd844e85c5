"""PNG plots for the calibration report and the bands report (matplotlib, Agg backend: no
display needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from warden.audit.entry import final_record
from warden.audit.store import AuditStore
from warden.models.calibrate import CalibrationResult
from warden.models.calibration import cost_surface, reliability
from warden.models.monitor import band_history, control_limit, review_stats


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_calibration_report(result: CalibrationResult, out: Path) -> list[Path]:
    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    name = result.summary["decision_type"]

    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect")
    for probs, label in ((result.raw, "raw score"), (result.calibrated, "calibrated")):
        pts = reliability(probs, result.labels)
        ax.plot([p for p, _, _ in pts], [o for _, o, _ in pts], "o-", label=label)
    ax.set(
        xlabel="predicted probability (bin mean)",
        ylabel="observed positive rate",
        title=f"{name}: reliability (held out; ECE {result.summary['ece_raw']:.3f} → "
        f"{result.summary['ece_calibrated']:.3f})",
    )
    ax.legend()
    paths.append(_save(fig, out / "reliability.png"))

    cand, surface = cost_surface(result.calibrated, result.labels, result.costs)
    fig, ax = plt.subplots(figsize=(6.5, 5))
    shown = np.where(np.isfinite(surface), surface, np.nan)
    mesh = ax.pcolormesh(cand, cand, shown.T, shading="nearest", cmap="viridis")
    ax.plot(
        [result.chosen.approve_at_or_below], [result.chosen.decline_at_or_above], "r*",
        markersize=14, label="chosen",
    )  # fmt: skip
    ax.set(
        xlabel="approve at or below", ylabel="decline at or above",
        title=f"{name}: expected cost per decision (held out)",
    )  # fmt: skip
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set_yscale("symlog", linthresh=1e-3)
    fig.colorbar(mesh, ax=ax, label="cost per decision")
    ax.legend(loc="lower right")
    paths.append(_save(fig, out / "cost.png"))

    fig, ax = plt.subplots(figsize=(7, 4))
    options = {
        "chosen": result.summary["chosen"],
        "static bands": result.summary["baseline_static_bands"],
        "single threshold": result.summary["baseline_single_threshold"],
    }
    # approvals are ~95 % everywhere: show the two small bands side by side, in percent
    x = np.arange(len(options))
    for offset, band, color in ((-0.2, "review", "tab:orange"), (0.2, "decline", "tab:red")):
        values = [100 * o[f"{band}_share"] for o in options.values()]
        bars = ax.bar(x + offset, values, width=0.4, label=band, color=color)
        ax.bar_label(bars, fmt="%.2f%%", fontsize=8)
    ax.set_xticks(
        x,
        [f"{name}\ncost {o['cost_per_decision']:.3f}, approve {o['approve_share']:.1%}"
         for name, o in options.items()],
    )  # fmt: skip
    ax.set(ylabel="% of decisions", title=f"{name}: band volumes (held out)")
    ax.legend()
    paths.append(_save(fig, out / "bands.png"))

    summary = out / "summary.json"
    summary.write_text(json.dumps(result.summary, indent=2) + "\n")
    return [*paths, summary]


def write_bands_report(
    history: dict[str, list[float]],
    baseline: dict[str, float | None],
    window: int,
    review: dict[str, Any],
    out: Path,
) -> list[Path]:
    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, shares in sorted(history.items()):
        line = ax.plot(range(1, len(shares) + 1), shares, "o-", label=f"{name} review share")
        p0 = baseline.get(name)
        if p0 is None and shares:
            p0 = shares[0]
        if p0 is not None:
            ax.axhline(control_limit(p0, window), color=line[0].get_color(), ls="--",
                       label=f"{name} 3σ limit")  # fmt: skip
    ax.set(xlabel=f"window of {window} decisions", ylabel="review share",
           title="Middle-band share per window (p-chart)")  # fmt: skip
    ax.legend(fontsize=8)
    paths.append(_save(fig, out / "review_share.png"))

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, stats in sorted(review.items()):
        series = stats["series"]
        n = np.arange(1, len(series) + 1)
        overrides = np.cumsum([o for o, _ in series]) / n
        ax.plot(n, overrides, label=f"{name} override rate")
        agree = [a for _, a in series if a is not None]
        if agree:
            ax.plot(np.arange(1, len(agree) + 1), np.cumsum(agree) / np.arange(1, len(agree) + 1),
                    label=f"{name} label agreement")  # fmt: skip
    ax.set(xlabel="reviews (cumulative)", ylabel="rate", ylim=(0, 1.05),
           title="Reviewer override rate and model–reviewer agreement")  # fmt: skip
    ax.legend(fontsize=8)
    paths.append(_save(fig, out / "reviewers.png"))
    return paths


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def bands_report(store: AuditStore, window: int, out: Path) -> dict[str, Any]:
    """The bands report from the audit log: review share per window of decisions against
    the p-chart limit (baseline: the active thresholds' expected share, else the first
    window), reviewer override rate and model–reviewer agreement, with plots."""
    from warden.models.thresholds import active_thresholds

    history = band_history(store.iter_entries(), window)
    baseline: dict[str, float | None] = {
        name: version.document["fitted_on"].get("review_share")
        for name, version in active_thresholds(store).items()
    }
    reviews = store.entries_of_kind("review")
    decisions = {}
    for entry in reviews:
        if entry.decision_id is not None and entry.decision_id not in decisions:
            decisions[entry.decision_id] = final_record(store.entries_for(entry.decision_id)).body()
    stats = review_stats(decisions, reviews)
    plots = write_bands_report(history, baseline, window, stats, out)
    summary: dict[str, Any] = {}
    for name in sorted(set(history) | set(stats)):
        shares = history.get(name, [])
        p0 = baseline.get(name)
        if p0 is None and shares:
            p0 = shares[0]
        limit = control_limit(p0, window) if p0 is not None else None
        s = stats.get(name, {})
        summary[name] = {
            "windows": len(shares),
            "last_review_share": shares[-1] if shares else None,
            "baseline_share": p0,
            "control_limit": limit,
            "windows_above_limit": sum(1 for v in shares if limit is not None and v > limit),
            "reviews": s.get("reviews", 0),
            "override_rate": s.get("override_rate"),
            "label_agreement": s.get("agreement"),
        }
    return {"summary": summary, "plots": [str(p) for p in plots]}
