"""The pre-trade checks as pure Decimal arithmetic: an order, a book, limits -> deny or pass.

No ORM here: `risk.services.checks` reads the book from the database (under the account's
lock) and stores the outcome. Kept pure so the property tests can throw anything at it.

Exposure counts open orders at their worst case: a market's exposure is the larger of
"every open buy fills" and "every open sell fills", so orders still in flight can never
add up past a limit that each of them passed alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

ZERO = Decimal("0")
SIDES = ("BUY", "SELL")
ACTIVE, REDUCING, HALTED = "ACTIVE", "REDUCING", "HALTED"

# Every denial code, in the order the checks run (docs/RISK.md explains each).
CODES = (
    "INVALID_SIDE",
    "INVALID_QUANTITY",
    "INVALID_PRICE",
    "TRADING_HALTED",
    "TRADING_REDUCING",
    "FLATTEN_NOT_REDUCING",
    "RATE_LIMITED",
    "QUANTITY_PRECISION",
    "MIN_QUANTITY",
    "MAX_QUANTITY",
    "MIN_NOTIONAL",
    "SHORT_NOT_ALLOWED",
    "MAX_DAILY_LOSS",
    "MAX_DRAWDOWN",
    "MAX_NOTIONAL",
    "MAX_POSITION_NOTIONAL",
    "MAX_GROSS_EXPOSURE",
    "MAX_LEVERAGE",
    "MAX_OPEN_POSITIONS",
)


def num(value: Decimal) -> str:
    """A limit as a person writes it: 5000, 0.2, 1.5 (no trailing zeros, no exponent)."""
    return format(Decimal(value).normalize(), "f")


@dataclass(frozen=True)
class Denial:
    code: str
    detail: str


@dataclass(frozen=True)
class Limits:
    max_order_notional: Decimal
    max_position_notional: Decimal
    max_gross_exposure: Decimal
    max_leverage: Decimal
    max_open_positions: int
    max_daily_loss: Decimal
    max_drawdown: Decimal  # fraction of peak equity
    max_orders_per_window: int
    throttle_window_seconds: int = 60
    qty_precision: int = 8  # the market's: quantities are multiples of 10**-qty_precision
    min_quantity: Decimal = ZERO
    max_quantity: Decimal | None = None
    min_notional: Decimal = ZERO


@dataclass(frozen=True)
class Holding:
    """One market of the account: signed position (negative = short), open orders, mark."""

    quantity: Decimal = ZERO
    pending_buy: Decimal = ZERO  # unfilled quantity of open BUY orders
    pending_sell: Decimal = ZERO
    mark: Decimal = ZERO  # last price

    @property
    def is_open(self) -> bool:
        return self.quantity != 0 or self.pending_buy > 0 or self.pending_sell > 0

    def worst_quantity(self, buy: Decimal = ZERO, sell: Decimal = ZERO) -> Decimal:
        """|position| if every open buy (plus `buy`) fills, or every open sell (plus `sell`)."""
        return max(
            abs(self.quantity + self.pending_buy + buy),
            abs(self.quantity - self.pending_sell - sell),
        )


@dataclass(frozen=True)
class ScopeState:
    scope: str  # "global" or "account"
    state: str = ACTIVE
    kill_switch: bool = False
    reason: str = ""


@dataclass(frozen=True)
class Book:
    """What the checks need to know about the account at the moment of the order."""

    holdings: dict[int, Holding] = field(default_factory=dict)  # by market id
    equity: Decimal = ZERO
    peak_equity: Decimal = ZERO
    day_start_equity: Decimal = ZERO
    recent_orders: int = 0  # approved in the current throttle window
    states: tuple[ScopeState, ...] = ()
    flatten_pending: bool = False
    allow_short: bool = False

    @property
    def daily_loss(self) -> Decimal:
        return max(self.day_start_equity - self.equity, ZERO)

    @property
    def drawdown(self) -> Decimal:
        if self.peak_equity <= 0:
            return ZERO
        return max(self.peak_equity - self.equity, ZERO) / self.peak_equity


@dataclass(frozen=True)
class OrderRequest:
    market_id: int
    side: str
    quantity: Decimal
    price: Decimal
    flatten: bool = False

    @property
    def notional(self) -> Decimal:
        return self.quantity * self.price


def reduces(order: OrderRequest, holding: Holding) -> bool:
    """True if the order can only shrink the position, even if every open order on its side
    fills first (so two reducing orders can never together flip the position)."""
    if order.quantity <= 0:
        return False
    if order.side == "SELL":
        return order.quantity <= holding.quantity - holding.pending_sell
    if order.side == "BUY":
        return order.quantity <= -holding.quantity - holding.pending_buy
    return False


def gross_exposure(holdings: dict[int, Holding], order: OrderRequest | None = None) -> Decimal:
    """Sum over markets of worst-case |position| × mark, with `order` added to its market."""
    total = ZERO
    for market_id, h in holdings.items():
        if order is not None and market_id == order.market_id:
            continue
        total += h.worst_quantity() * h.mark
    if order is not None:
        h = holdings.get(order.market_id, Holding())
        buy, sell = (order.quantity, ZERO) if order.side == "BUY" else (ZERO, order.quantity)
        total += h.worst_quantity(buy, sell) * order.price
    return total


def _state_denial(order: OrderRequest, book: Book, reducing: bool) -> Denial | None:
    for s in book.states:
        if s.kill_switch or s.state == HALTED:
            if order.flatten and book.flatten_pending and reducing:
                continue  # the operator asked for exactly this order: closing a position
            why = "kill switch" if s.kill_switch else "halted"
            return Denial(
                "TRADING_HALTED", f"{s.scope} trading is halted ({why}): {s.reason or '-'}"
            )
        if s.state == REDUCING and not reducing:
            return Denial("TRADING_REDUCING", f"{s.scope} trading only allows reducing orders")
    return None


def evaluate(order: OrderRequest, book: Book, limits: Limits) -> Denial | None:
    """Run every check in order; the first failure denies, None approves."""
    if order.side not in SIDES:
        return Denial("INVALID_SIDE", f"side must be BUY or SELL, not {order.side!r}")
    if order.quantity <= 0:
        return Denial("INVALID_QUANTITY", "quantity must be positive")
    if order.price <= 0:
        return Denial("INVALID_PRICE", "price must be positive")
    holding = book.holdings.get(order.market_id, Holding())
    reducing = reduces(order, holding)

    denial = _state_denial(order, book, reducing)
    if denial is not None:
        return denial
    if order.flatten and not reducing:
        return Denial("FLATTEN_NOT_REDUCING", "a flatten order must reduce the position")
    if book.recent_orders >= limits.max_orders_per_window:
        return Denial(
            "RATE_LIMITED",
            f"{book.recent_orders} orders in the last {limits.throttle_window_seconds}s "
            f"(max {limits.max_orders_per_window})",
        )

    step = Decimal(1).scaleb(-limits.qty_precision)
    if order.quantity % step != 0:
        return Denial(
            "QUANTITY_PRECISION",
            f"quantity {num(order.quantity)} is not a multiple of {num(step)}",
        )
    if order.quantity < limits.min_quantity:
        return Denial(
            "MIN_QUANTITY", f"quantity {num(order.quantity)} < {num(limits.min_quantity)}"
        )
    if limits.max_quantity is not None and order.quantity > limits.max_quantity:
        return Denial(
            "MAX_QUANTITY", f"quantity {num(order.quantity)} > {num(limits.max_quantity)}"
        )
    notional = order.notional
    if notional < limits.min_notional:
        return Denial("MIN_NOTIONAL", f"notional {notional:.2f} below {num(limits.min_notional)}")

    if reducing:
        # Reducing orders only lower exposure; the limits below must never trap a position.
        return None

    if order.side == "SELL" and not book.allow_short:
        return Denial(
            "SHORT_NOT_ALLOWED",
            f"sell {num(order.quantity)} exceeds the free position "
            f"{num(holding.quantity - holding.pending_sell)} (spot account)",
        )
    if book.daily_loss >= limits.max_daily_loss:
        return Denial(
            "MAX_DAILY_LOSS",
            f"daily loss {book.daily_loss:.2f} reached the limit {num(limits.max_daily_loss)}",
        )
    if book.peak_equity > 0 and book.drawdown >= limits.max_drawdown:
        return Denial(
            "MAX_DRAWDOWN",
            f"drawdown {book.drawdown:.2%} from peak {book.peak_equity:.2f} "
            f"reached the limit {limits.max_drawdown:.2%}",
        )
    if notional > limits.max_order_notional:
        return Denial(
            "MAX_NOTIONAL", f"order notional {notional:.2f} > {num(limits.max_order_notional)}"
        )
    buy, sell = (order.quantity, ZERO) if order.side == "BUY" else (ZERO, order.quantity)
    position_notional = holding.worst_quantity(buy, sell) * order.price
    if position_notional > limits.max_position_notional:
        return Denial(
            "MAX_POSITION_NOTIONAL",
            f"position would be {position_notional:.2f} > {num(limits.max_position_notional)}",
        )
    gross = gross_exposure(book.holdings, order)
    if gross > limits.max_gross_exposure:
        return Denial(
            "MAX_GROSS_EXPOSURE",
            f"gross exposure would be {gross:.2f} > {num(limits.max_gross_exposure)}",
        )
    if book.equity <= 0 or gross > limits.max_leverage * book.equity:
        leverage = f"{gross / book.equity:.2f}x" if book.equity > 0 else "unbounded"
        return Denial(
            "MAX_LEVERAGE",
            f"leverage would be {leverage} > {num(limits.max_leverage)}x "
            f"(equity {book.equity:.2f})",
        )
    if not holding.is_open:
        open_count = sum(1 for h in book.holdings.values() if h.is_open)
        if open_count >= limits.max_open_positions:
            return Denial(
                "MAX_OPEN_POSITIONS",
                f"{open_count} positions open (max {limits.max_open_positions})",
            )
    return None
