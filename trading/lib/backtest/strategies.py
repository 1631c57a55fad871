"""Rule-based strategies: bars in, one action per bar out (decided on that bar's close).

Actions are +1 BUY, -1 SELL, 0 HOLD. The engines read them the way the live loop reads a
model's signals: long/flat — BUY opens when flat, SELL closes a long; long/short — BUY
goes (or stays) long, SELL goes (or stays) short. Every indicator is causal: the action
on bar i uses bars up to and including i only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import talib

from trading.lib.backtest.data import Bars

BUY, HOLD, SELL = 1, 0, -1


def ema_cross(close: np.ndarray, *, fast: int = 20, slow: int = 50) -> np.ndarray:
    """BUY while the fast EMA is above the slow one, SELL while below (HOLD in warm-up)."""
    if not 1 <= fast < slow:
        raise ValueError(f"ema_cross needs 1 <= fast < slow (got fast={fast}, slow={slow})")
    f = talib.EMA(close, fast)
    s = talib.EMA(close, slow)
    actions = np.zeros(len(close), dtype=np.int8)
    with np.errstate(invalid="ignore"):
        actions[f > s] = BUY
        actions[f < s] = SELL
    return actions


def rsi_reversion(
    close: np.ndarray, *, period: int = 14, lower: float = 30, upper: float = 70
) -> np.ndarray:
    """Mean reversion: BUY when RSI is oversold (< lower), SELL when overbought (> upper)."""
    if not (period >= 2 and 0 < lower < upper < 100):
        raise ValueError(
            f"rsi_reversion needs period >= 2 and 0 < lower < upper < 100 "
            f"(got period={period}, lower={lower}, upper={upper})"
        )
    rsi = talib.RSI(close, period)
    actions = np.zeros(len(close), dtype=np.int8)
    with np.errstate(invalid="ignore"):
        actions[rsi < lower] = BUY
        actions[rsi > upper] = SELL
    return actions


RULES: dict[str, Callable[..., np.ndarray]] = {
    "ema_cross": ema_cross,
    "rsi_reversion": rsi_reversion,
}
PARAM_TYPES: dict[str, dict[str, type]] = {
    "ema_cross": {"fast": int, "slow": int},
    "rsi_reversion": {"period": int, "lower": float, "upper": float},
}


def parse_params(strategy: str, text: str | Mapping[str, object]) -> dict[str, object]:
    """`fast=20,slow=50` (or a mapping) -> typed parameters, or ValueError naming the problem."""
    if strategy not in PARAM_TYPES:
        raise ValueError(f"unknown strategy {strategy!r} (known: {', '.join(sorted(RULES))})")
    types = PARAM_TYPES[strategy]
    items: list[tuple[str, object]]
    if isinstance(text, str):
        items = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, text_value = part.partition("=")
            if not sep:
                raise ValueError(f"parameter {part!r} is not NAME=VALUE")
            items.append((key.strip(), text_value.strip()))
    else:
        items = list(text.items())
    params: dict[str, object] = {}
    for key, value in items:
        if key not in types:
            raise ValueError(f"{strategy} has no parameter {key!r} (has: {', '.join(types)})")
        try:
            params[key] = types[key](value)  # type: ignore[call-arg]
        except (TypeError, ValueError):
            raise ValueError(f"{key}={value!r} is not a valid {types[key].__name__}") from None
    return params


def rule_actions(strategy: str, bars: Bars, params: Mapping[str, object]) -> np.ndarray:
    return RULES[strategy](bars.close, **params)
