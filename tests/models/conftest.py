"""A model registry shared by the model tests: MLflow's SQLite store takes seconds to
create, so one registry with one small trained model serves the whole session. Tests that
register more versions use model names of their own, so they never move another test's
aliases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from warden.models.registry import ModelRegistry
from warden.models.serving import train_and_register
from warden.models.train import TrainConfig

#: small and fast, still ≈ 140 frauds in training
SMALL = TrainConfig(rows=12_000, num_boost_round=40)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    reg = ModelRegistry(tmp_path_factory.mktemp("registry"))
    train_and_register(reg, "fraud-lgbm", ("champion",), SMALL)
    return reg


@pytest.fixture
def scored_gateway(data_dir: Path, registry: ModelRegistry) -> Iterator[Any]:
    from warden.gateway import Gateway
    from warden.models.policies import SCORED_POLICY

    gw = Gateway.open(data_dir, SCORED_POLICY, registry=registry)
    try:
        yield gw
    finally:
        gw.close()
