"""Portfolio backtests: several markets at once, one cash pool, the risk checks on every order.

The markets' bars are merged on one clock (the union of their open times; a market with a
gap simply has no bar then). At each time, per market in a fixed order: orders pending for
this bar fill at its open through `FillModel.execute`; then the action decided on its close
is sized on the *portfolio's* equity (`fraction` of it per entry, never more than the free
cash on a long/flat book), checked by `risk.lib.pretrade.evaluate` against the whole book
(every market's position and pending orders, marked at its last close) and queued. A
denied order is recorded with its code and the run goes on — as the live loop does.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np

from risk.lib.pretrade import Book, Holding, Limits, OrderRequest, evaluate
from trading.lib.backtest import metrics
from trading.lib.backtest.data import Bars
from trading.lib.backtest.engine import BIG, OrderRecord, _bar
from trading.lib.backtest.ledger import FillRecord, Ledger, TradeRecord
from trading.lib.fills import FillModel
from trading.lib.sizing import fixed_fraction_quantity


@dataclass(frozen=True)
class Leg:
    """One market of the portfolio: its bars, the strategy's actions and its precisions."""

    symbol: str
    bars: Bars
    actions: np.ndarray
    market_id: int
    price_precision: int = 2
    qty_precision: int = 5


@dataclass(frozen=True)
class PortfolioConfig:
    fill: FillModel
    cash: Decimal = Decimal("10000")
    fraction: Decimal = Decimal("0.25")  # of portfolio equity committed by one entry
    long_short: bool = False
    max_notional: Decimal = BIG
    limits: Limits | None = None  # per-market qty precision is filled in from each leg


@dataclass(frozen=True, slots=True)
class PortfolioOrder:
    symbol: str
    order: OrderRecord


@dataclass
class PortfolioResult:
    times: np.ndarray  # the merged clock (epoch seconds)
    equity: np.ndarray  # marked at each time's closes
    exposure: np.ndarray  # gross |position| × mark at each time
    orders: list[PortfolioOrder] = field(default_factory=list)
    fills: list[tuple[str, FillRecord]] = field(default_factory=list)
    trades: list[tuple[str, TradeRecord]] = field(default_factory=list)
    final_cash: Decimal = Decimal("0")
    positions: dict[str, Decimal] = field(default_factory=dict)


@dataclass(slots=True)
class _Pending:
    seq: int
    fill_time: int
    side: str
    quantity: Decimal
    decided_bar: int
    reference: Decimal


def run(legs: list[Leg], config: PortfolioConfig) -> PortfolioResult:
    """Replay every leg's actions on one clock with one cash pool."""
    if not legs:
        raise ValueError("a portfolio needs at least one market")
    if len({leg.symbol for leg in legs}) != len(legs):
        raise ValueError("each market may appear once")
    for leg in legs:
        if len(leg.actions) != len(leg.bars):
            raise ValueError(f"{leg.symbol}: {len(leg.actions)} actions for {len(leg.bars)} bars")
    model = config.fill
    delay = model.delay_bars
    clock = np.unique(np.concatenate([leg.bars.times for leg in legs]))
    index = [dict(zip(leg.bars.times.tolist(), range(len(leg.bars)), strict=True)) for leg in legs]
    ledgers = [Ledger(Decimal(0)) for _ in legs]  # cash deltas; the pool is config.cash + Σ
    limits = [
        replace(config.limits, qty_precision=leg.qty_precision) if config.limits else None
        for leg in legs
    ]
    marks = [Decimal(0)] * len(legs)
    mark_f = [0.0] * len(legs)
    pending: list[list[_Pending]] = [[] for _ in legs]
    result = PortfolioResult(
        times=clock, equity=np.zeros(len(clock)), exposure=np.zeros(len(clock))
    )
    recent: deque[int] = deque()
    start_cash = float(config.cash)
    peak, day, day_start = start_cash, -1, start_cash
    seq = 0

    def cash() -> Decimal:
        return config.cash + sum((led.cash for led in ledgers), Decimal(0))

    def book(equity: Decimal) -> Book:
        holdings = {}
        for k, leg in enumerate(legs):
            buys = sum((p.quantity for p in pending[k] if p.side == "BUY"), Decimal(0))
            sells = sum((p.quantity for p in pending[k] if p.side == "SELL"), Decimal(0))
            holdings[leg.market_id] = Holding(ledgers[k].quantity, buys, sells, marks[k])
        return Book(
            holdings=holdings,
            equity=equity,
            peak_equity=Decimal(repr(peak)),
            day_start_equity=Decimal(repr(day_start)),
            recent_orders=len(recent),
            allow_short=config.long_short,
        )

    for t_index, t in enumerate(clock.tolist()):
        for k, leg in enumerate(legs):
            i = index[k].get(t)
            if i is None:
                continue
            bars = leg.bars
            due = [p for p in pending[k] if p.fill_time <= i]
            if due:
                pending[k] = [p for p in pending[k] if p.fill_time > i]
                for order in due:
                    _fill(result, leg, ledgers[k], model, order, i, bars.dec("open", i), delay)
            marks[k] = bars.dec("close", i)
            mark_f[k] = float(bars.close[i])
        equity_f = float(cash()) + sum(
            float(led.quantity) * m for led, m in zip(ledgers, mark_f, strict=True)
        )
        if t // 86400 != day:
            day, day_start = t // 86400, equity_f
        peak = max(peak, equity_f)
        result.equity[t_index] = equity_f
        result.exposure[t_index] = sum(
            abs(float(led.quantity)) * m for led, m in zip(ledgers, mark_f, strict=True)
        )
        for k, leg in enumerate(legs):
            i = index[k].get(t)
            if i is None or pending[k]:
                continue
            a = int(leg.actions[i])
            held = ledgers[k].quantity
            if a == 0:
                continue
            if config.long_short:
                if (a > 0 and held > 0) or (a < 0 and held < 0):
                    continue
            elif (a > 0 and held != 0) or (a < 0 and held <= 0):
                continue
            price = marks[k]
            equity = cash() + sum(
                (led.quantity * m for led, m in zip(ledgers, marks, strict=True)), Decimal(0)
            )
            side = "BUY" if a > 0 else "SELL"
            orders: list[tuple[str, Decimal]] = []
            if held != 0:
                orders.append((side, abs(held)))
            if a > 0 or config.long_short:
                # Spot: never spend cash that orders still in flight have spoken for.
                committed = sum(
                    (
                        p.quantity * marks[j]
                        for j in range(len(legs))
                        for p in pending[j]
                        if p.side == "BUY"
                    ),
                    Decimal(0),
                )
                free = cash() - committed if not config.long_short else BIG
                size = fixed_fraction_quantity(
                    equity=equity,
                    fraction=config.fraction,
                    price=price,
                    qty_precision=leg.qty_precision,
                    max_notional=min(config.max_notional, max(free, Decimal(0))),
                )
                if size > 0:
                    orders.append((side, size))
            for side, quantity in orders:
                seq += 1
                if limits[k] is not None:
                    lim = limits[k]
                    assert lim is not None
                    while recent and recent[0] <= t - lim.throttle_window_seconds:
                        recent.popleft()
                    denial = evaluate(
                        OrderRequest(leg.market_id, side, quantity, price), book(equity), lim
                    )
                    if denial is not None:
                        result.orders.append(
                            PortfolioOrder(
                                leg.symbol,
                                OrderRecord(
                                    seq,
                                    i,
                                    side,
                                    quantity,
                                    price,
                                    "denied",
                                    f"{denial.code}: {denial.detail}",
                                ),
                            )
                        )
                        break
                    recent.append(t)
                order = _Pending(seq, i + delay, side, quantity, i, price)
                if delay == 0:
                    _fill(result, leg, ledgers[k], model, order, i, price, delay)
                elif i + delay < len(leg.bars):
                    pending[k].append(order)
                else:
                    result.orders.append(
                        PortfolioOrder(
                            leg.symbol,
                            OrderRecord(
                                seq, i, side, quantity, price, "expired", "run ended before fill"
                            ),
                        )
                    )
    result.final_cash = cash()
    result.positions = {leg.symbol: led.quantity for leg, led in zip(legs, ledgers, strict=True)}
    return result


def _fill(
    result: PortfolioResult,
    leg: Leg,
    ledger: Ledger,
    model: FillModel,
    order: _Pending,
    i: int,
    reference: Decimal,
    delay: int,
) -> None:
    bars = leg.bars
    ex = model.execute(
        side=order.side,
        quantity=order.quantity,
        reference=reference,
        bar=_bar(bars, i),
        price_precision=leg.price_precision,
        qty_precision=leg.qty_precision,
    )
    status = (
        "unfilled" if ex.quantity <= 0 else "filled" if ex.unfilled == 0 else "partially_filled"
    )
    result.orders.append(
        PortfolioOrder(
            leg.symbol,
            OrderRecord(
                order.seq,
                order.decided_bar,
                order.side,
                order.quantity,
                order.reference,
                status,
                ex.reason,
            ),
        )
    )
    if ex.quantity <= 0:
        return
    at = bars.time(i) if delay else datetime.fromtimestamp(int(bars.times[i]) + bars.step, UTC)
    result.fills.append(
        (leg.symbol, FillRecord(order.seq, at, order.side, ex.price, ex.quantity, ex.fee))
    )
    trade = ledger.apply(order.side, ex.price, ex.quantity, ex.fee, at)
    if trade is not None:
        result.trades.append((leg.symbol, trade))


def build_report(
    legs: list[Leg], config: PortfolioConfig, result: PortfolioResult
) -> dict[str, Any]:
    """The single-market report's shape, plus per-market figures and the denied orders."""
    day_times, day_values = metrics.daily_equity(result.times, result.equity, float(config.cash))
    fills = [f for _, f in result.fills]
    figures = metrics.compute(
        day_times=day_times,
        day_values=day_values,
        trade_pnls=[t.pnl for _, t in result.trades],
        fees=sum((f.fee for f in fills), Decimal(0)),
        traded_notional=sum((f.price * f.quantity for f in fills), Decimal(0)),
        position=result.exposure,
        first_close=1.0,
        last_close=1.0,
    )
    # Buy and hold of the portfolio: equal weights, each market from its first to last close.
    figures["buy_and_hold_return"] = float(
        np.mean([leg.bars.close[-1] / leg.bars.close[0] - 1 for leg in legs])
    )
    denied = [o for o in result.orders if o.order.status == "denied"]
    figures["orders"] = len(result.orders)
    figures["orders_denied"] = len(denied)
    per_market = {
        leg.symbol: {
            "trades": sum(1 for s, _ in result.trades if s == leg.symbol),
            "pnl": str(sum((t.pnl for s, t in result.trades if s == leg.symbol), Decimal(0))),
            "position": str(result.positions[leg.symbol]),
        }
        for leg in legs
    }
    return {
        "metrics": figures,
        "markets": per_market,
        "denied": [
            {
                "market": o.symbol,
                "side": o.order.side,
                "qty": str(o.order.quantity),
                "time": legs_time(legs, o),
                "reason": o.order.detail,
            }
            for o in denied
        ],
        "trades": [{"market": s, **t.as_json()} for s, t in result.trades],
        "equity": [
            [datetime.fromtimestamp(int(t), UTC).isoformat().replace("+00:00", "Z"), round(v, 2)]
            for t, v in zip(day_times.tolist(), day_values.tolist(), strict=True)
        ],
    }


def legs_time(legs: list[Leg], o: PortfolioOrder) -> str:
    leg = next(leg for leg in legs if leg.symbol == o.symbol)
    return leg.bars.time(o.order.decided_bar).isoformat().replace("+00:00", "Z")
