"""Calibration of risk scores and the choice of band thresholds from the cost of errors.

* `fit_isotonic` fits scikit-learn's isotonic regression of the outcome on the raw score and
  keeps it as a piecewise-linear map (its breakpoints, rounded to 6 decimals). The map, not
  the sklearn object, is what is stored, versioned and applied — `apply_map` is the one
  function that turns a raw score into a calibrated one, at fit time and on the request path.
* `fit_platt` fits a logistic curve on the logit of the score (Platt scaling) and samples
  it into the same kind of map. Isotonic regression on a handful of positives is a staircase
  of a few steps that snaps scores to 0 or 1; two parameters cannot overfit like that.
  `fit_calibration` takes isotonic when both classes have enough rows, else Platt.
* `choose_thresholds` picks the two band thresholds on the calibrated score that minimise the
  expected cost per decision on labelled outcomes: a false approve (a positive approved), a
  false decline (a negative declined) and a review (every case in the middle band, whatever
  its label — a person is assumed to get it right), optionally under a cap on the review
  band's share of decisions.
* `expected_calibration_error`: ECE over 10 equal-width bins, weighted by bin size."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Scores = Sequence[float] | np.ndarray[Any, Any]


#: below this many rows of either class, `fit_calibration` uses Platt scaling
MIN_ROWS_PER_CLASS_FOR_ISOTONIC = 50
#: the Platt curve is stored as this many breakpoints, evenly spaced over [0, 1]
PLATT_POINTS = 201


@dataclass(frozen=True)
class CalibrationMap:
    x: tuple[float, ...]
    y: tuple[float, ...]
    method: str = "isotonic"

    def as_dict(self) -> dict[str, object]:
        return {"method": self.method, "x": list(self.x), "y": list(self.y)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> CalibrationMap:
        xs, ys = data["x"], data["y"]
        assert isinstance(xs, list) and isinstance(ys, list)
        return cls(
            tuple(float(v) for v in xs),
            tuple(float(v) for v in ys),
            str(data.get("method", "isotonic")),
        )


def apply_map(cal: CalibrationMap, score: float) -> float:
    """Linear interpolation between breakpoints, clipped at both ends (as sklearn does)."""
    xs, ys = cal.x, cal.y
    if score <= xs[0]:
        return ys[0]
    if score >= xs[-1]:
        return ys[-1]
    i = bisect_right(xs, score)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    if x1 == x0:
        return y1
    return round(y0 + (y1 - y0) * (score - x0) / (x1 - x0), 6)


def apply_many(cal: CalibrationMap, scores: Scores) -> np.ndarray:
    return np.array([apply_map(cal, float(s)) for s in scores])


def fit_isotonic(scores: Scores, labels: Scores) -> CalibrationMap:
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
    iso.fit(np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64))
    xs = [round(float(v), 6) for v in iso.X_thresholds_]
    ys = [round(float(v), 6) for v in iso.y_thresholds_]
    # rounding can make neighbouring x equal: keep the last of each run (monotone anyway)
    px: list[float] = []
    py: list[float] = []
    for x, y in zip(xs, ys, strict=True):
        if px and x == px[-1]:
            py[-1] = y
        else:
            px.append(x)
            py.append(y)
    return CalibrationMap(tuple(px), tuple(py))


def fit_platt(scores: Scores, labels: Scores) -> CalibrationMap:
    """Logistic regression of the outcome on logit(score), sampled at `PLATT_POINTS`."""
    from sklearn.linear_model import LogisticRegression

    def logit(p: np.ndarray) -> np.ndarray:
        q: np.ndarray = np.clip(p, 1e-6, 1 - 1e-6)
        out: np.ndarray = np.log(q / (1 - q)).reshape(-1, 1)
        return out

    fit = LogisticRegression(C=1e4, solver="lbfgs")
    fit.fit(logit(np.asarray(scores, dtype=np.float64)), np.asarray(labels, dtype=np.float64))
    xs = np.linspace(0.0, 1.0, PLATT_POINTS)
    ys = fit.predict_proba(logit(xs))[:, 1]
    return CalibrationMap(
        tuple(round(float(v), 6) for v in xs),
        tuple(round(float(v), 6) for v in np.maximum.accumulate(ys)),
        "platt",
    )


def fit_calibration(
    scores: Scores, labels: Scores, min_per_class: int = MIN_ROWS_PER_CLASS_FOR_ISOTONIC
) -> CalibrationMap:
    """Isotonic when both classes have `min_per_class` rows, else Platt scaling."""
    y = np.asarray(labels, dtype=np.float64)
    positives = int(y.sum())
    if min(positives, len(y) - positives) >= min_per_class:
        return fit_isotonic(scores, labels)
    return fit_platt(scores, labels)


def expected_calibration_error(probs: Scores, labels: Scores, bins: int = 10) -> float:
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    index = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.sum() * abs(p[mask].mean() - y[mask].mean())
    return float(total / len(p))


def reliability(probs: Scores, labels: Scores, bins: int = 10) -> list[tuple[float, float, int]]:
    """(mean predicted, observed rate, count) per non-empty equal-width bin."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    index = np.minimum((p * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        mask = index == b
        if mask.any():
            out.append((float(p[mask].mean()), float(y[mask].mean()), int(mask.sum())))
    return out


@dataclass(frozen=True)
class Costs:
    false_approve: float
    false_decline: float
    review: float


@dataclass(frozen=True)
class BandCost:
    approve_at_or_below: float
    decline_at_or_above: float
    cost_per_decision: float
    approve_share: float
    review_share: float
    decline_share: float
    false_approves: int
    false_declines: int


def band_cost(scores: Scores, labels: Scores, lo: float, hi: float, costs: Costs) -> BandCost:
    """Cost per decision of bands (approve ≤ lo, decline ≥ hi, review between); lo == hi
    means no review band (decline at or above, approve below)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    declined = s >= hi
    approved = (s <= lo) & ~declined if lo < hi else ~declined
    review = ~approved & ~declined
    fa = int((approved & (y == 1)).sum())
    fd = int((declined & (y == 0)).sum())
    n = len(s)
    cost = fa * costs.false_approve + fd * costs.false_decline + review.sum() * costs.review
    return BandCost(
        lo, hi, float(cost / n), float(approved.mean()), float(review.mean()),
        float(declined.mean()), fa, fd,
    )  # fmt: skip


def _candidates(scores: np.ndarray, limit: int = 1000) -> np.ndarray:
    """Every distinct score is a candidate threshold (exact: calibrated scores take a few
    dozen values); past `limit` distinct values, `limit` quantiles stand in for them."""
    unique = np.unique(scores)
    if len(unique) > limit:
        unique = np.unique(np.quantile(scores, np.linspace(0, 1, limit)))
    return np.concatenate(([0.0], unique, [1.0]))


def cost_surface(scores: Scores, labels: Scores, costs: Costs) -> tuple[np.ndarray, np.ndarray]:
    """Candidate thresholds and the cost per decision for every (lo, hi) pair
    (rows: lo, columns: hi; +inf where lo >= hi)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    cand = _candidates(s)
    n = len(s)
    # positives at or below each candidate (approved if lo = candidate)
    order = np.argsort(s, kind="stable")
    ss, ys = s[order], y[order]
    cum_pos = np.concatenate(([0.0], np.cumsum(ys)))
    cum_neg = np.concatenate(([0.0], np.cumsum(1 - ys)))
    at_or_below = np.searchsorted(ss, cand, side="right")  # count with s <= c
    below = np.searchsorted(ss, cand, side="left")  # count with s < c
    pos_le = cum_pos[at_or_below]
    neg_ge = cum_neg[-1] - cum_neg[below]
    count_le = at_or_below.astype(np.float64)
    count_ge = (n - below).astype(np.float64)
    review = n - count_le[:, None] - count_ge[None, :]
    total = (
        costs.false_approve * pos_le[:, None]
        + costs.false_decline * neg_ge[None, :]
        + costs.review * review
    ) / n
    valid = cand[:, None] < cand[None, :]
    return cand, np.where(valid & (review >= 0), total, np.inf)


def choose_thresholds(
    scores: Scores,
    labels: Scores,
    costs: Costs,
    review_capacity: float | None = None,
) -> BandCost:
    s = np.asarray(scores, dtype=np.float64)
    cand, surface = cost_surface(s, labels, costs)
    if review_capacity is not None:
        n = len(s)
        le = np.searchsorted(np.sort(s), cand, side="right")
        ge = n - np.searchsorted(np.sort(s), cand, side="left")
        share = (n - le[:, None] - ge[None, :]) / n
        surface = np.where(share <= review_capacity, surface, np.inf)
    i, j = np.unravel_index(int(np.argmin(surface)), surface.shape)
    return band_cost(s, labels, float(cand[i]), float(cand[j]), costs)


def best_single_threshold(scores: Scores, labels: Scores, costs: Costs) -> BandCost:
    """Baseline without a review band: the one threshold with the lowest cost."""
    s = np.asarray(scores, dtype=np.float64)
    best: BandCost | None = None
    for t in _candidates(s):
        c = band_cost(s, labels, float(t), float(t), costs)
        if best is None or c.cost_per_decision < best.cost_per_decision:
            best = c
    assert best is not None
    return best
