"""What the loopback venues (Bybit, KuCoin, Coinbase, Binance USDT-M futures) share.

`VenueServer` is a loopback server on 127.0.0.1 (venues.transport) that hands each request
to the venue's `route`, records it (method, path, parameters) for the tests, and turns an
uncaught error into a 500. Spot venues keep their books in loopback_ledger's `Ledger`
(the Binance loopback's matching model), keyed by the venue's own market ids; futures
venues keep theirs in `FuturesBook` below (one-way positions, leverage and margin mode
per symbol, USDT margin). Both record orders and trades as loopback_orders' `Order` and
`Trade`, so every venue fills the same way.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Generic, TypeVar
from urllib.parse import unquote

from venues.binance_api import Reply, json_reply
from venues.data import EIGHT_DP, SymbolSpec
from venues.faults import FaultPlan
from venues.ledger import DUPLICATE_ORDER, INSUFFICIENT_BALANCE, Ledger, Listener
from venues.orders import ZERO, BinanceError, FillPlan, Order, Trade
from venues.transport import LoopServer, Outcome, Request

__all__ = ["PathRoutes", "Request", "VenueError", "VenueServer"]  # Request: venues.transport

logger = logging.getLogger(__name__)


class VenueError(Exception):
    """A refusal of a kind ("duplicate", "insufficient", "lot_size", "min_notional",
    "not_found", "not_open", "auth_key", "auth_sign", ...) the venue's `error_reply` words."""

    def __init__(self, kind: str, msg: str = "", context: str = "") -> None:
        super().__init__(msg or kind)
        self.kind = kind
        self.msg = msg or kind
        self.context = context  # e.g. Bybit's category, whose codes differ


T = TypeVar("T")


class PathRoutes(Generic[T]):
    """(method, path template) -> entry, where a template names its variable parts as the
    venue's documentation does: "/api/v1/hf/orders/{orderId}". Exact paths win over
    templates, so "/api/v1/hf/orders/active" is never taken for an order id."""

    def __init__(self, table: Mapping[tuple[str, str], T]) -> None:
        self._exact = {key: entry for key, entry in table.items() if "{" not in key[1]}
        self._templates = [
            (method, re.compile(_template(path)), entry)
            for (method, path), entry in table.items()
            if "{" in path
        ]

    def match(self, method: str, path: str) -> tuple[T, dict[str, str]] | None:
        """The entry and the path's variables (URL-decoded), or None: the venue's 404."""
        if (method, path) in self._exact:
            return self._exact[(method, path)], {}
        for verb, pattern, entry in self._templates:
            found = pattern.match(path) if verb == method else None
            if found:
                return entry, {k: unquote(v) for k, v in found.groupdict().items()}
        return None


def _template(path: str) -> str:
    variable = r"\\{(\w+)\\}"  # re.escape("{orderId}") is "\{orderId\}"
    return "^" + re.sub(variable, r"(?P<\1>[^/]+)", re.escape(path)) + "$"


def spot_ledger(
    specs: Mapping[str, SymbolSpec], balances: Mapping[str, Decimal | str], fee_rate: str
) -> Ledger:
    """A spot book for a venue: prices are set by the test (`set_price`), never from files."""
    return Ledger(
        specs=specs,
        balances={a: Decimal(str(v)) for a, v in balances.items()},
        fee_rate=Decimal(fee_rate),
        slippage_bps=ZERO,
        client_ids_unique="always",  # Bybit, KuCoin: a client id is never reused
        default_price=lambda symbol: None,
    )


class VenueServer(LoopServer):
    """One venue on 127.0.0.1; subclasses implement `route` and `error_reply`."""

    server_version = "loopback-venue/1"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        # Request faults (venues/faults.py), decided at dispatch; none until a rule is added.
        self.faults = FaultPlan()
        self._log: list[tuple[str, str, dict[str, Any]]] = []
        self._log_lock = threading.Lock()

    def answer(self, request: Request) -> Reply | Outcome:
        return self.serve(request)

    def requests(self, path: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:
        """(method, path, parameters) of every request so far, optionally for one path."""
        with self._log_lock:
            return [r for r in self._log if path is None or r[1] == path]

    def serve(self, request: Request) -> Reply | Outcome:
        try:
            params = request.params
        except ValueError:
            params = {}
        with self._log_lock:
            self._log.append((request.method, request.path, params))

        def answer() -> Reply:
            try:
                return self.route(request)
            except VenueError as exc:
                return self.error_reply(exc)
            except BinanceError as exc:  # the spot ledger's refusal
                return self.error_reply(VenueError(ledger_kind(exc), exc.msg))
            except Exception:
                logger.exception("loopback venue failed on %s %s", request.method, request.path)
                return json_reply(500, {"message": "internal error"})

        reply, hold_s = self.faults.serve(request.method, request.path, answer, self.fault_reply)
        # An injected fault may hold the answer past the client's timeout, or send none.
        return reply if reply is not None and not hold_s else Outcome(reply, hold_s)

    def route(self, request: Request) -> Reply:
        raise NotImplementedError

    def error_reply(self, exc: VenueError) -> Reply:
        raise NotImplementedError

    def fault_reply(self, kind: str, params: Mapping[str, Any]) -> Reply:
        """An injected fault's answer (faults.FaultPlan.serve), worded as the venue words it."""
        raise NotImplementedError


def ledger_kind(exc: BinanceError) -> str:
    """The kind of the ledger's (Binance-worded) refusal, for a venue to word its own way."""
    if exc.msg == DUPLICATE_ORDER:
        return "duplicate"
    if exc.msg == INSUFFICIENT_BALANCE:
        return "insufficient"
    if "LOT_SIZE" in exc.msg:
        return "lot_size"
    if "NOTIONAL" in exc.msg:
        return "min_notional"
    return {-2013: "not_found", -2011: "not_open", -1121: "symbol"}.get(exc.code, "bad_request")


# --- USDT-margined futures ------------------------------------------------------------------


@dataclass
class Position:
    qty: Decimal = ZERO  # signed: long > 0, short < 0 (one-way mode)
    entry: Decimal = ZERO
    leverage: int = 20
    margin_mode: str = "cross"  # cross | isolated
    realized: Decimal = ZERO
    updated: int = 0


@dataclass
class FuturesBook:
    """One USDT-margined account: market orders fill at once at the price, limits rest."""

    specs: dict[str, SymbolSpec]
    wallet: Decimal = Decimal("100000")
    fee_rate: Decimal = Decimal("0.0005")
    clock: Callable[[], float] = time.time
    # "always": a client id is never reused (Bybit create-order.mdx: orderLinkId "always
    # unique"); "open": refused only while an order under it is open (Binance USDⓈ-M
    # futures "New Order": newClientOrderId "A unique id among open orders").
    client_ids_unique: str = "always"
    lock: threading.RLock = field(default_factory=threading.RLock)
    prices: dict[str, Decimal] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)
    orders: dict[int, Order] = field(default_factory=dict)
    trades: list[Trade] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _trade_ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    # Called under `lock` on every change, as the spot ledger's are: (order, execution type
    # NEW / TRADE / CANCELED, the trade of a TRADE, None). A venue's user stream hears them.
    listeners: list[Listener] = field(default_factory=list)

    def spec(self, symbol: str) -> SymbolSpec:
        if symbol not in self.specs:
            raise VenueError("symbol", f"unknown symbol {symbol}")
        return self.specs[symbol]

    def position(self, symbol: str) -> Position:
        self.spec(symbol)
        return self.positions.setdefault(symbol, Position())

    def set_price(self, symbol: str, price: Decimal | str) -> None:
        with self.lock:
            self.prices[symbol] = Decimal(str(price))
            for order in list(self.orders.values()):
                if order.is_open and order.spec.symbol == symbol and self._marketable(order):
                    self._fill(order, order.price)

    def by_client_id(self, client_id: str) -> Order | None:
        """The newest order under the id (an "open" venue may have several closed ones)."""
        with self.lock:
            return next(
                (o for o in reversed(self.orders.values()) if o.client_order_id == client_id),
                None,
            )

    def find(self, symbol: str, order_id: int | None, client_id: str | None) -> Order | None:
        with self.lock:
            order = self.orders.get(order_id) if order_id is not None else None
            if order is None and client_id:
                order = self.by_client_id(client_id)
            return order if order is not None and order.spec.symbol == symbol else None

    def used_margin(self) -> Decimal:
        return sum(
            (abs(p.qty) * p.entry / p.leverage for p in self.positions.values()),
            ZERO,
        )

    def unrealized(self) -> Decimal:
        return sum(
            (p.qty * (self.prices.get(s, p.entry) - p.entry) for s, p in self.positions.items()),
            ZERO,
        )

    def available(self) -> Decimal:
        return self.wallet + self.unrealized() - self.used_margin()

    def place(
        self,
        *,
        symbol: str,
        side: str,
        type: str,
        qty: Decimal,
        price: Decimal | None,
        client_id: str,
        reduce_only: bool = False,
    ) -> Order:
        """Accept (and fill, when marketable) or refuse with a VenueError code the venue maps:
        duplicate, lot_size, min_notional, insufficient, reduce_only."""
        with self.lock:
            spec = self.spec(symbol)
            earlier = self.by_client_id(client_id) if client_id else None
            if earlier is not None and (self.client_ids_unique == "always" or earlier.is_open):
                raise VenueError("duplicate", "duplicate client order id")
            reference = self.prices.get(symbol)
            if reference is None:
                raise VenueError("closed", "no price")
            if qty < spec.step_size or qty % spec.step_size:
                raise VenueError(
                    "lot_size", f"quantity {qty} is not a multiple of {spec.step_size}"
                )
            estimate = price if type == "LIMIT" and price is not None else reference
            if qty * estimate < spec.min_notional:
                raise VenueError("min_notional", f"notional below {spec.min_notional}")
            pos = self.position(symbol)
            signed = qty if side == "BUY" else -qty
            if reduce_only and (pos.qty == 0 or (pos.qty > 0) == (signed > 0)):
                raise VenueError("reduce_only", "reduce-only order would increase the position")
            opening = abs(pos.qty + signed) > abs(pos.qty)
            if opening and qty * estimate / pos.leverage > self.available():
                raise VenueError("insufficient", "margin is insufficient")
            now_ms = int(self.clock() * 1000)
            order = Order(
                order_id=next(self._ids),
                client_order_id=client_id,
                spec=spec,
                side=side,
                type=type,
                time_in_force="GTC",
                price=price if type == "LIMIT" and price is not None else ZERO,
                orig_qty=qty,
                orig_quote_qty=ZERO,
                time=now_ms,
                update_time=now_ms,
                plan=FillPlan(),
            )
            self.orders[order.order_id] = order
            self._emit(order, "NEW")
            if type == "MARKET":
                self._fill(order, reference)
            elif self._marketable(order):
                self._fill(order, order.price)
            return order

    def cancel(self, order: Order) -> Order:
        with self.lock:
            if not order.is_open:
                raise VenueError("not_open", "order is not open")
            order.status = "CANCELED"
            order.update_time = int(self.clock() * 1000)
            self._emit(order, "CANCELED")
            return order

    def _marketable(self, order: Order) -> bool:
        price = self.prices.get(order.spec.symbol)
        if price is None:
            return False
        return price <= order.price if order.side == "BUY" else price >= order.price

    def _fill(self, order: Order, price: Decimal) -> None:
        qty = order.remaining
        fee = (qty * price * self.fee_rate).quantize(EIGHT_DP, ROUND_HALF_UP)
        pos = self.position(order.spec.symbol)
        signed = qty if order.side == "BUY" else -qty
        if pos.qty == 0 or (pos.qty > 0) == (signed > 0):
            total = pos.qty + signed
            pos.entry = (pos.qty * pos.entry + signed * price) / total
            pos.qty = total
        else:
            closed = min(abs(signed), abs(pos.qty))
            pnl = closed * (price - pos.entry) * (1 if pos.qty > 0 else -1)
            pos.realized += pnl
            self.wallet += pnl
            pos.qty += signed
            if pos.qty == 0:
                pos.entry = ZERO
            elif (pos.qty > 0) == (signed > 0):
                pos.entry = price  # flipped: the rest opened at this price
        self.wallet -= fee
        now_ms = int(self.clock() * 1000)
        pos.updated = now_ms
        trade = Trade(
            id=next(self._trade_ids),
            order_id=order.order_id,
            symbol=order.spec.symbol,
            side=order.side,
            price=price,
            qty=qty,
            commission=fee,
            commission_asset="USDT",
            time=now_ms,
            is_maker=order.type == "LIMIT",
        )
        self.trades.append(trade)
        order.trade_ids.append(trade.id)
        order.executed_qty += qty
        order.cum_quote += qty * price
        order.status = "FILLED"
        order.update_time = now_ms
        self._emit(order, "TRADE", trade)

    def _emit(self, order: Order, exec_type: str, trade: Trade | None = None) -> None:
        for listener in self.listeners:
            listener(order, exec_type, trade, None)


def average(order: Order) -> Decimal:
    return order.cum_quote / order.executed_qty if order.executed_qty else ZERO
