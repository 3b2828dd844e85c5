"""A model ready to score on the request path: the LightGBM booster built from the text
model file, its identity (name, version, SHA-256 of the file) and its feature set.

Built once at start-up (from the registry by alias, or from the audit store's blob by hash
when a decision is reproduced). One row is scored through LightGBM's single-row fast C API
(`LGBM_BoosterPredictForMatSingleRowFast`, one thread, configured once): ≈ 19 µs of CPU
against ≈ 90 µs for `Booster.predict`, whose Python wrapper rebuilds a predictor per call.
The fast path is checked against `Booster.predict` when the model is loaded (bit-identical
or the model does not load)."""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from warden.canonical import content_id
from warden.errors import WardenError
from warden.models.features import FeatureSet, feature_set


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    sha256: str
    features: FeatureSet
    booster: Any  # lightgbm.Booster
    fast: _FastRow | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_bytes(
        cls, name: str, version: str, data: bytes, feature_set_id: str, *, sha256: str
    ) -> LoadedModel:
        if content_id(data) != sha256:
            raise WardenError(
                f"model {name} version {version}: artifact hash {content_id(data)} "
                f"does not match the expected {sha256}",
                code="model.hash_mismatch",
            )
        import lightgbm as lgb

        booster = lgb.Booster(model_str=data.decode())
        features = feature_set(feature_set_id)
        if list(booster.feature_name()) != list(features.names):
            raise WardenError(
                f"model {name} version {version} was trained on features "
                f"{booster.feature_name()}, not feature set {feature_set_id}"
            )
        fast = _FastRow(booster, len(features.names))
        fast.check()
        return cls(name, version, sha256, features, booster, fast)

    def score_values(self, values: list[float]) -> float:
        if self.fast is not None:
            return self.fast.predict(values)
        row = np.array([values], dtype=np.float64)
        return float(self.booster.predict(row, num_threads=1, validate_features=False)[0])

    def score(self, inputs: Mapping[str, Any]) -> tuple[float, list[float]]:
        values = self.features.values(inputs)
        return self.score_values(values), values

    def as_record(self) -> dict[str, str]:
        return {
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "feature_set": self.features.id,
        }


class _FastRow:
    """LightGBM's single-row prediction with a prepared configuration (C API). Not
    re-entrant inside LightGBM, hence the lock (uncontended on the request loop)."""

    def __init__(self, booster: Any, ncol: int) -> None:
        from lightgbm import basic

        self._lib = basic._LIB  # type: ignore[attr-defined]
        self._safe_call = basic._safe_call
        self._booster = booster  # keeps the handle alive
        self.ncol = ncol
        self._config = ctypes.c_void_p()
        self._safe_call(
            self._lib.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(basic._C_API_PREDICT_NORMAL),
                ctypes.c_int(0),  # start iteration
                ctypes.c_int(-1),  # all iterations
                ctypes.c_int(basic._C_API_DTYPE_FLOAT64),
                ctypes.c_int32(ncol),
                basic._c_str("num_threads=1"),
                ctypes.byref(self._config),
            )
        )
        self._out = np.zeros(1, dtype=np.float64)
        self._out_ptr = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self._out_len = ctypes.c_int64(0)
        self._lock = threading.Lock()

    def predict(self, values: list[float]) -> float:
        row = np.array(values, dtype=np.float64)
        if row.shape != (self.ncol,):
            raise ValueError(f"expected {self.ncol} feature values, got {row.shape}")
        with self._lock:
            self._safe_call(
                self._lib.LGBM_BoosterPredictForMatSingleRowFast(
                    self._config,
                    row.ctypes.data_as(ctypes.c_void_p),
                    ctypes.byref(self._out_len),
                    self._out_ptr,
                )
            )
            return float(self._out[0])

    def check(self, rows: int = 256) -> None:
        """Bit-identical to `Booster.predict` on random rows (categorical-looking integer
        columns included), or the model does not load."""
        rng = np.random.default_rng(0)
        sample = rng.uniform(-1.0, 2000.0, size=(rows, self.ncol))
        sample[: rows // 2] = np.floor(rng.uniform(-1.0, 25.0, size=(rows // 2, self.ncol)))
        expected = self._booster.predict(sample, num_threads=1)
        got = np.array([self.predict(list(r)) for r in sample])
        if not np.array_equal(expected, got):
            worst = float(np.max(np.abs(expected - got)))
            raise WardenError(f"LightGBM's single-row fast path differs from predict by {worst}")

    def __del__(self) -> None:
        if getattr(self, "_config", None) is not None and self._config.value:
            self._lib.LGBM_FastConfigFree(self._config)
