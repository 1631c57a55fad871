"""Promotion gates: the bar a model must clear before it may drive testnet or live accounts."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class GateConfig:
    """Defaults are the approval bar of the business plan."""

    min_sharpe: float = 1.5
    max_drawdown: float = 0.05
    min_trades: int = 30
    # "No critical drift": the drift score (median PSI over the features, lib/drift.py)
    # must stay under the critical level.
    max_psi: float = 0.5

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def gates_evaluate(
    *, backtest: dict[str, Any], drift: float | None, config: GateConfig
) -> dict[str, dict[str, Any]]:
    """Each gate's value, threshold and outcome (a missing value fails its gate)."""

    def gate(value: float | None, threshold: float, ok: bool) -> dict[str, Any]:
        return {"value": value, "threshold": threshold, "passed": bool(value is not None and ok)}

    sharpe = backtest.get("sharpe")
    drawdown = backtest.get("max_drawdown")
    trades = backtest.get("trades")
    return {
        "sharpe": gate(
            sharpe, config.min_sharpe, sharpe is not None and sharpe >= config.min_sharpe
        ),
        "max_drawdown": gate(
            drawdown, config.max_drawdown, drawdown is not None and drawdown <= config.max_drawdown
        ),
        "min_trades": gate(
            trades, config.min_trades, trades is not None and trades >= config.min_trades
        ),
        "drift": gate(drift, config.max_psi, drift is not None and drift < config.max_psi),
    }


def gates_failed(gates: dict[str, dict[str, Any]]) -> list[str]:
    return [name for name, gate in gates.items() if not gate.get("passed")]
