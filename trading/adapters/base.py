"""What every exchange adapter returns, and the two ways a submit can fail."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True)
class FillReport:
    trade_id: str
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_currency: str
    filled_at: datetime


@dataclass(frozen=True)
class OrderSnapshot:
    """The exchange's view of one order."""

    client_order_id: str
    exchange_order_id: str
    status: str  # one of Order.Status
    filled_quantity: Decimal
    fills: list[FillReport] = field(default_factory=list)


@dataclass(frozen=True)
class SubmitResult:
    exchange_order_id: str
    fills: list[FillReport]
    status: str = "accepted"


class OrderRejected(Exception):
    """The exchange said no: the order does not exist there and will not."""


class NotSent(Exception):
    """Refused before anything left this machine (our shared rate limit, a back-off)."""


class UnclearOutcome(Exception):
    """Timeout, disconnect, 5xx or 429: the order may or may not exist on the exchange.

    It stays in flight and is resolved by asking the exchange for its client order id —
    never by sending it again under a new id.
    """
