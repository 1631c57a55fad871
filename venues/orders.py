"""The loopback exchange's records: orders, trades, and errors, in Binance's JSON shapes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from venues.data import SymbolSpec, fmt

ZERO = Decimal(0)
OPEN = ("NEW", "PARTIALLY_FILLED")

Json = dict[str, object]


class BinanceError(Exception):
    """An error answer in Binance's shape: `{"code": -2010, "msg": "..."}` with its status."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status

    def body(self) -> Json:
        return {"code": self.code, "msg": self.msg}


@dataclass(frozen=True)
class FillPlan:
    """How a new order fills; the delay_fill and partial_fill faults change it."""

    parts: int = 1
    interval_s: float = 0.0
    # Market orders only: seconds before the first fill; None waits for fill_pending().
    delay_s: float | None = 0.0


@dataclass(frozen=True)
class NewOrder:
    symbol: str
    side: str  # BUY | SELL
    type: str  # MARKET | LIMIT | LIMIT_MAKER
    quantity: Decimal | None = None
    quote_qty: Decimal | None = None
    price: Decimal | None = None
    time_in_force: str = "GTC"
    client_order_id: str | None = None
    resp_type: str = "FULL"


@dataclass(frozen=True)
class Trade:
    id: int
    order_id: int
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    is_maker: bool

    def as_json(self) -> Json:
        """As GET /api/v3/myTrades lists it."""
        return {
            "symbol": self.symbol,
            "id": self.id,
            "orderId": self.order_id,
            "orderListId": -1,
            "price": fmt(self.price),
            "qty": fmt(self.qty),
            "quoteQty": fmt(self.price * self.qty),
            "commission": fmt(self.commission),
            "commissionAsset": self.commission_asset,
            "time": self.time,
            "isBuyer": self.side == "BUY",
            "isMaker": self.is_maker,
            "isBestMatch": True,
        }

    def as_fill(self) -> Json:
        """As the `fills` of a FULL order response list it."""
        return {
            "price": fmt(self.price),
            "qty": fmt(self.qty),
            "commission": fmt(self.commission),
            "commissionAsset": self.commission_asset,
            "tradeId": self.id,
        }


@dataclass
class Order:
    order_id: int
    client_order_id: str
    spec: SymbolSpec
    side: str
    type: str
    time_in_force: str
    price: Decimal  # zero for market orders, as Binance prints them
    orig_qty: Decimal
    orig_quote_qty: Decimal
    time: int
    plan: FillPlan
    update_time: int = 0
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    status: str = "NEW"
    reserved: Decimal = ZERO  # locked quote (BUY) or base (SELL) still held for this order
    parts_left: int = 1
    maker: bool = False
    # When the next part fills: math.inf waits for fill_pending(), None for the price.
    due: float | None = None
    trade_ids: list[int] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    @property
    def remaining(self) -> Decimal:
        return self.orig_qty - self.executed_qty

    @property
    def reserve_asset(self) -> str:
        return self.spec.quote if self.side == "BUY" else self.spec.base

    def as_json(self) -> Json:
        """As GET /api/v3/order answers it."""
        return {
            "symbol": self.spec.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "price": fmt(self.price),
            "origQty": fmt(self.orig_qty),
            "executedQty": fmt(self.executed_qty),
            "cummulativeQuoteQty": fmt(self.cum_quote),
            "status": self.status,
            "timeInForce": self.time_in_force,
            "type": self.type,
            "side": self.side,
            "stopPrice": fmt(ZERO),
            "icebergQty": fmt(ZERO),
            "time": self.time,
            "updateTime": self.update_time,
            "isWorking": True,
            "workingTime": self.time,
            "origQuoteOrderQty": fmt(self.orig_quote_qty),
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }

    def as_result(self, resp_type: str, fills: Iterable[Trade], at: int) -> Json:
        """As POST /api/v3/order answers it for newOrderRespType ACK, RESULT or FULL."""
        body: Json = {
            "symbol": self.spec.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "transactTime": at,
        }
        if resp_type == "ACK":
            return body
        body.update(
            {
                "price": fmt(self.price),
                "origQty": fmt(self.orig_qty),
                "executedQty": fmt(self.executed_qty),
                "origQuoteOrderQty": fmt(self.orig_quote_qty),
                "cummulativeQuoteQty": fmt(self.cum_quote),
                "status": self.status,
                "timeInForce": self.time_in_force,
                "type": self.type,
                "side": self.side,
                "workingTime": self.time,
                "selfTradePreventionMode": "EXPIRE_MAKER",
            }
        )
        if resp_type == "FULL":
            body["fills"] = [t.as_fill() for t in fills]
        return body
