"""The round-5 second-stage study's helpers (the study itself runs MiniLM for minutes)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from warden.guard.stage_study import Segmented, context_of, features, stage_threshold


def test_context_is_spread_over_the_other_segments() -> None:
    assert context_of(10, 0, 4) == [1, 4, 6, 9]  # first and last of the others included
    assert context_of(10, 5, 0) == [0, 1, 2, 3, 4, 6, 7, 8, 9]  # 0: every other segment
    assert context_of(3, 1, 4) == [0, 2]
    assert context_of(1, 0, 4) == []


def test_context_features_measure_the_topic_shift() -> None:
    vecs = {"a": [1.0, 0.0], "b": [1.0, 0.0], "x": [0.0, 1.0]}

    def encode(texts: Sequence[str]) -> np.ndarray:
        return np.array([vecs[t] for t in texts], dtype=np.float32)

    doc = Segmented(["a", "b", "x"], np.zeros((3, 5), dtype=np.float32))
    x = features(doc, [0, 2], encode, 4)
    assert x.shape == (2, 2 + 3 + 2)
    assert x[0, -2:] == pytest.approx([math.sqrt(0.5), 1.0])  # "a" has a twin
    assert x[1, -2:] == pytest.approx([0.0, 0.0])  # "x" shares nothing with the rest
    assert features(doc, [0], encode, None).shape == (1, 2 + 3)
    alone = Segmented(["x"], np.zeros((1, 5), dtype=np.float32))
    assert features(alone, [0], encode, 4)[0, -2:] == pytest.approx([1.0, 1.0])


def test_stage_threshold_keeps_every_clean_kind_within_its_limit() -> None:
    emails = [("email", False, float(s)) for s in range(10)]  # 10: none may be added
    requests = [("email+request", False, float(s) / 10) for s in range(40)]
    judged = [*emails, *requests, ("email+text_attack", False, 20.0)]
    t = stage_threshold(judged, 0.01)
    assert 9.0 < t < 9.0 + 1e-9
    # requests at 5 %: 2 of 40 may be added, but the e-mails still bind
    assert stage_threshold(judged, 0.05) == t
    t5 = stage_threshold(requests, 0.05)
    assert 3.7 < t5 < 3.7 + 1e-9  # the two highest (3.9, 3.8) are allowed
    # a kind the head flags above 1 % keeps the head's rate as its limit: nothing added
    flagged = [("code", True, -math.inf)] * 5 + [("code", False, 1.0)] * 95
    assert 1.0 < stage_threshold(flagged, 0.01) < 1.0 + 1e-9
    assert stage_threshold([("code", False, -math.inf)], 0.01) == -math.inf
