"""The loopback exchange's books: balances, orders, trades, and how orders fill.

A deliberately simple matching model, not an order book. Market orders fill at the symbol's
reference price moved against the taker by the slippage (rounded adversely to the tick);
limit orders fill at once when marketable, else rest until `set_price` crosses them and
then fill at their limit price. Commission is charged in the quote asset. Funds for an open
order are locked, as on Binance. Every error is Binance's (HTTP status, code, msg).

Standard library only; every public method takes the ledger's lock.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable, Mapping
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_UP, ROUND_UP, Decimal

from venues.data import EIGHT_DP, SymbolSpec, fmt
from venues.orders import (
    ZERO,
    BinanceError,
    FillPlan,
    Json,
    NewOrder,
    Order,
    Trade,
)

BPS = Decimal(10_000)
# A listener hears every order change as it happens, inside the ledger's lock:
# (order, execution type NEW/TRADE/CANCELED/EXPIRED, the trade or None, cancel's client id).
Listener = Callable[[Order, str, Trade | None, str | None], None]
MAX_QTY = Decimal(9000)
INSUFFICIENT_BALANCE = "Account has insufficient balance for requested action."
DUPLICATE_ORDER = "Duplicate order sent."


def _floor_to(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


def _window(
    items: list[Json],
    id_key: str,
    from_id: int | None,
    start: int | None,
    end: int | None,
    limit: int,
) -> list[Json]:
    """Binance's paging: from fromId or startTime the oldest `limit`, else the newest."""
    chosen = [
        item
        for item in items
        if (from_id is None or int(str(item[id_key])) >= from_id)
        and (start is None or int(str(item["time"])) >= start)
        and (end is None or int(str(item["time"])) <= end)
    ]
    return chosen[:limit] if from_id is not None or start is not None else chosen[-limit:]


class Ledger:
    """One spot account's balances, orders and trades, and the matching model above."""

    def __init__(
        self,
        *,
        specs: Mapping[str, SymbolSpec],
        balances: Mapping[str, Decimal],
        fee_rate: Decimal,
        slippage_bps: Decimal,
        client_ids_unique: str,
        default_price: Callable[[str], Decimal | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lock = threading.RLock()
        self.specs = dict(specs)
        self.fee_rate = fee_rate
        self.slippage_bps = slippage_bps
        # "open": an id is refused only while an order under it is open (Binance spot,
        # rest-api.md "New order (TRADE)": newClientOrderId is "A unique id among open
        # orders"); "always": never reused (Bybit create-order.mdx: orderLinkId "always
        # unique").
        if client_ids_unique not in ("open", "always"):
            raise ValueError(f"client_ids_unique must be open or always, not {client_ids_unique!r}")
        self.client_ids_unique = client_ids_unique
        self.clock = clock
        self._default_price = default_price
        self.free: dict[str, Decimal] = {}
        for spec in self.specs.values():
            self.free.setdefault(spec.base, ZERO)
            self.free.setdefault(spec.quote, ZERO)
        self.free.update(balances)
        self.prices: dict[str, Decimal] = {}
        self.orders: dict[int, Order] = {}
        self.trades: list[Trade] = []
        self._by_client_id: dict[str, list[Order]] = {}
        self._order_ids = itertools.count(1)
        self._trade_ids = itertools.count(1)
        # The websocket side (loopback_ws) pushes these as executionReport events.
        self.listeners: list[Listener] = []

    # Reference prices.

    def spec(self, symbol: str) -> SymbolSpec:
        try:
            return self.specs[symbol]
        except KeyError:
            raise BinanceError(-1121, "Invalid symbol.") from None

    def price(self, symbol: str) -> Decimal:
        with self.lock:
            self.spec(symbol)
            if symbol not in self.prices:
                default = self._default_price(symbol)
                if default is None:
                    raise BinanceError(-1013, "Market is closed.")
                self.prices[symbol] = default
            return self.prices[symbol]

    def set_price(self, symbol: str, price: Decimal) -> list[Trade]:
        """Move the reference price; resting limit orders it crosses fill at their price."""
        with self.lock:
            self.spec(symbol)
            now = self.clock()
            self._settle(now)  # parts due before the move fill at the old price
            self.prices[symbol] = price
            trades: list[Trade] = []
            for order in list(self.orders.values()):
                crossed = (order.side == "BUY" and price <= order.price) or (
                    order.side == "SELL" and price >= order.price
                )
                if order.spec.symbol == symbol and order.is_open and order.due is None and crossed:
                    order.maker = True
                    order.due = now
                    trades += self._run(order, now)
            return trades

    # Orders.

    def place(
        self, new: NewOrder, plan_for: Callable[[NewOrder], FillPlan] = lambda new: FillPlan()
    ) -> Json:
        """Accept or reject a new order; `plan_for` (asked only on accept) says how it fills."""
        with self.lock:
            spec = self.spec(new.symbol)
            now = self.clock()
            now_ms = int(now * 1000)
            self._settle(now)
            if new.client_order_id and self._is_duplicate(new.client_order_id, now_ms):
                raise BinanceError(-2010, DUPLICATE_ORDER)
            reference = self.price(spec.symbol)
            taker_price = self._taker_price(spec, new.side, reference)
            if new.type == "MARKET":
                price = ZERO
                qty = new.quantity
                if qty is None:
                    assert new.quote_qty is not None
                    qty = _floor_to(new.quote_qty / taker_price, spec.step_size)
                estimate = taker_price
            else:
                assert new.price is not None and new.quantity is not None
                price, qty, estimate = new.price, new.quantity, new.price
                if price < spec.tick_size or price % spec.tick_size:
                    raise BinanceError(-1013, "Filter failure: PRICE_FILTER")
            if qty < spec.step_size or qty > MAX_QTY or qty % spec.step_size:
                raise BinanceError(-1013, "Filter failure: LOT_SIZE")
            if qty * estimate < spec.min_notional:
                raise BinanceError(-1013, "Filter failure: NOTIONAL")
            # A limit order is marketable when the reference price already crosses it.
            marketable = new.type == "MARKET" or (
                price >= reference if new.side == "BUY" else price <= reference
            )
            if new.type == "LIMIT_MAKER" and marketable:
                raise BinanceError(-2010, "Order would immediately match and take.")
            if new.side == "BUY":
                reserve = (qty * estimate * (1 + self.fee_rate)).quantize(EIGHT_DP, ROUND_UP)
            else:
                reserve = qty
            if self.free.get(spec.quote if new.side == "BUY" else spec.base, ZERO) < reserve:
                raise BinanceError(-2010, INSUFFICIENT_BALANCE)
            plan = plan_for(new)
            order_id = next(self._order_ids)
            client_id = new.client_order_id or f"loopback{order_id:012d}"
            order = Order(
                order_id=order_id,
                client_order_id=client_id,
                spec=spec,
                side=new.side,
                type=new.type,
                time_in_force=new.time_in_force,
                price=price,
                orig_qty=qty,
                orig_quote_qty=new.quote_qty or ZERO,
                time=now_ms,
                update_time=now_ms,
                plan=plan,
                parts_left=max(1, plan.parts),
            )
            self.free[order.reserve_asset] -= reserve
            order.reserved = reserve
            self.orders[order_id] = order
            self._by_client_id.setdefault(client_id, []).append(order)
            self._emit(order, "NEW")
            fills: list[Trade] = []
            if new.type == "MARKET":
                order.due = math.inf if plan.delay_s is None else now + plan.delay_s
                fills = self._run(order, now)
            elif marketable:
                order.due = now
                # IOC and FOK take whatever they take now, so every part fills at once.
                fills = self._run(order, now, all_parts=new.time_in_force != "GTC")
            elif new.time_in_force != "GTC":
                self._finish(order, "EXPIRED", now_ms)
            return order.as_result(new.resp_type, fills, now_ms)

    def query(self, symbol: str, order_id: int | None, client_id: str | None) -> Json:
        with self.lock:
            self._settle(self.clock())
            return self._find(symbol, order_id, client_id).as_json()

    def order(self, symbol: str, order_id: int | None, client_id: str | None) -> Order:
        """The order's record itself, for venues that print it in their own JSON shape."""
        with self.lock:
            self._settle(self.clock())
            return self._find(symbol, order_id, client_id)

    def cancel(
        self, symbol: str, order_id: int | None, client_id: str | None, cancel_id: str | None
    ) -> Json:
        with self.lock:
            now = self.clock()
            self._settle(now)
            try:
                order = self._find(symbol, order_id, client_id)
            except BinanceError as exc:
                if exc.code == -2013:
                    raise BinanceError(-2011, "Unknown order sent.") from None
                raise
            if not order.is_open:
                raise BinanceError(-2011, "Unknown order sent.")
            now_ms = int(now * 1000)
            cancel_id = cancel_id or f"loopbackcancel{order.order_id:012d}"
            self._finish(order, "CANCELED", now_ms, cancel_id=cancel_id)
            return {
                "symbol": symbol,
                "origClientOrderId": order.client_order_id,
                "orderId": order.order_id,
                "orderListId": -1,
                "clientOrderId": cancel_id,
                "transactTime": now_ms,
                "price": fmt(order.price),
                "origQty": fmt(order.orig_qty),
                "executedQty": fmt(order.executed_qty),
                "cummulativeQuoteQty": fmt(order.cum_quote),
                "status": order.status,
                "timeInForce": order.time_in_force,
                "type": order.type,
                "side": order.side,
                "selfTradePreventionMode": "EXPIRE_MAKER",
            }

    def open_orders(self, symbol: str | None) -> list[Json]:
        with self.lock:
            self._settle(self.clock())
            if symbol is not None:
                self.spec(symbol)
            return [
                o.as_json()
                for o in self.orders.values()
                if o.is_open and (symbol is None or o.spec.symbol == symbol)
            ]

    def all_orders(
        self, symbol: str, from_id: int | None, start: int | None, end: int | None, limit: int
    ) -> list[Json]:
        with self.lock:
            self._settle(self.clock())
            self.spec(symbol)
            mine = [o.as_json() for o in self.orders.values() if o.spec.symbol == symbol]
            return _window(mine, "orderId", from_id, start, end, limit)

    def my_trades(
        self,
        symbol: str,
        order_id: int | None,
        from_id: int | None,
        start: int | None,
        end: int | None,
        limit: int,
    ) -> list[Json]:
        with self.lock:
            self._settle(self.clock())
            self.spec(symbol)
            mine = [
                t.as_json()
                for t in self.trades
                if t.symbol == symbol and (order_id is None or t.order_id == order_id)
            ]
            return _window(mine, "id", from_id, start, end, limit)

    def settle(self) -> None:
        """Fill now the parts whose time has come (fills are lazy; a stream wants them now)."""
        with self.lock:
            self._settle(self.clock())

    def fill_pending(self, symbol: str | None = None) -> list[Trade]:
        """Fill now every part that waits for a time (delay_fill, partial_fill intervals)."""
        with self.lock:
            now = self.clock()
            trades: list[Trade] = []
            for order in list(self.orders.values()):
                if order.is_open and order.due is not None and symbol in (None, order.spec.symbol):
                    order.due = min(order.due, now)
                    trades += self._run(order, now, all_parts=True)
            return trades

    # Balances and the whole book.

    def balances(self) -> dict[str, dict[str, str]]:
        with self.lock:
            self._settle(self.clock())
            locked: dict[str, Decimal] = dict.fromkeys(self.free, ZERO)
            for order in self.orders.values():
                if order.is_open:
                    locked[order.reserve_asset] += order.reserved
            return {
                asset: {"free": fmt(free), "locked": fmt(locked[asset])}
                for asset, free in sorted(self.free.items())
            }

    def set_balance(self, asset: str, free: Decimal) -> None:
        with self.lock:
            self.free[asset] = free

    def account(self) -> Json:
        with self.lock:
            now_ms = int(self.clock() * 1000)
            rate = fmt(self.fee_rate)
            commission = int(self.fee_rate * BPS)
            return {
                "makerCommission": commission,
                "takerCommission": commission,
                "buyerCommission": 0,
                "sellerCommission": 0,
                "commissionRates": {
                    "maker": rate,
                    "taker": rate,
                    "buyer": fmt(ZERO),
                    "seller": fmt(ZERO),
                },
                "canTrade": True,
                "canWithdraw": True,
                "canDeposit": True,
                "brokered": False,
                "requireSelfTradePrevention": False,
                "preventSor": False,
                "updateTime": now_ms,
                "accountType": "SPOT",
                "balances": [{"asset": a, **b} for a, b in self.balances().items()],
                "permissions": ["SPOT"],
                "uid": 1,
            }

    def snapshot(self) -> Json:
        """Everything the exchange knows, for comparison with the platform's database."""
        with self.lock:
            balances = self.balances()
            return {
                "server_time": int(self.clock() * 1000),
                "orders": [o.as_json() for o in self.orders.values()],
                "trades": [t.as_json() for t in self.trades],
                "balances": balances,
                "prices": {s: fmt(p) for s, p in sorted(self.prices.items())},
                "fee_rate": str(self.fee_rate),
                "slippage_bps": str(self.slippage_bps),
            }

    # Inside the lock.

    def _find(self, symbol: str, order_id: int | None, client_id: str | None) -> Order:
        self.spec(symbol)
        if order_id is None and client_id is None:
            raise BinanceError(
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        if order_id is not None:
            found = self.orders.get(order_id)
            if found and client_id is not None and found.client_order_id != client_id:
                found = None
        else:
            assert client_id is not None
            found = next(
                (
                    o
                    for o in reversed(self._by_client_id.get(client_id, []))
                    if o.spec.symbol == symbol
                ),
                None,
            )
        if found is None or found.spec.symbol != symbol:
            raise BinanceError(-2013, "Order does not exist.")
        return found

    def _is_duplicate(self, client_id: str, now_ms: int) -> bool:
        orders = self._by_client_id.get(client_id, [])
        if self.client_ids_unique == "always":
            return bool(orders)
        return any(o.is_open for o in orders)

    def _taker_price(self, spec: SymbolSpec, side: str, reference: Decimal) -> Decimal:
        """The reference moved against the taker by the slippage, rounded adversely too."""
        factor = self.slippage_bps / BPS
        if side == "BUY":
            raw, rounding = reference * (1 + factor), ROUND_CEILING
        else:
            raw, rounding = reference * (1 - factor), ROUND_FLOOR
        ticks = (raw / spec.tick_size).to_integral_value(rounding=rounding)
        return max(ticks, Decimal(1)) * spec.tick_size

    def _settle(self, now: float) -> None:
        """Fill every part whose time has come (delayed and interval fills are lazy)."""
        due = sorted(
            (o for o in self.orders.values() if o.is_open and o.due is not None and o.due <= now),
            key=lambda o: (o.due or 0.0, o.order_id),
        )
        for order in due:
            self._run(order, now)

    def _run(self, order: Order, now: float, *, all_parts: bool = False) -> list[Trade]:
        trades: list[Trade] = []
        while order.is_open and order.due is not None and order.due <= now:
            at = order.due
            trade = self._fill_part(order, at)
            if trade is not None:
                trades.append(trade)
            if order.is_open:
                interval = 0.0 if all_parts else order.plan.interval_s
                order.due = at + interval
        return trades

    def _fill_part(self, order: Order, at: float) -> Trade | None:
        spec = order.spec
        remaining = order.remaining
        qty = remaining
        if order.parts_left > 1:
            qty = _floor_to(remaining / order.parts_left, spec.step_size)
            if qty <= 0:
                qty = remaining
        taker = self._taker_price(spec, order.side, self.price(spec.symbol))
        if order.type == "MARKET":
            price = taker
        elif order.maker:
            price = order.price
        else:
            price = min(order.price, taker) if order.side == "BUY" else max(order.price, taker)
        quote_amount = qty * price
        fee = (quote_amount * self.fee_rate).quantize(EIGHT_DP, ROUND_HALF_UP)
        # Unlock this part's share of the reservation, then pay for the part from free funds.
        release = order.reserved
        if qty != remaining:
            release = (order.reserved * qty / remaining).quantize(EIGHT_DP, ROUND_DOWN)
        self.free[order.reserve_asset] += release
        order.reserved -= release
        at_ms = int(at * 1000)
        if order.side == "BUY":
            if self.free[spec.quote] < quote_amount + fee:
                self._finish(order, "EXPIRED", at_ms)  # Binance expires what cannot be paid
                return None
            self.free[spec.quote] -= quote_amount + fee
            self.free[spec.base] += qty
        else:
            if self.free[spec.base] < qty:
                self._finish(order, "EXPIRED", at_ms)
                return None
            self.free[spec.base] -= qty
            self.free[spec.quote] += quote_amount - fee
        trade = Trade(
            id=next(self._trade_ids),
            order_id=order.order_id,
            symbol=spec.symbol,
            side=order.side,
            price=price,
            qty=qty,
            commission=fee,
            commission_asset=spec.quote,
            time=at_ms,
            is_maker=order.maker,
        )
        self.trades.append(trade)
        order.trade_ids.append(trade.id)
        order.executed_qty += qty
        order.cum_quote += quote_amount
        order.parts_left = max(1, order.parts_left - 1)
        order.update_time = at_ms
        if order.remaining <= 0:
            order.status = "FILLED"
            order.due = None
        else:
            order.status = "PARTIALLY_FILLED"
        self._emit(order, "TRADE", trade)
        return trade

    def _finish(
        self, order: Order, status: str, at_ms: int, *, cancel_id: str | None = None
    ) -> None:
        self.free[order.reserve_asset] += order.reserved
        order.reserved = ZERO
        order.status = status
        order.due = None
        order.update_time = at_ms
        self._emit(order, status, cancel_id=cancel_id)

    def _emit(
        self, order: Order, exec_type: str, trade: Trade | None = None, cancel_id: str | None = None
    ) -> None:
        for listener in self.listeners:
            listener(order, exec_type, trade, cancel_id)
