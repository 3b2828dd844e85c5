"""The training pipeline: realistic data, reproducible to the byte."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import replace

from tests.models.conftest import SMALL
from warden.demo.stream import PATTERNS
from warden.models.features import PAYMENT_V1
from warden.models.train import make_dataset, train


def test_same_data_and_seed_give_a_byte_identical_model_file() -> None:
    first, _ = train(SMALL)
    second, _ = train(SMALL)
    assert hashlib.sha256(first.text).hexdigest() == hashlib.sha256(second.text).hexdigest()
    assert first.sha256 == second.sha256 == "sha256:" + hashlib.sha256(first.text).hexdigest()
    other_seed, _ = train(replace(SMALL, seed=SMALL.seed + 1))
    assert other_seed.sha256 != first.sha256
    other_data, _ = train(replace(SMALL, stream_seed=SMALL.stream_seed + 1))
    assert other_data.sha256 != first.sha256


def test_model_is_the_text_format_over_the_named_features_and_ranks_fraud() -> None:
    model, splits = train(SMALL)
    text = model.text.decode()
    assert text.startswith("tree\n")
    assert "feature_names=" + " ".join(PAYMENT_V1.names) in text
    assert model.feature_set == "payment/v1"
    assert model.params["deterministic"] is True and model.params["num_threads"] == 1
    # a real model, not a constant: fraud is ranked far above the 1 % base rate
    assert model.metrics["test_pr_auc"] > 0.5
    assert len(splits.train.y) == int(SMALL.rows * 0.6)


def test_generated_data_is_imbalanced_and_shows_every_fraud_pattern() -> None:
    data = make_dataset(12_000, 5)
    share = data.y.mean()
    assert 0.005 <= share <= 0.02, share
    patterns = Counter(p for p in data.patterns if p is not None)
    assert set(patterns) == set(PATTERNS)
    assert sum(patterns.values()) == int(data.y.sum())
    assert data.X.shape == (12_000, len(PAYMENT_V1.names))
