"""Load the models a policy names, once, at start-up.

For every decision type with `model: name@alias` the registry resolves the alias to a
version, the artifact is downloaded and checked against the SHA-256 the version was
registered with, the booster is built, and the artifact is stored content-addressed in the
audit store (`put_blob("model", …)`), so `warden audit reproduce` can fetch the exact file
a decision used by its hash, whatever the aliases point at later."""

from __future__ import annotations

import logging

from warden.audit.store import AuditStore
from warden.errors import NotFoundError
from warden.models.loaded import LoadedModel
from warden.models.registry import ModelRef, ModelRegistry, RegisteredVersion
from warden.models.train import TrainConfig, TrainedModel, train
from warden.policy.loader import LoadedPolicy

log = logging.getLogger("warden.models")
MODEL_BLOB = "model"


def referenced_models(policy: LoadedPolicy) -> list[str]:
    refs = {dt.spec.model for dt in policy.decision_types.values() if dt.spec.model}
    return sorted(r for r in refs if r is not None)


def load_policy_models(
    policy: LoadedPolicy, registry: ModelRegistry, store: AuditStore
) -> dict[str, LoadedModel]:
    loaded: dict[str, LoadedModel] = {}
    for text in referenced_models(policy):
        ref = ModelRef.parse(text)
        version = registry.resolve(ref)
        data = registry.artifact(version)
        model = LoadedModel.from_bytes(
            version.name, version.version, data, version.feature_set, sha256=version.sha256
        )
        store.put_blob(MODEL_BLOB, data)
        log.info("model %s → version %s (%s)", ref, version.version, version.sha256)
        loaded[text] = model
    return loaded


def model_from_store(store: AuditStore, record: dict[str, str]) -> LoadedModel:
    """The model a decision record names, rebuilt from the artifact stored under its hash."""
    found = store.get_blob(record["sha256"])
    if found is None or found[0] != MODEL_BLOB:
        raise NotFoundError(f"model artifact {record['sha256']} is not in the audit store")
    return LoadedModel.from_bytes(
        record["name"], record["version"], found[1], record["feature_set"], sha256=record["sha256"]
    )


def train_and_register(
    registry: ModelRegistry,
    name: str = "fraud-lgbm",
    aliases: tuple[str, ...] = ("champion",),
    config: TrainConfig | None = None,
) -> tuple[RegisteredVersion, TrainedModel]:
    model, _ = train(config or TrainConfig())
    return registry.register(model, name, aliases), model


def ensure_model(
    registry: ModelRegistry, ref: str = "fraud-lgbm@champion", config: TrainConfig | None = None
) -> tuple[RegisteredVersion, bool]:
    """The version `ref` names; trains and registers one first if there is none.
    Returns (version, trained_now)."""
    parsed = ModelRef.parse(ref)
    if registry.exists():
        try:
            return registry.resolve(parsed), False
        except NotFoundError:
            pass
    version, _ = train_and_register(registry, parsed.name, (parsed.alias,), config)
    return version, True
