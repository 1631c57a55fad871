"""Performance metrics on a daily mark-to-market equity curve (not only closed trades).

Conventions (crypto trades every day): 365 periods a year for Sharpe and Sortino, a risk-free
rate of zero, sample standard deviation (ddof=1); Sortino's downside deviation is the root
mean square of the negative daily returns over all days; CAGR over calendar time
(365.25-day years); drawdown duration is the longest stretch, in days, from a peak until
equity is back at it (or the end of the run).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal

import numpy as np

DAY = 86400
YEAR_DAYS = 365


def daily_equity(
    times: np.ndarray, equity: np.ndarray, start_cash: float
) -> tuple[np.ndarray, np.ndarray]:
    """Equity at the last bar close of each UTC day, after a first point: the starting cash
    at the first bar's day start."""
    days = times // DAY
    last = np.r_[days[1:] != days[:-1], True]
    day_times = np.r_[days[0] * DAY, (days[last] + 1) * DAY]
    return day_times, np.r_[start_cash, equity[last]]


def _returns(values: np.ndarray) -> np.ndarray:
    return values[1:] / values[:-1] - 1


def sharpe(values: np.ndarray) -> float:
    r = _returns(values)
    if len(r) < 2 or r.std(ddof=1) == 0:
        return 0.0
    return float(r.mean() / r.std(ddof=1) * math.sqrt(YEAR_DAYS))


def sortino(values: np.ndarray) -> float:
    r = _returns(values)
    downside = math.sqrt(float(np.mean(np.minimum(r, 0) ** 2))) if len(r) else 0.0
    if downside == 0:
        return 0.0
    return float(r.mean() / downside * math.sqrt(YEAR_DAYS))


def max_drawdown(values: np.ndarray) -> tuple[float, int]:
    """(deepest fall from a running peak as a negative fraction, longest underwater days)."""
    peak = np.maximum.accumulate(values)
    depth = float((values / peak - 1).min())
    longest = run = 0
    for v, p in zip(values.tolist(), peak.tolist(), strict=True):
        run = run + 1 if v < p else 0
        longest = max(longest, run)
    return depth, longest


def cagr(start: float, end: float, seconds: float) -> float:
    years = seconds / (365.25 * DAY)
    if years <= 0 or start <= 0 or end <= 0:
        return 0.0
    return (end / start) ** (1 / years) - 1


def compute(
    *,
    day_times: np.ndarray,
    day_values: np.ndarray,
    trade_pnls: Sequence[Decimal],
    fees: Decimal,
    traded_notional: Decimal,
    position: np.ndarray,
    first_close: float,
    last_close: float,
) -> dict[str, float | int | str]:
    """Every metric of a run; money totals as strings (Decimal), ratios as floats."""
    start, end = float(day_values[0]), float(day_values[-1])
    total = end / start - 1
    seconds = float(day_times[-1] - day_times[0])
    growth = cagr(start, end, seconds)
    depth, duration = max_drawdown(day_values)
    wins = [p for p in trade_pnls if p > 0]
    losses = [p for p in trade_pnls if p < 0]
    gross_loss = -sum(losses, Decimal(0))
    count = len(trade_pnls)
    mean_equity = float(np.mean(day_values))
    return {
        "total_return": total,
        "cagr": growth,
        "sharpe": sharpe(day_values),
        "sortino": sortino(day_values),
        "calmar": growth / abs(depth) if depth < 0 else 0.0,
        "max_drawdown": depth,
        "max_drawdown_days": duration,
        "win_rate": len(wins) / count if count else 0.0,
        "profit_factor": float(sum(wins, Decimal(0)) / gross_loss) if gross_loss else 0.0,
        "expectancy": str((sum(trade_pnls, Decimal(0)) / count).quantize(Decimal("0.01")))
        if count
        else "0",
        "exposure": float(np.count_nonzero(position) / len(position)) if len(position) else 0.0,
        "turnover": float(traded_notional) / mean_equity if mean_equity else 0.0,
        "fees_paid": str(fees),
        "trade_count": count,
        "buy_and_hold_return": last_close / first_close - 1,
        "final_equity": f"{end:.2f}",
    }
