"""The model registry: MLflow with its SQLite backend (`mlflow.db`) and artifacts in a
folder of Warden's data directory; no tracking server.

Every training run is logged (parameters, metrics, the text model file), the model is
registered, and the aliases `champion` / `challenger` point at versions. Each version
carries the artifact's SHA-256 as a tag; loading checks the downloaded bytes against it.

MLflow is slow to import (~2 s) and its SQLite store slow to create (~8 s of schema
migrations), so it is imported here only, lazily, and only at start-up or by the
`warden model` commands — never on the request path."""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from warden.canonical import content_id
from warden.errors import NotFoundError, PolicyError, WardenError
from warden.models.train import TrainedModel

EXPERIMENT = "warden-training"
ALIASES = ("champion", "challenger")


@dataclass(frozen=True)
class ModelRef:
    """A policy's `model:` value, `name@alias` (or `name@version` with a number)."""

    name: str
    alias: str

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        name, sep, alias = text.partition("@")
        if not sep or not name or not alias:
            raise PolicyError(f"model: {text!r} must be name@alias, e.g. fraud-lgbm@champion")
        return cls(name, alias)

    def __str__(self) -> str:
        return f"{self.name}@{self.alias}"


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    sha256: str
    feature_set: str
    run_id: str
    aliases: tuple[str, ...]


class ModelRegistry:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.uri = f"sqlite:///{self.root / 'mlflow.db'}"
        self.artifacts = self.root / "mlartifacts"
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            # quiet: no progress bars, no INFO lines about schema migrations
            os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
            os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
            from mlflow import MlflowClient

            for name in ("mlflow", "alembic"):
                logging.getLogger(name).setLevel(logging.WARNING)

            self._client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        return self._client

    def exists(self) -> bool:
        return (self.root / "mlflow.db").exists()

    def _experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(EXPERIMENT)
        if found is not None:
            return str(found.experiment_id)
        self.artifacts.mkdir(parents=True, exist_ok=True)
        return str(
            self.client.create_experiment(EXPERIMENT, artifact_location=self.artifacts.as_uri())
        )

    def register(
        self, model: TrainedModel, name: str, aliases: tuple[str, ...] = ("champion",)
    ) -> RegisteredVersion:
        """Log a training run with the model file and register it under `name`."""
        for alias in aliases:
            if alias not in ALIASES:
                raise WardenError(f"alias must be one of {', '.join(ALIASES)}, got {alias!r}")
        client = self.client
        run = client.create_run(self._experiment_id(), tags={"warden.sha256": model.sha256})
        run_id = run.info.run_id
        for key, value in sorted(model.params.items()):
            client.log_param(run_id, key, value)
        for key, value in sorted(model.metrics.items()):
            client.log_metric(run_id, key, value)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.txt"
            path.write_bytes(model.text)
            client.log_artifact(run_id, str(path), "model")
        client.set_terminated(run_id)
        try:
            client.get_registered_model(name)
        except Exception:
            client.create_registered_model(name)
        version = client.create_model_version(
            name,
            source=f"{run.info.artifact_uri}/model",
            run_id=run_id,
            tags={"sha256": model.sha256, "feature_set": model.feature_set},
        )
        for alias in aliases:
            client.set_registered_model_alias(name, alias, version.version)
        return self.version(name, str(version.version))

    def set_alias(self, name: str, alias: str, version: str) -> None:
        if alias not in ALIASES:
            raise WardenError(f"alias must be one of {', '.join(ALIASES)}, got {alias!r}")
        self.version(name, version)
        self.client.set_registered_model_alias(name, alias, version)

    def version(self, name: str, version: str) -> RegisteredVersion:
        try:
            mv = self.client.get_model_version(name, version)
        except Exception:
            raise NotFoundError(f"model {name} has no version {version}") from None
        return self._describe(mv)

    def resolve(self, ref: ModelRef) -> RegisteredVersion:
        if not self.exists():
            raise NotFoundError(
                f"model {ref}: no model registry in {self.root}; "
                f"train one with `warden model train --data-dir {self.root}`"
            )
        try:
            if ref.alias.isdigit():
                mv = self.client.get_model_version(ref.name, ref.alias)
            else:
                mv = self.client.get_model_version_by_alias(ref.name, ref.alias)
        except Exception:
            raise NotFoundError(
                f"model {ref}: not registered in {self.root} "
                f"(train one with `warden model train --data-dir {self.root}`)"
            ) from None
        return self._describe(mv)

    def _describe(self, mv: Any) -> RegisteredVersion:
        return RegisteredVersion(
            name=mv.name,
            version=str(mv.version),
            sha256=mv.tags.get("sha256", ""),
            feature_set=mv.tags.get("feature_set", ""),
            run_id=mv.run_id,
            aliases=tuple(sorted(getattr(mv, "aliases", []) or [])),
        )

    def versions(self, name: str) -> list[RegisteredVersion]:
        found = self.client.search_model_versions(f"name = '{name}'")
        # search results carry no aliases: the registered model holds alias → version
        try:
            aliases: dict[str, str] = dict(self.client.get_registered_model(name).aliases)
        except Exception:
            raise NotFoundError(f"no registered model named {name!r}") from None
        out = []
        for mv in found:
            described = self._describe(mv)
            held = tuple(sorted(a for a, v in aliases.items() if str(v) == described.version))
            out.append(dataclasses.replace(described, aliases=held))
        return sorted(out, key=lambda v: int(v.version))

    def artifact(self, version: RegisteredVersion) -> bytes:
        """The model file of a version, checked against the SHA-256 it was registered with."""
        with tempfile.TemporaryDirectory() as tmp:
            path = self.client.download_artifacts(version.run_id, "model/model.txt", tmp)
            data = Path(path).read_bytes()
        if content_id(data) != version.sha256:
            raise WardenError(
                f"model {version.name} version {version.version}: artifact hash "
                f"{content_id(data)} does not match the registered {version.sha256}",
                code="model.hash_mismatch",
            )
        return data
