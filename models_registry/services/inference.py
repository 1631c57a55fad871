"""Loading a registered model (checked against its sha256) and predicting with it."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
import xgboost as xgb

from models_registry.models import ModelVersion

HOLD = np.array([0.0, 1.0, 0.0], dtype=np.float32)  # SELL, HOLD, BUY


class ArtifactError(Exception):
    pass


@functools.lru_cache(maxsize=8)
def _load(path: str, sha256: str) -> xgb.Booster:
    data = Path(path).read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ArtifactError(f"artifact {path} does not match its recorded sha256")
    booster = xgb.Booster()
    booster.load_model(bytearray(data))
    booster.set_param({"nthread": 1})
    return booster


def model_predict(*, model_version: ModelVersion, features: np.ndarray) -> np.ndarray:
    """Class probabilities (SELL, HOLD, BUY) for each feature row.

    A model under a forced HOLD (the drift fallback) answers HOLD with certainty. The cache
    is keyed by path and digest, so a newly promoted model is picked up on the next call.
    """
    rows = np.atleast_2d(np.asarray(features, dtype=np.float32))
    if model_version.forced_hold:
        return np.tile(HOLD, (len(rows), 1))
    booster = _load(model_version.path, model_version.sha256)
    if booster.num_features() != rows.shape[1]:
        raise ArtifactError(
            f"model v{model_version.version} takes {booster.num_features()} features, "
            f"got {rows.shape[1]} (trained on another feature set)"
        )
    return booster.inplace_predict(rows)
