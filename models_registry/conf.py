"""Model lifecycle settings: environment variables, overridable by Django settings.

| variable | default | meaning |
|---|---|---|
| QT_GATE_MIN_SHARPE | 1.5 | out-of-sample Sharpe a model needs to go live |
| QT_GATE_MAX_DRAWDOWN | 0.05 | largest out-of-sample drawdown allowed |
| QT_GATE_MIN_TRADES | 30 | fewest out-of-sample round trips |
| QT_GATE_MAX_DRIFT | 0.5 | drift score (median PSI) at or above which drift is critical |
| QT_DRIFT_WARNING | 0.25 | drift score that is reported as a warning |
| QT_DRIFT_WINDOW | 1000 | latest bars per market compared with the training rows |
| QT_DRIFT_INTERVAL | 3600 | seconds between drift checks |
| QT_DRIFT_FALLBACK | none | on critical drift: none, previous (roll back) or hold |
| QT_RETRAIN_INTERVAL | 86400 | seconds between scheduled retrainings (0: never) |
| QT_RETRAIN_AUTO_PROMOTE | false | promote a retrained model that passed its gates |
| QT_SHADOW_INTERVAL | 60 | seconds between shadow catch-ups |
| QT_TRAIN_LOCK_SECONDS | 7200 | how long a training may hold its family's lock |
"""

from __future__ import annotations

import os

from django.conf import settings

from models_registry.lib.gates import GateConfig

DEFAULTS: dict[str, str] = {
    "QT_GATE_MIN_SHARPE": "1.5",
    "QT_GATE_MAX_DRAWDOWN": "0.05",
    "QT_GATE_MIN_TRADES": "30",
    "QT_GATE_MAX_DRIFT": "0.5",
    "QT_DRIFT_WARNING": "0.25",
    "QT_DRIFT_WINDOW": "1000",
    "QT_DRIFT_INTERVAL": "3600",
    "QT_DRIFT_FALLBACK": "none",
    "QT_RETRAIN_INTERVAL": "86400",
    "QT_RETRAIN_AUTO_PROMOTE": "false",
    "QT_SHADOW_INTERVAL": "60",
    "QT_TRAIN_LOCK_SECONDS": "7200",
}
FALLBACKS = ("none", "previous", "hold")


def setting(name: str) -> str:
    value = getattr(settings, name, None)
    return str(value) if value is not None else os.environ.get(name, DEFAULTS[name])


def setting_float(name: str) -> float:
    return float(setting(name))


def setting_bool(name: str) -> bool:
    return setting(name).strip().lower() in ("1", "true", "yes", "on")


def gate_config() -> GateConfig:
    return GateConfig(
        min_sharpe=setting_float("QT_GATE_MIN_SHARPE"),
        max_drawdown=setting_float("QT_GATE_MAX_DRAWDOWN"),
        min_trades=int(setting_float("QT_GATE_MIN_TRADES")),
        max_psi=setting_float("QT_GATE_MAX_DRIFT"),
    )


def drift_fallback() -> str:
    value = setting("QT_DRIFT_FALLBACK").strip().lower()
    if value not in FALLBACKS:
        raise ValueError(f"QT_DRIFT_FALLBACK must be one of {FALLBACKS}, not {value!r}")
    return value
