"""Train the payment-fraud model: a LightGBM binary classifier on the seeded synthetic
card-payment stream (`warden.demo.stream`: documented fraud patterns, ≈1.2 % fraud).

Reproducible by construction: the data is a pure function of the stream seed, LightGBM
runs with `deterministic=True`, one thread, row-wise histograms and fixed seeds, and the
model is saved in LightGBM's text format — the same data and seed give a byte-identical
model file (a test trains twice and compares SHA-256).

The stream is split in time order: the first 60 % trains, the next 20 % calibrates (and
chooses thresholds), the last 20 % is held out for the figures."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from warden.canonical import content_id
from warden.demo.stream import StreamConfig, payment_requests
from warden.models.features import PAYMENT_V1, FeatureSet


@dataclass(frozen=True)
class TrainConfig:
    rows: int = 40_000
    stream_seed: int = 20_261_201
    seed: int = 7
    num_boost_round: int = 120
    learning_rate: float = 0.08
    num_leaves: int = 15
    min_data_in_leaf: int = 20


@dataclass
class Dataset:
    X: np.ndarray
    y: np.ndarray
    inputs: list[dict[str, Any]]
    patterns: list[str | None]

    def rows(self, start: int, stop: int) -> Dataset:
        return Dataset(
            self.X[start:stop], self.y[start:stop], self.inputs[start:stop],
            self.patterns[start:stop],
        )  # fmt: skip


@dataclass
class Splits:
    train: Dataset
    calibration: Dataset
    test: Dataset


@dataclass(frozen=True)
class TrainedModel:
    text: bytes  # LightGBM text model format
    sha256: str  # content id: "sha256:<hex>"
    feature_set: str
    params: dict[str, Any]
    metrics: dict[str, float]


def make_dataset(rows: int, stream_seed: int, features: FeatureSet = PAYMENT_V1) -> Dataset:
    inputs: list[dict[str, Any]] = []
    labels: list[int] = []
    patterns: list[str | None] = []
    for request in payment_requests(rows, StreamConfig(seed=stream_seed)):
        inputs.append(request["inputs"])
        labels.append(1 if request["_truth"]["fraud"] else 0)
        patterns.append(request["_truth"]["pattern"])
    X = np.array([features.values(x) for x in inputs], dtype=np.float64)
    return Dataset(X, np.array(labels, dtype=np.float64), inputs, patterns)


def split(data: Dataset) -> Splits:
    n = len(data.y)
    a, b = int(n * 0.6), int(n * 0.8)
    return Splits(data.rows(0, a), data.rows(a, b), data.rows(b, n))


def lgb_params(config: TrainConfig) -> dict[str, Any]:
    return {
        "objective": "binary",
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "min_data_in_leaf": config.min_data_in_leaf,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "deterministic": True,
        "num_threads": 1,
        "force_row_wise": True,
        "seed": config.seed,
        "bagging_seed": config.seed,
        "feature_fraction_seed": config.seed,
        "data_random_seed": config.seed,
        "verbosity": -1,
    }


def train(
    config: TrainConfig = TrainConfig(), features: FeatureSet = PAYMENT_V1
) -> tuple[TrainedModel, Splits]:
    import lightgbm as lgb
    from sklearn.metrics import average_precision_score, roc_auc_score

    splits = split(make_dataset(config.rows, config.stream_seed, features))
    params = lgb_params(config)
    train_set = lgb.Dataset(
        splits.train.X,
        splits.train.y,
        feature_name=list(features.names),
        categorical_feature=list(features.categorical),
        params={"verbosity": -1},
        free_raw_data=False,
    )
    booster = lgb.train(params, train_set, num_boost_round=config.num_boost_round)
    text = booster.model_to_string().encode()
    raw = booster.predict(splits.test.X, num_threads=1)
    metrics = {
        "test_pr_auc": float(average_precision_score(splits.test.y, raw)),
        "test_roc_auc": float(roc_auc_score(splits.test.y, raw)),
        "train_rows": float(len(splits.train.y)),
        "train_fraud_share": float(splits.train.y.mean()),
    }
    model = TrainedModel(
        text=text,
        sha256=content_id(text),
        feature_set=features.id,
        params={**params, **asdict(config)},
        metrics=metrics,
    )
    return model, splits
