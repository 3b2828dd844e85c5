"""Calibration maps and cost-minimising thresholds, against brute force and sklearn."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from warden.models.calibration import (
    CalibrationMap,
    Costs,
    apply_many,
    band_cost,
    best_single_threshold,
    choose_thresholds,
    expected_calibration_error,
    fit_calibration,
    fit_isotonic,
)

COSTS = Costs(false_approve=500, false_decline=25, review=4)


def _miscalibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.beta(0.3, 12, size=n)  # mostly tiny risks, a long tail
    labels = (rng.random(n) < truth).astype(float)
    return np.sqrt(truth), labels  # a score that overstates every risk


def test_the_stored_map_is_sklearns_isotonic_fit() -> None:
    scores, labels = _miscalibrated(5000, 1)
    cal = fit_isotonic(scores, labels)
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(scores, labels)
    probe = np.random.default_rng(2).random(500)
    assert np.max(np.abs(apply_many(cal, probe) - iso.predict(probe))) < 1e-5
    assert list(cal.x) == sorted(cal.x) and list(cal.y) == sorted(cal.y)


def test_calibration_lowers_the_held_out_error() -> None:
    scores, labels = _miscalibrated(20_000, 3)
    cal = fit_isotonic(scores[::2], labels[::2])
    before = expected_calibration_error(scores[1::2], labels[1::2])
    after = expected_calibration_error(apply_many(cal, scores[1::2]), labels[1::2])
    assert before > 0.05 and after < 0.02, (before, after)


def test_few_labels_get_a_smooth_platt_map_not_an_isotonic_staircase() -> None:
    scores, labels = _miscalibrated(400, 5)
    assert 5 <= labels.sum() < 50
    iso = fit_isotonic(scores, labels)
    cal = fit_calibration(scores, labels)
    assert cal.method == "platt" and CalibrationMap.from_dict(cal.as_dict()) == cal
    probe = np.linspace(0.05, 0.95, 19)
    platt = apply_many(cal, probe)
    assert np.all(np.diff(platt) > 0)  # strictly increasing: every score keeps its rank
    assert len(set(apply_many(iso, probe))) < len(set(platt))  # isotonic: a few steps
    before = expected_calibration_error(scores, labels)
    assert expected_calibration_error(apply_many(cal, scores), labels) < before
    many_scores, many_labels = _miscalibrated(20_000, 6)
    assert fit_calibration(many_scores, many_labels).method == "isotonic"


def test_chosen_thresholds_are_the_brute_force_optimum() -> None:
    scores, labels = _miscalibrated(250, 4)
    chosen = choose_thresholds(scores, labels, COSTS)
    grid = np.concatenate(([0.0], np.unique(scores), [1.0]))
    best = min(
        band_cost(scores, labels, float(lo), float(hi), COSTS).cost_per_decision
        for lo, hi in itertools.combinations(grid, 2)
    )
    assert chosen.cost_per_decision == pytest.approx(best)
    again = band_cost(scores, labels, chosen.approve_at_or_below, chosen.decline_at_or_above, COSTS)
    assert again == chosen


def test_review_capacity_caps_the_middle_band() -> None:
    scores, labels = _miscalibrated(4000, 5)
    free = choose_thresholds(scores, labels, COSTS)
    capped = choose_thresholds(scores, labels, COSTS, review_capacity=free.review_share / 2)
    assert capped.review_share <= free.review_share / 2
    assert capped.cost_per_decision >= free.cost_per_decision


def test_costs_drive_the_band_shape() -> None:
    scores, labels = _miscalibrated(1000, 6)
    cheap_review = choose_thresholds(scores, labels, Costs(500, 25, 0.01))
    dear_review = choose_thresholds(scores, labels, Costs(500, 25, 400))
    assert cheap_review.review_share > dear_review.review_share
    assert dear_review.review_share == 0.0
    single = best_single_threshold(scores, labels, COSTS)
    assert single.review_share == 0.0
    assert single.approve_at_or_below == single.decline_at_or_above
