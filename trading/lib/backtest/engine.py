"""The event-driven engine: the parity engine. Bar by bar, exactly what paper trading does.

Per bar i: orders pending for this bar fill at its open (through `FillModel.execute`, with
this bar's volume); then the action decided on bar i's close is sized like the live loop
(`trading.lib.sizing`), checked by the risk engine's pure pre-trade checks
(`risk.lib.pretrade.evaluate`) and either filled at once (`delay_bars=0`, at the close) or
queued for the open `delay_bars` later. Money is Decimal throughout; only the per-bar
mark-to-market curve is float.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

from risk.lib.pretrade import Book, Holding, Limits, OrderRequest, evaluate
from trading.lib.backtest.data import Bars
from trading.lib.backtest.ledger import FillRecord, Ledger, TradeRecord
from trading.lib.fills import BarView, FillModel
from trading.lib.sizing import fixed_fraction_quantity

BIG = Decimal("1e18")
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Config:
    fill: FillModel
    cash: Decimal = Decimal("10000")
    long_short: bool = False
    fraction: Decimal = Decimal("1")  # of equity committed by an entry
    max_notional: Decimal = BIG
    max_leverage: Decimal = Decimal("1")
    price_precision: int = 2
    qty_precision: int = 5
    limits: Limits | None = None  # the risk engine's limits; None: no pre-trade checks
    market_id: int = 1


@dataclass(frozen=True, slots=True)
class OrderRecord:
    seq: int
    decided_bar: int
    side: str
    quantity: Decimal
    reference: Decimal  # price the decision saw (the close)
    status: str  # filled / partially_filled / denied / unfilled / expired
    detail: str = ""


@dataclass
class Result:
    bars: Bars
    config: Config
    orders: list[OrderRecord] = field(default_factory=list)
    fills: list[FillRecord] = field(default_factory=list)
    trades: list[TradeRecord] = field(default_factory=list)
    position: np.ndarray = field(default_factory=lambda: np.zeros(0))  # signed qty per bar
    equity: np.ndarray = field(default_factory=lambda: np.zeros(0))  # marked at each close
    final_cash: Decimal = Decimal("0")
    final_quantity: Decimal = Decimal("0")


@dataclass(slots=True)
class _Pending:
    seq: int
    fill_bar: int
    side: str
    quantity: Decimal
    decided_bar: int
    reference: Decimal


def _bar(bars: Bars, i: int) -> BarView:
    return BarView(
        bars.dec("open", i),
        bars.dec("high", i),
        bars.dec("low", i),
        bars.dec("close", i),
        bars.dec("volume", i),
    )


def run(
    bars: Bars, actions: np.ndarray, config: Config, progress: Progress | None = None
) -> Result:
    """Replay `actions` (one per bar: +1 BUY, -1 SELL, 0 HOLD) over `bars`."""
    n = len(bars)
    if len(actions) != n:
        raise ValueError(f"{len(actions)} actions for {n} bars")
    model, ledger = config.fill, Ledger(config.cash)
    result = Result(bars=bars, config=config)
    delay = model.delay_bars
    pending: list[_Pending] = []
    fill_bars: list[int] = []
    fill_qty: list[float] = []
    fill_cash: list[float] = []
    recent: deque[int] = deque()  # times of approved orders (throttle window)
    peak = float(config.cash)
    last_mark = 0  # bars before this one are folded into `peak`
    day_start = (-1, float(config.cash))
    close = bars.close
    act = actions.tolist()
    report_every = max(n // 100, 1)

    def fill(order: _Pending, i: int, reference: Decimal) -> None:
        ex = model.execute(
            side=order.side,
            quantity=order.quantity,
            reference=reference,
            bar=_bar(bars, i),
            price_precision=config.price_precision,
            qty_precision=config.qty_precision,
        )
        if ex.quantity <= 0:
            result.orders.append(
                OrderRecord(
                    order.seq,
                    order.decided_bar,
                    order.side,
                    order.quantity,
                    order.reference,
                    "unfilled",
                    ex.reason,
                )
            )
            return
        at = bars.time(i) if delay else bars.time(i) + _step(bars)
        result.fills.append(FillRecord(order.seq, at, order.side, ex.price, ex.quantity, ex.fee))
        trade = ledger.apply(order.side, ex.price, ex.quantity, ex.fee, at)
        if trade is not None:
            result.trades.append(trade)
        status = "filled" if ex.unfilled == 0 else "partially_filled"
        result.orders.append(
            OrderRecord(
                order.seq,
                order.decided_bar,
                order.side,
                order.quantity,
                order.reference,
                status,
                ex.reason,
            )
        )
        fill_bars.append(i)
        fill_qty.append(float(ledger.quantity))
        fill_cash.append(float(ledger.cash))

    seq = 0
    for i in range(n):
        if progress is not None and i % report_every == 0:
            progress(i, n)
        if pending and pending[0].fill_bar == i:
            due = [p for p in pending if p.fill_bar == i]
            pending = [p for p in pending if p.fill_bar != i]
            reference = bars.dec("open", i)
            for order in due:
                fill(order, i, reference)
        a = act[i]
        if a == 0 or pending:
            continue
        held = ledger.quantity
        if config.long_short:
            if (a > 0 and held > 0) or (a < 0 and held < 0):
                continue
        elif (a > 0 and held != 0) or (a < 0 and held <= 0):
            continue
        # A decision: mark the book at this close, size, check, then fill or queue.
        price = bars.dec("close", i)
        if i >= last_mark:
            seg = close[last_mark : i + 1]
            q = float(held)
            if len(seg):
                extreme = seg.max() if q > 0 else seg.min()
                peak = max(peak, float(ledger.cash) + q * float(extreme))
            last_mark = i + 1
        day = int(bars.times[i]) // 86400
        if day != day_start[0]:
            day_start = (day, float(ledger.cash) + float(held) * float(close[i]))
        equity = ledger.cash + held * price
        orders: list[tuple[str, Decimal]] = []
        side = "BUY" if a > 0 else "SELL"
        if held != 0:
            orders.append((side, abs(held)))  # close first (a flip is two orders)
        if a > 0 or config.long_short:
            size = fixed_fraction_quantity(
                equity=equity,
                fraction=config.fraction,
                price=price,
                qty_precision=config.qty_precision,
                max_notional=config.max_notional,
                max_leverage=config.max_leverage,
            )
            if size > 0:
                orders.append((side, size))
        position = held
        for side, quantity in orders:
            seq += 1
            if config.limits is not None:
                window = config.limits.throttle_window_seconds
                now = int(bars.times[i])
                while recent and recent[0] <= now - window:
                    recent.popleft()
                denial = evaluate(
                    OrderRequest(config.market_id, side, quantity, price),
                    Book(
                        holdings={config.market_id: Holding(quantity=position, mark=price)},
                        equity=equity,
                        peak_equity=Decimal(repr(peak)),
                        day_start_equity=Decimal(repr(day_start[1])),
                        recent_orders=len(recent),
                        allow_short=config.long_short,
                    ),
                    config.limits,
                )
                if denial is not None:
                    result.orders.append(
                        OrderRecord(
                            seq,
                            i,
                            side,
                            quantity,
                            price,
                            "denied",
                            f"{denial.code}: {denial.detail}",
                        )
                    )
                    break
                recent.append(now)
            order = _Pending(seq, i + delay, side, quantity, i, price)
            if delay == 0:
                fill(order, i, price)
                position = ledger.quantity
            elif i + delay < n:
                pending.append(order)
            else:
                result.orders.append(
                    OrderRecord(seq, i, side, quantity, price, "expired", "run ended before fill")
                )
    result.final_cash, result.final_quantity = ledger.cash, ledger.quantity
    result.position, cash = step_series(n, fill_bars, fill_qty, fill_cash, float(config.cash))
    result.equity = cash + result.position * close
    if progress is not None:
        progress(n, n)
    return result


def _step(bars: Bars):  # type: ignore[no-untyped-def]
    from datetime import timedelta

    return timedelta(seconds=bars.step)


def step_series(
    n: int, at: list[int], qty: list[float], cash: list[float], start_cash: float
) -> tuple[np.ndarray, np.ndarray]:
    """Position and cash per bar from the values after each fill (several per bar allowed)."""
    position = np.zeros(n)
    balance = np.full(n, start_cash)
    if at:
        index = np.asarray(at)
        # The last fill of a bar wins: keep the final occurrence of each bar index.
        last = np.r_[index[1:] != index[:-1], True]
        index = index[last]
        marker = np.full(n, -1)
        marker[index] = np.arange(len(index))
        marker = np.maximum.accumulate(marker)
        has = marker >= 0
        position[has] = np.asarray(qty)[last][marker[has]]
        balance[has] = np.asarray(cash)[last][marker[has]]
    return position, balance
