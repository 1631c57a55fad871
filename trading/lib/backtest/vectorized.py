"""The vectorized fast path for sweeps: numpy over bars, a short loop over position changes.

Same rules as the event engine (`engine.run`) and the same fill formulas as
`FillModel.execute`, in float: fixed-bps slippage with adverse rounding, taker fee rounded
to 8 places, quantities rounded down to the precision. What it does not model (and refuses
in its config): risk checks, volume caps, volatility/impact slippage and delays over one bar
— use the event engine for those. On configurations it accepts it produces the same trades
(tests compare them to the cent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from trading.lib.backtest.data import Bars
from trading.lib.backtest.engine import Config

EPS = 1e-7  # float noise allowance before a ceil/floor to the precision


@dataclass
class FastResult:
    entries: np.ndarray  # fill bar of each position change
    sides: np.ndarray  # +1 buy / -1 sell per order
    quantities: np.ndarray
    prices: np.ndarray
    fees: np.ndarray
    position: np.ndarray  # per bar
    equity: np.ndarray  # per bar, marked at the close
    trades: list[dict[str, float]]


def check(config: Config) -> None:
    m = config.fill
    if config.limits is not None or m.volume_cap is not None or m.vol_slippage or m.impact_bps:
        raise ValueError(
            "the vectorized engine has no risk checks, volume cap or dynamic slippage: "
            "use the event engine"
        )
    if m.delay_bars not in (0, 1):
        raise ValueError("the vectorized engine supports delay_bars 0 or 1")


def states(actions: np.ndarray, long_short: bool) -> np.ndarray:
    """Target state per bar: the last non-HOLD action carried forward (long/flat: SELL = 0)."""
    n = len(actions)
    idx = np.where(actions != 0, np.arange(n), -1)
    np.maximum.accumulate(idx, out=idx)
    target = actions[np.maximum(idx, 0)].astype(np.int8)
    target[idx < 0] = 0
    if not long_short:
        target[target < 0] = 0
    return target


def run(bars: Bars, actions: np.ndarray, config: Config) -> FastResult:
    check(config)
    m = config.fill
    n = len(bars)
    target = states(actions, config.long_short)
    change = np.flatnonzero(np.diff(target, prepend=np.int8(0)))
    delay = m.delay_bars
    change = change[change + delay < n]
    close, open_ = bars.close, bars.open
    reference = close[change] if delay == 0 else open_[change + delay]
    slip = float(m.slippage_bps) / 1e4
    fee_rate = float(m.fee_bps) / 1e4
    pscale, qscale = 10.0**config.price_precision, 10.0**config.qty_precision
    buy_px = np.ceil(reference * (1 + slip) * pscale - EPS) / pscale
    sell_px = np.floor(reference * (1 - slip) * pscale + EPS) / pscale
    fraction, lev = float(config.fraction), float(config.max_leverage)
    max_notional, min_notional = float(config.max_notional), float(m.min_notional)

    cash, qty = float(config.cash), 0.0
    o_bar, o_side, o_qty, o_px, o_fee = [], [], [], [], []
    trades: list[dict[str, float]] = []
    entry: dict[str, float] = {}
    # Python floats, not numpy scalars, in the loop: same IEEE arithmetic, ~5x faster.
    buys, sells = buy_px.tolist(), sell_px.tolist()
    marks, wanted = close[change].tolist(), target[change].tolist()
    for k, i in enumerate(change.tolist()):
        j = i + delay
        want = wanted[k]
        side = 1 if want > (1 if qty > 0 else -1 if qty < 0 else 0) else -1
        price = buys[k] if side > 0 else sells[k]
        legs = []
        if qty != 0:
            legs.append(abs(qty))
        if want != 0:
            mark = marks[k]
            equity = cash + qty * mark
            notional = min(equity * fraction, max_notional, equity * lev)
            size = math.floor(notional / mark * qscale + EPS) / qscale if equity > 0 else 0.0
            if size > 0:
                legs.append(size)
        for leg_i, q in enumerate(legs):
            if price * q < min_notional:
                break
            fee = round(price * q * fee_rate, 8)
            cash += -(price * q + fee) if side > 0 else price * q - fee
            o_bar.append(j)
            o_side.append(side)
            o_qty.append(q)
            o_px.append(price)
            o_fee.append(fee)
            closing = qty != 0 and leg_i == 0
            if closing:
                direction = 1 if qty > 0 else -1
                trades.append(
                    {
                        "side": direction,
                        "entry_bar": entry["bar"],
                        "exit_bar": j,
                        "qty": abs(qty),
                        "entry_price": entry["price"],
                        "exit_price": price,
                        "fee": entry["fee"] + fee,
                        "pnl": (price - entry["price"]) * abs(qty) * direction - entry["fee"] - fee,
                    }
                )
                qty = 0.0
            else:
                qty = q * side
                entry = {"bar": j, "price": price, "fee": fee}
    position = np.zeros(n)
    balance = np.full(n, float(config.cash))
    if o_bar:
        bar_idx = np.asarray(o_bar)
        qty_after = np.cumsum(np.asarray(o_qty) * np.asarray(o_side))
        cash_after = float(config.cash) - np.cumsum(
            np.asarray(o_side) * np.asarray(o_qty) * np.asarray(o_px) + np.asarray(o_fee)
        )
        last = np.r_[bar_idx[1:] != bar_idx[:-1], True]
        marker = np.full(n, -1)
        marker[bar_idx[last]] = np.arange(last.sum())
        np.maximum.accumulate(marker, out=marker)
        has = marker >= 0
        position[has] = qty_after[last][marker[has]]
        balance[has] = cash_after[last][marker[has]]
    return FastResult(
        entries=np.asarray(o_bar, dtype=np.int64),
        sides=np.asarray(o_side),
        quantities=np.asarray(o_qty),
        prices=np.asarray(o_px),
        fees=np.asarray(o_fee),
        position=position,
        equity=balance + position * close,
        trades=trades,
    )


def sweep_ema(
    bars: Bars, config: Config, grid: list[tuple[int, int]]
) -> list[tuple[int, int, float]]:
    """Final equity of ema_cross for every (fast, slow), all combinations in lockstep.

    Each EMA is computed once. The sizing and cost loop of `run` is sequential per
    combination (a trade's size depends on the equity the previous ones left), but it is
    the same arithmetic for every combination, so it runs once per *position change* over
    arrays holding every combination still trading: no per-bar Python, no per-bar curves.
    Same formulas as `run`; tests check the final equities against it.
    """
    import talib

    check(config)
    n = len(bars)
    close = bars.close
    cache = {p: talib.EMA(close, p) for p in sorted({p for combo in grid for p in combo})}
    delay = config.fill.delay_bars
    changes: list[np.ndarray] = []
    wants: list[np.ndarray] = []
    for fast, slow in grid:
        f, s = cache[fast], cache[slow]
        with np.errstate(invalid="ignore"):
            target = (f > s).astype(np.int8)
            if config.long_short:
                target -= (f < s).astype(np.int8)
            if np.any(f == s):  # a tie is a HOLD: carry the state the slow way
                actions = (f > s).astype(np.int8) - (f < s).astype(np.int8)
                target = states(actions, config.long_short)
        change = np.flatnonzero(np.diff(target, prepend=np.int8(0)))
        change = change[change + delay < n]
        changes.append(change)
        wants.append(target[change])
    finals = _lockstep(bars, config, changes, wants)
    return [(fast, slow, float(v)) for (fast, slow), v in zip(grid, finals, strict=True)]


def _lockstep(
    bars: Bars, config: Config, changes: list[np.ndarray], wants: list[np.ndarray]
) -> np.ndarray:
    """`run`'s order loop for many combinations at once; returns each one's final equity."""
    m = config.fill
    delay = m.delay_bars
    close, open_ = bars.close, bars.open
    counts = np.array([len(c) for c in changes])
    order = np.argsort(-counts, kind="stable")  # the longest first: active rows are a prefix
    width = int(counts.max()) if len(counts) else 0
    # Step-major (step, combination): each step reads one contiguous row.
    idx = np.zeros((width, len(changes)), dtype=np.int64)
    want = np.zeros((width, len(changes)), dtype=np.int8)
    for row, k in enumerate(order.tolist()):
        idx[: counts[k], row] = changes[k]
        want[: counts[k], row] = wants[k]
    slip = float(m.slippage_bps) / 1e4
    fee_rate = float(m.fee_bps) / 1e4
    pscale, qscale = 10.0**config.price_precision, 10.0**config.qty_precision
    reference = close[idx] if delay == 0 else open_[np.minimum(idx + delay, len(bars) - 1)]
    buy_px = np.ceil(reference * (1 + slip) * pscale - EPS) / pscale
    sell_px = np.floor(reference * (1 - slip) * pscale + EPS) / pscale
    mark = close[idx]
    fraction, lev = float(config.fraction), float(config.max_leverage)
    max_notional, min_notional = float(config.max_notional), float(m.min_notional)
    cash = np.full(len(changes), float(config.cash))
    qty = np.zeros(len(changes))
    sorted_counts = counts[order]
    for k in range(width):
        a = int(np.searchsorted(-sorted_counts, -k, side="left"))  # rows with count > k
        if a == 0:
            break
        q, c = qty[:a], cash[:a]
        w = want[k, :a]
        held = np.sign(q)
        side = np.where(w > held, 1.0, -1.0)
        price = np.where(side > 0, buy_px[k, :a], sell_px[k, :a])
        equity = c + q * mark[k, :a]
        # Leg 1: close what is held (a refused close also stops the opening leg, as in run).
        closing = q != 0
        size1 = np.abs(q)
        ok1 = closing & (price * size1 >= min_notional)
        fee1 = np.round(price * size1 * fee_rate, 8)
        c = np.where(ok1, c - side * price * size1 - fee1, c)
        q = np.where(ok1, 0.0, q)
        # Leg 2: open the wanted side, sized on the equity before either leg.
        notional = np.minimum(np.minimum(equity * fraction, max_notional), equity * lev)
        with np.errstate(invalid="ignore", divide="ignore"):
            size2 = np.where(
                equity > 0, np.floor(notional / mark[k, :a] * qscale + EPS) / qscale, 0.0
            )
        ok2 = (w != 0) & ~(closing & ~ok1) & (size2 > 0) & (price * size2 >= min_notional)
        fee2 = np.round(price * size2 * fee_rate, 8)
        cash[:a] = np.where(ok2, c - side * price * size2 - fee2, c)
        qty[:a] = np.where(ok2, side * size2, q)
    finals = np.empty(len(changes))
    finals[order] = cash + qty * close[-1]
    return finals
