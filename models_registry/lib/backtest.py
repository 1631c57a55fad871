"""The out-of-sample evaluation backtest: long/flat on the model's calls, with costs.

The rules are the paper strategy's (`trading/services/execution.py`): BUY opens a long
position when flat, SELL closes it, HOLD does nothing; orders fill at the bar's close moved
against the taker by the slippage, and pay the taker fee on the notional — the parameters
of the paper fill model (`QT_FEE_BPS`, `QT_SLIPPAGE_BPS`). Each market of a group gets an
equal share of the capital and is fully invested when long, which is the conservative
reading for drawdown (the live sizing commits only a fraction). Vectorised: numpy in, plain
numbers out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

SELL, HOLD, BUY = 0, 1, 2


@dataclass(frozen=True)
class Costs:
    fee_bps: float = 10.0
    slippage_bps: float = 5.0

    @property
    def entry(self) -> float:
        """Equity multiplier of a buy: the price is worse by the slippage, plus the fee."""
        return 1.0 / ((1 + self.slippage_bps / 1e4) * (1 + self.fee_bps / 1e4))

    @property
    def exit(self) -> float:
        return (1 - self.slippage_bps / 1e4) * (1 - self.fee_bps / 1e4)


def positions_from_actions(actions: np.ndarray) -> np.ndarray:
    """1 while long, 0 while flat, after acting on each bar's call (long/flat rules)."""
    last = np.where(actions == HOLD, -1, actions).astype(np.int64)
    # Forward-fill the last non-HOLD call: long iff it was BUY.
    index = np.where(last >= 0, np.arange(len(last)), -1)
    np.maximum.accumulate(index, out=index)
    filled = np.where(index >= 0, last[np.maximum(index, 0)], SELL)
    return (filled == BUY).astype(np.float64)


def equity_curve(
    close: np.ndarray, actions: np.ndarray, costs: Costs
) -> tuple[np.ndarray, list[float]]:
    """Equity (starting at 1) after each bar, and each round trip's net return.

    A position still open after the last bar is closed at that bar's close, with costs.
    """
    close = np.asarray(close, dtype="float64")
    position = positions_from_actions(np.asarray(actions))
    held = np.r_[0.0, position[:-1]]  # the position carried into each bar
    growth = np.ones(len(close))
    growth[1:] += held[1:] * (close[1:] / close[:-1] - 1)
    change = np.diff(np.r_[0.0, position])
    growth[change > 0] *= costs.entry
    growth[change < 0] *= costs.exit
    if len(position) and position[-1] > 0:
        growth[-1] *= costs.exit
    equity = np.cumprod(growth)

    entries = np.flatnonzero(change > 0)
    exits = np.flatnonzero(change < 0)
    if len(entries) > len(exits):
        exits = np.r_[exits, len(close) - 1]
    trades = []
    for start, end in zip(entries, exits, strict=True):
        before = equity[start - 1] if start > 0 else 1.0
        trades.append(float(equity[end] / before - 1))
    return equity, trades


def performance(
    returns: np.ndarray, equity: np.ndarray, periods_per_year: float
) -> dict[str, float]:
    """Sharpe, Sortino (annualised, risk-free 0), max drawdown, total return of a curve."""
    returns = np.asarray(returns, dtype="float64")
    std = float(returns.std(ddof=1)) if len(returns) > 1 else 0.0
    downside = float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2))) if len(returns) else 0.0
    mean = float(returns.mean()) if len(returns) else 0.0
    scale = float(np.sqrt(periods_per_year))
    peak = np.maximum.accumulate(np.r_[1.0, equity])
    drawdown = 1 - np.r_[1.0, equity] / peak
    return {
        "sharpe": mean / std * scale if std > 0 else 0.0,
        "sortino": mean / downside * scale if downside > 0 else 0.0,
        "max_drawdown": float(drawdown.max()),
        "total_return": float(equity[-1] - 1) if len(equity) else 0.0,
    }


def backtest(
    frames: dict[str, pd.DataFrame], costs: Costs, periods_per_year: float
) -> dict[str, Any]:
    """Evaluate calls on several markets; `frames[symbol]` has `close` and `action` columns.

    Returns the strategy's and buy-and-hold's figures over the same bars, and a sampled
    equity curve of both for plotting.
    """
    curves, holds, trades = {}, {}, []
    for symbol, frame in frames.items():
        if frame.empty:
            continue
        close = frame["close"].to_numpy(dtype="float64")
        equity, market_trades = equity_curve(close, frame["action"].to_numpy(), costs)
        curves[symbol] = pd.Series(equity, index=frame.index)
        hold_actions = np.full(len(close), HOLD)
        hold_actions[0] = BUY
        holds[symbol] = pd.Series(equity_curve(close, hold_actions, costs)[0], index=frame.index)
        trades.extend(market_trades)
    if not curves:
        raise ValueError("nothing to backtest")
    strategy = _portfolio(curves)
    hold = _portfolio(holds)
    wins = [t for t in trades if t > 0]
    losses = [t for t in trades if t <= 0]
    gross_loss = -sum(losses)
    result: dict[str, Any] = {
        **performance(
            strategy.pct_change().fillna(0).to_numpy()[1:], strategy.to_numpy(), periods_per_year
        ),
        "trades": len(trades),
        "win_rate": len(wins) / len(trades) if trades else 0.0,
        # None when there is no losing trade (an infinite ratio is not a number to show).
        "profit_factor": sum(wins) / gross_loss if gross_loss > 0 else None,
        "exposure": float(np.mean([_exposure(f) for f in frames.values() if not f.empty])),
        "bars": len(strategy),
        "start": strategy.index[0].isoformat(),
        "end": strategy.index[-1].isoformat(),
        "fee_bps": costs.fee_bps,
        "slippage_bps": costs.slippage_bps,
        "buy_and_hold": performance(
            hold.pct_change().fillna(0).to_numpy()[1:], hold.to_numpy(), periods_per_year
        ),
        "equity_curve": _sampled(strategy, hold),
    }
    return result


def _portfolio(curves: dict[str, pd.Series]) -> pd.Series:
    """Equal capital per market: the mean of the markets' equity curves on the union of bars."""
    frame = pd.DataFrame(curves).sort_index()
    return frame.ffill().fillna(1.0).mean(axis=1)


def _exposure(frame: pd.DataFrame) -> float:
    return float(positions_from_actions(frame["action"].to_numpy()).mean())


def _sampled(strategy: pd.Series, hold: pd.Series, points: int = 400) -> dict[str, list]:
    step = max(1, len(strategy) // points)
    picks = list(range(0, len(strategy), step))
    if picks[-1] != len(strategy) - 1:
        picks.append(len(strategy) - 1)
    return {
        "time": [strategy.index[i].isoformat() for i in picks],
        "strategy": [round(float(strategy.iloc[i]), 6) for i in picks],
        "buy_and_hold": [round(float(hold.iloc[i]), 6) for i in picks],
    }
