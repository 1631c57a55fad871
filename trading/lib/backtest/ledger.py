"""One market's position, cash and round trips, from fills — the paper ledger's arithmetic.

Mirrors `trading.services.positions.position_apply_fill` (long side) exactly, so the
parity test can compare trades to the cent; shorts are the mirror image.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from trading.lib.fills import quantize

ZERO = Decimal("0")


@dataclass(frozen=True, slots=True)
class FillRecord:
    order: int  # sequence number of the order in the run
    time: datetime
    side: str
    price: Decimal
    quantity: Decimal
    fee: Decimal


@dataclass(frozen=True, slots=True)
class TradeRecord:
    """A closed round trip, as `trading.models.Trade` stores it."""

    side: str  # LONG / SHORT
    quantity: Decimal
    entry_time: datetime
    exit_time: datetime
    entry_price: Decimal
    exit_price: Decimal
    fee: Decimal
    pnl: Decimal

    def as_json(self) -> dict[str, str]:
        return {
            "entry_time": self.entry_time.isoformat().replace("+00:00", "Z"),
            "exit_time": self.exit_time.isoformat().replace("+00:00", "Z"),
            "side": self.side,
            "qty": str(self.quantity),
            "entry_price": str(self.entry_price),
            "exit_price": str(self.exit_price),
            "fee": str(self.fee),
            "pnl": str(self.pnl),
        }


class Ledger:
    def __init__(self, cash: Decimal) -> None:
        self.cash = cash
        self.quantity = ZERO  # signed: negative is short
        self.average_price = ZERO
        self.fees_paid = ZERO
        self.round_quantity = ZERO
        self.round_exit_notional = ZERO
        self.round_gross_pnl = ZERO
        self.opened_at: datetime | None = None

    def apply(
        self, side: str, price: Decimal, quantity: Decimal, fee: Decimal, at: datetime
    ) -> TradeRecord | None:
        """Apply one fill; a position back at zero returns its round trip."""
        notional = price * quantity
        self.fees_paid += fee
        self.cash += -(notional + fee) if side == "BUY" else notional - fee
        opening = (side == "BUY" and self.quantity >= 0) or (side == "SELL" and self.quantity <= 0)
        if opening:
            held = abs(self.quantity)
            total = held + quantity
            self.average_price = quantize((self.average_price * held + notional) / total, 8)
            if held == 0:
                self.opened_at = at
            self.quantity += quantity if side == "BUY" else -quantity
            self.round_quantity += quantity
            return None
        if quantity > abs(self.quantity):
            raise ValueError(f"{side} of {quantity} exceeds position {self.quantity}")
        direction = 1 if self.quantity > 0 else -1
        self.quantity += quantity if side == "BUY" else -quantity
        self.round_exit_notional += notional
        self.round_gross_pnl += (price - self.average_price) * quantity * direction
        if self.quantity != 0:
            return None
        trade = TradeRecord(
            side="LONG" if direction > 0 else "SHORT",
            quantity=self.round_quantity,
            entry_time=self.opened_at or at,
            exit_time=at,
            entry_price=self.average_price,
            exit_price=quantize(self.round_exit_notional / self.round_quantity, 8),
            fee=self.fees_paid,
            pnl=quantize(self.round_gross_pnl - self.fees_paid, 8),
        )
        self.fees_paid = self.round_quantity = ZERO
        self.round_exit_notional = self.round_gross_pnl = self.average_price = ZERO
        self.opened_at = None
        return trade
