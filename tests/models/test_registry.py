"""The MLflow registry: aliases, hashes checked on load, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from warden.errors import NotFoundError, WardenError
from warden.gateway import Gateway
from warden.models.loaded import LoadedModel
from warden.models.policies import SCORED_POLICY
from warden.models.registry import ModelRef, ModelRegistry


def test_champion_resolves_to_a_version_with_its_artifact_hash(registry: ModelRegistry) -> None:
    version = registry.resolve(ModelRef.parse("fraud-lgbm@champion"))
    assert version.version == "1" and "champion" in version.aliases
    data = registry.artifact(version)
    model = LoadedModel.from_bytes(
        version.name, version.version, data, version.feature_set, sha256=version.sha256
    )
    assert model.as_record()["sha256"] == version.sha256
    assert (registry.root / "mlflow.db").exists()
    assert str(registry.artifacts) in registry.client.get_run(version.run_id).info.artifact_uri


def test_a_changed_artifact_is_refused(registry: ModelRegistry) -> None:
    version = registry.resolve(ModelRef.parse("fraud-lgbm@champion"))
    files = list(registry.artifacts.rglob("model.txt"))
    path = next(p for p in files if version.run_id in str(p))
    original = path.read_bytes()
    try:
        path.write_bytes(original.replace(b"tree\n", b"tree \n", 1))
        with pytest.raises(WardenError, match="does not match the registered"):
            registry.artifact(version)
    finally:
        path.write_bytes(original)
    with pytest.raises(WardenError, match="does not match the expected"):
        LoadedModel.from_bytes("m", "1", original + b"\n", "payment/v1", sha256=version.sha256)


def test_unknown_alias_and_missing_registry_name_the_fix(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    with pytest.raises(NotFoundError, match="not registered.*warden model train"):
        registry.resolve(ModelRef.parse("fraud-lgbm@challenger"))
    with pytest.raises(WardenError, match="must be one of champion, challenger"):
        registry.set_alias("fraud-lgbm", "production", "1")
    with pytest.raises(NotFoundError, match="no model registry"):
        Gateway.open(tmp_path / "data", SCORED_POLICY)
    assert not (tmp_path / "data" / "mlflow.db").exists()
