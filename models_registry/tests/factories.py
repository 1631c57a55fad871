from __future__ import annotations

import hashlib
from typing import Any

from django.utils import timezone

from marketdata.lib.features import FEATURE_SET, FEATURE_SET_HASH
from models_registry.lib.gates import GateConfig
from models_registry.models import ModelVersion
from models_registry.services.training import TrainingConfig

FAST = TrainingConfig(n_estimators=15, folds=2, early_stopping_rounds=5)
# Gates any trained model clears, for tests about what happens after approval.
LENIENT = GateConfig(min_sharpe=-1e9, max_drawdown=1.0, min_trades=0, max_psi=1e9)

PASSED = {
    "sharpe": {"value": 2.1, "threshold": 1.5, "passed": True},
    "max_drawdown": {"value": 0.03, "threshold": 0.05, "passed": True},
    "min_trades": {"value": 40, "threshold": 30, "passed": True},
    "drift": {"value": 0.1, "threshold": 0.5, "passed": True},
}
FAILED = PASSED | {"sharpe": {"value": 0.4, "threshold": 1.5, "passed": False}}


def model_row(version: int, *, gates: dict[str, Any] | None = None, **fields: Any) -> ModelVersion:
    """A registry row without an artifact (for registry rules that never load one)."""
    gates = PASSED if gates is None else gates
    passed = all(g["passed"] for g in gates.values())
    defaults: dict[str, Any] = {
        "market_group": "binance:BTC/USDT",
        "timeframe": "1h",
        "path": f"var/artifacts/test-v{version}.json",
        "sha256": hashlib.sha256(str(version).encode()).hexdigest(),
        "feature_set": FEATURE_SET,
        "feature_set_hash": FEATURE_SET_HASH,
        "trained_at": timezone.now(),
        "gates_json": gates,
        "status": ModelVersion.Status.APPROVED if passed else ModelVersion.Status.REJECTED,
        "metrics_json": {"backtest": {"sharpe": gates["sharpe"]["value"], "trades": 40}},
    }
    return ModelVersion.objects.create(version=version, **(defaults | fields))
