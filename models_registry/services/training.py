"""Training the XGBoost signal model: walk-forward evaluation, gates, then registration."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from marketdata.lib.features import FEATURE_SET, FEATURE_SET_HASH, FEATURES
from marketdata.models import Market
from models_registry.conf import gate_config, setting_float
from models_registry.lib.backtest import Costs, backtest
from models_registry.lib.drift import drift_level, drift_score, psi_by_feature, reference_build
from models_registry.lib.gates import GateConfig, gates_evaluate, gates_failed
from models_registry.lib.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_per_class,
    log_loss,
)
from models_registry.models import ModelVersion
from models_registry.selectors import market_group_for
from models_registry.services.datasets import (
    LABELS,
    Dataset,
    dataset_build,
    purged_train_valid,
    walk_forward,
)
from risk.services.audit import audit_record

logger = logging.getLogger(__name__)

CLASSES = ("SELL", "HOLD", "BUY")  # label 0, 1, 2
SEED = 42
Progress = Callable[[int, str], None]


@dataclass(frozen=True)
class TrainingConfig:
    """How a model is labelled, trained and evaluated; stored as the model's params_json."""

    label: str = "forward"  # or "triple_barrier"
    horizon: int = 4
    threshold: float = 0.006  # forward: |return| beyond it; triple barrier: take profit
    stop_loss: float | None = None  # triple barrier only; defaults to `threshold`
    folds: int = 3
    test_fraction: float = 0.3  # the evaluation window: the last 30 % of the bars ...
    test_start: str = ""  # ... or from this ISO time
    test_end: str = ""
    embargo: int = 12  # bars between a training label's end and the test window
    valid_fraction: float = 0.15
    refit: bool = True  # register a model refitted on all the data (else the last fold's)
    n_estimators: int = 300
    max_depth: int = 4
    learning_rate: float = 0.05
    early_stopping_rounds: int = 30

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"unknown label method {self.label!r}; choose one of {LABELS}")
        if self.folds < 1 or self.horizon < 1:
            raise ValueError("folds and horizon must be at least 1")

    def params(self) -> dict[str, Any]:
        return asdict(self) | {"seed": SEED, "classes": list(CLASSES), "features": FEATURES}


def model_train(
    *,
    markets: list[Market],
    timeframe: str,
    config: TrainingConfig | None = None,
    tag: str = "",
    activate: bool = True,
    gates: GateConfig | None = None,
    progress: Progress | None = None,
    actor: str = "system:training",
) -> ModelVersion:
    """Train on stored candles and news, evaluate walk-forward, gate, register (and activate).

    With `activate`, a model that passed its gates becomes the active model of its group; a
    model that failed them is activated for paper observation (ungated) only when the group
    has no active model for the current feature set — a new platform must be able to paper
    trade from its first start, and testnet/live still refuse an ungated model.
    """
    config = config or TrainingConfig()
    gates = gates or gate_config()
    say = progress or (lambda pct, message: None)
    say(2, "building features and labels")
    data = dataset_build(
        markets=markets,
        timeframe=timeframe,
        label=config.label,
        horizon=config.horizon,
        threshold=config.threshold,
        stop_loss=config.stop_loss,
    )
    folds = walk_forward(
        data,
        folds=config.folds,
        test_fraction=config.test_fraction,
        test_start=config.test_start,
        test_end=config.test_end,
        embargo=config.embargo,
        valid_fraction=config.valid_fraction,
    )
    proba = np.full((len(data), 3), np.nan)
    fold_metrics = []
    booster = None
    for k, fold in enumerate(folds, start=1):
        say(5 + 70 * (k - 1) // (len(folds) + int(config.refit)), f"fold {k}/{len(folds)}")
        booster = _fit(data, fold.fit, fold.valid, config)
        proba[fold.test] = booster.predict(xgb.DMatrix(data.x[fold.test]))
        fold_metrics.append(_fold_summary(data, fold, proba, booster))
    assert booster is not None
    fit_rows = folds[-1].fit
    if config.refit:
        say(5 + 70 * len(folds) // (len(folds) + 1), "refitting on all the data")
        fit_rows, valid_rows = purged_train_valid(
            data, before=None, gap=timedelta(0), valid_fraction=config.valid_fraction
        )
        booster = _fit(data, fit_rows, valid_rows, config)

    say(80, "evaluating out of sample")
    tested = np.zeros(len(data), dtype=bool)
    for fold in folds:
        tested |= fold.test
    metrics = _evaluate(data, proba, tested, booster, timeframe)
    metrics["folds"] = fold_metrics
    metrics["train_rows"] = int(fit_rows.sum())
    reference = reference_build(data.x[fit_rows], FEATURES)
    metrics["drift"] = _recent_drift(data, reference)
    gate_results = gates_evaluate(
        backtest=metrics["backtest"], drift=metrics["drift"]["score"], config=gates
    )
    say(90, "registering")
    mv = _register(
        booster=booster,
        markets=markets,
        timeframe=timeframe,
        config=config,
        metrics=metrics,
        gates=gate_results,
        gate_config=gates,
        reference=reference,
        data=data,
        tag=tag,
        actor=actor,
    )
    if activate:
        from models_registry.services.registry import model_version_activate_trained

        model_version_activate_trained(model_version=mv, actor=actor)
        mv.refresh_from_db()
    say(100, f"registered v{mv.version} ({mv.status})")
    return mv


def _fit(data: Dataset, fit: np.ndarray, valid: np.ndarray, config: TrainingConfig) -> xgb.Booster:
    """XGBoost with class weights, early stopping on the validation rows and a fixed seed."""
    y_fit = data.y[fit].astype(int)
    counts = np.bincount(y_fit, minlength=3).astype(float)
    weights = (counts.sum() / (3 * np.maximum(counts, 1)))[y_fit]
    params = {
        "objective": "multi:softprob",
        "num_class": 3,
        "max_depth": config.max_depth,
        "eta": config.learning_rate,
        "seed": SEED,
        # A fixed thread count: the same data and seed then give the same trees, byte for byte.
        "nthread": 2,
        "tree_method": "hist",
        "eval_metric": "mlogloss",
    }
    dtrain = xgb.DMatrix(data.x[fit], label=y_fit, weight=weights)
    dvalid = xgb.DMatrix(data.x[valid], label=data.y[valid].astype(int))
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=config.n_estimators,
        evals=[(dvalid, "valid")],
        early_stopping_rounds=config.early_stopping_rounds,
        verbose_eval=False,
    )
    return booster[: booster.best_iteration + 1]  # only the trees early stopping chose


def _fold_summary(
    data: Dataset, fold: Any, proba: np.ndarray, booster: xgb.Booster
) -> dict[str, Any]:
    rows = fold.test & data.labelled
    y = data.y[rows].astype(int)
    p = proba[rows]
    return {
        "test_start": fold.test_start.isoformat(),
        "test_end": fold.test_end.isoformat(),
        "fit_rows": int(fold.fit.sum()),
        "valid_rows": int(fold.valid.sum()),
        "test_rows": int(fold.test.sum()),
        "trees": int(booster.num_boosted_rounds()),
        "accuracy": accuracy_score(y, p.argmax(axis=1)) if len(y) else None,
        "log_loss": log_loss(y, p) if len(y) else None,
    }


def _evaluate(
    data: Dataset, proba: np.ndarray, tested: np.ndarray, booster: xgb.Booster, timeframe: str
) -> dict[str, Any]:
    """Classification metrics on labelled out-of-sample rows; the backtest on all of them."""
    rows = tested & data.labelled
    y = data.y[rows].astype(int)
    predicted = proba[rows].argmax(axis=1)
    importance = booster.get_score(importance_type="gain")
    actions = proba[tested].argmax(axis=1)
    frames = {
        symbol: pd.DataFrame(
            {
                "close": data.close[tested][data.market[tested] == symbol],
                "action": actions[data.market[tested] == symbol],
            },
            index=data.times[tested][data.market[tested] == symbol],
        )
        for symbol in np.unique(data.market[tested])
    }
    costs = Costs(fee_bps=float(settings.QT_FEE_BPS), slippage_bps=float(settings.QT_SLIPPAGE_BPS))
    per_year = 365.25 * 86400 / data.step.total_seconds()
    return {
        "accuracy": accuracy_score(y, predicted),
        "f1": dict(zip(CLASSES, f1_per_class(y, predicted, 3), strict=True)),
        "log_loss": log_loss(y, proba[rows]),
        "baseline_accuracy": float(np.bincount(y, minlength=3).max() / max(len(y), 1)),
        "confusion_matrix": confusion_matrix(y, predicted, 3),
        "class_balance": np.bincount(y, minlength=3).tolist(),
        "test_rows": int(rows.sum()),
        "test_start": data.times[tested][0].isoformat(),
        "test_end": data.times[tested][-1].isoformat(),
        "trees": int(booster.num_boosted_rounds()),
        "feature_importance": {
            name: float(importance.get(f"f{i}", 0.0))  # type: ignore[arg-type]
            for i, name in enumerate(FEATURES)
        },
        # Two trainings on the same data with the same seed must agree on every byte.
        "oos_predictions_sha256": hashlib.sha256(
            np.ascontiguousarray(proba[tested], dtype="float32").tobytes()
        ).hexdigest(),
        "backtest": backtest(frames, costs, per_year),
        "lineage": data.lineage,
        "data_window": {"start": data.times[0].isoformat(), "end": data.times[-1].isoformat()},
    }


def _recent_drift(data: Dataset, reference: dict[str, dict]) -> dict[str, Any]:
    """The newest bars per market against the training rows (the 'no critical drift' gate)."""
    window = int(setting_float("QT_DRIFT_WINDOW"))
    recent = np.zeros(len(data), dtype=bool)
    for symbol in np.unique(data.market):
        rows = np.flatnonzero(data.market == symbol)
        recent[rows[-window:]] = True
    scores = psi_by_feature(reference, data.x[recent], FEATURES)
    return {"score": drift_score(scores), "psi": scores, "window": window}


@transaction.atomic
def _register(
    *,
    booster: xgb.Booster,
    markets: list[Market],
    timeframe: str,
    config: TrainingConfig,
    metrics: dict[str, Any],
    gates: dict[str, dict[str, Any]],
    gate_config: GateConfig,
    reference: dict[str, dict],
    data: Dataset,
    tag: str,
    actor: str,
) -> ModelVersion:
    group = market_group_for(markets)
    version = (
        ModelVersion.objects.filter(market_group=group, timeframe=timeframe).aggregate(
            v=Max("version")
        )["v"]
        or 0
    ) + 1
    directory = Path(settings.QT_ARTIFACT_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    safe = group.replace(":", "_").replace("/", "").replace(",", "-")
    path = directory / f"{safe}_{timeframe}_v{version}.json"
    booster.save_model(str(path))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    failed = gates_failed(gates)
    metrics["gate_config"] = gate_config.as_dict()
    mv = ModelVersion.objects.create(
        version=version,
        tag=tag,
        market_group=group,
        timeframe=timeframe,
        path=str(path),
        sha256=sha,
        params_json=config.params(),
        metrics_json=json.loads(json.dumps(metrics, allow_nan=True, default=float)),
        gates_json=gates,
        feature_set=FEATURE_SET,
        feature_set_hash=FEATURE_SET_HASH,
        data_start=data.times[0].to_pydatetime(),
        data_end=data.times[-1].to_pydatetime(),
        trained_at=timezone.now(),
        status=ModelVersion.Status.REJECTED if failed else ModelVersion.Status.APPROVED,
        drift_reference=reference,
        drift_json=metrics["drift"]["psi"],
        drift_status=drift_level(
            metrics["drift"]["score"],
            warning=setting_float("QT_DRIFT_WARNING"),
            critical=gate_config.max_psi,
        ),
        drift_checked_at=timezone.now(),
    )
    audit_record(
        actor=actor,
        action="model.trained",
        obj=mv,
        payload={
            "version": version,
            "sha256": sha,
            "accuracy": metrics["accuracy"],
            "gates_failed": failed,
        },
    )
    bt = metrics["backtest"]
    logger.info(
        "trained model v%s for %s: accuracy %.3f (baseline %.3f), OOS Sharpe %.2f, "
        "max drawdown %.1f%%, %s trades; gates %s",
        version,
        group,
        metrics["accuracy"],
        metrics["baseline_accuracy"],
        bt["sharpe"],
        100 * bt["max_drawdown"],
        bt["trades"],
        "passed" if not failed else "failed: " + ", ".join(failed),
    )
    return mv
