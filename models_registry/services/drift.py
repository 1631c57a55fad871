"""Drift monitoring: live feature distributions against each model's training rows."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from django.utils import timezone

from marketdata.lib.features import FEATURE_SET_HASH, FEATURES, LOOKBACK, compute_features
from marketdata.models import TIMEFRAMES
from marketdata.news import news_frame_for_bars
from marketdata.selectors import candles_frame
from models_registry.conf import drift_fallback, gate_config, setting_float
from models_registry.lib.drift import drift_level, drift_score, psi_by_feature
from models_registry.models import ModelVersion
from models_registry.selectors import markets_of_group
from models_registry.services.registry import (
    RollbackError,
    model_version_hold,
    model_version_rollback,
)
from risk.models import Incident
from risk.services.audit import audit_record
from risk.services.incidents import incident_open

logger = logging.getLogger(__name__)

MIN_ROWS = 50


def live_feature_rows(*, model_version: ModelVersion, window: int) -> np.ndarray:
    """Feature rows of the newest `window` bars of each market the model serves."""
    step = TIMEFRAMES[model_version.timeframe]
    parts = []
    for market in markets_of_group(model_version.market_group):
        bars = candles_frame(
            market=market, timeframe=model_version.timeframe, last=window + LOOKBACK
        )
        if bars.empty:
            continue
        news = news_frame_for_bars(asset=market.base, bars=bars, bar_duration=step)
        feats = compute_features(bars, news, bar_duration=step).iloc[-window:].to_numpy()
        parts.append(feats[np.isfinite(feats).all(axis=1)])
    return np.concatenate(parts) if parts else np.empty((0, len(FEATURES)))


def model_drift_check(*, model_version: ModelVersion) -> dict[str, Any]:
    """PSI per feature (live vs training), the drift score and level, stored on the model.

    Critical drift on the active model opens an incident and applies the configured
    fallback (QT_DRIFT_FALLBACK): roll back to the previous model, or force HOLD.
    """
    if model_version.feature_set_hash != FEATURE_SET_HASH or not model_version.drift_reference:
        return {"status": "unknown", "detail": "no training reference for the current features"}
    window = int(setting_float("QT_DRIFT_WINDOW"))
    rows = live_feature_rows(model_version=model_version, window=window)
    if len(rows) < MIN_ROWS:
        return {"status": "unknown", "detail": f"only {len(rows)} live rows"}
    scores = psi_by_feature(model_version.drift_reference, rows, FEATURES)
    score = drift_score(scores)
    critical = gate_config().max_psi
    level = drift_level(score, warning=setting_float("QT_DRIFT_WARNING"), critical=critical)
    before = model_version.drift_status
    model_version.drift_json = scores
    model_version.drift_status = level
    model_version.drift_checked_at = timezone.now()
    model_version.save(update_fields=["drift_json", "drift_status", "drift_checked_at"])
    if level != before:
        audit_record(
            actor="system:drift",
            action="model.drift_changed",
            obj=model_version,
            payload={"from": before, "to": level, "score": round(score, 4)},
        )
    result: dict[str, Any] = {"status": level, "score": score, "psi": scores, "rows": len(rows)}
    if level == ModelVersion.Drift.CRITICAL and model_version.is_active:
        result["fallback"] = _on_critical(model_version, score, scores, critical)
    return result


def _on_critical(
    model_version: ModelVersion, score: float, scores: dict[str, float], critical: float
) -> str:
    worst = sorted(scores.items(), key=lambda item: -item[1])[:5]
    incident_open(
        severity=Incident.Severity.CRITICAL,
        code="MODEL_DRIFT",
        title=f"Critical feature drift: model v{model_version.version} "
        f"{model_version.market_group} {model_version.timeframe}",
        detail=f"drift score (median PSI) {score:.2f} >= {critical:.2f}; worst features: "
        + ", ".join(f"{name} {value:.2f}" for name, value in worst),
    )
    fallback = drift_fallback()
    if fallback == "previous":
        try:
            target = model_version_rollback(
                market_group=model_version.market_group,
                timeframe=model_version.timeframe,
                actor="system:drift",
            )
            return f"rolled back to v{target.version}"
        except RollbackError as exc:
            logger.warning("drift fallback: %s; holding instead", exc)
            fallback = "hold"
    if fallback == "hold" and not model_version.forced_hold:
        model_version_hold(
            model_version=model_version, hold=True, actor="system:drift", reason="critical drift"
        )
        return "hold"
    return fallback


def drift_check_all() -> dict[str, dict[str, Any]]:
    """The beat job: every active and shadow model."""
    results = {}
    for mv in ModelVersion.objects.filter(is_active=True) | ModelVersion.objects.filter(
        shadow=True
    ):
        try:
            results[str(mv)] = model_drift_check(model_version=mv)
        except Exception:
            logger.exception("drift check of %s failed", mv)
    return results
