"""A run's result as the JSON the CLI writes and a BacktestRun stores."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from trading.lib.backtest import metrics
from trading.lib.backtest.engine import Result

SCHEMA_VERSION = 1


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def build(result: Result) -> dict[str, Any]:
    """{"metrics": {...}, "trades": [...], "equity": [[time, value], ...]} (daily marks)."""
    bars = result.bars
    day_times, day_values = metrics.daily_equity(
        bars.times, result.equity, float(result.config.cash)
    )
    fees = sum((f.fee for f in result.fills), Decimal(0))
    notional = sum((f.price * f.quantity for f in result.fills), Decimal(0))
    figures = metrics.compute(
        day_times=day_times,
        day_values=day_values,
        trade_pnls=[t.pnl for t in result.trades],
        fees=fees,
        traded_notional=notional,
        position=result.position,
        first_close=float(bars.close[0]),
        last_close=float(bars.close[-1]),
    )
    figures["bars"] = len(bars)
    figures["orders"] = len(result.orders)
    figures["orders_denied"] = sum(1 for o in result.orders if o.status == "denied")
    return {
        "metrics": figures,
        "trades": [t.as_json() for t in result.trades],
        "equity": [
            [_iso(int(t)), round(float(v), 2)]
            for t, v in zip(day_times.tolist(), day_values.tolist(), strict=True)
        ],
    }
