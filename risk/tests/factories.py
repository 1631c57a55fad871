"""Helpers that put an account into a known state using the trading models only."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from itertools import count

from django.utils import timezone

from marketdata.models import Candle, Market
from risk.models import RiskLimits
from trading.models import ExchangeAccount, Order, Position

PRICE = Decimal("40000")
_ids = count(1)
_bars = count(1)


def limits(**fields: object) -> RiskLimits:
    """Set fields on the global limits directly (tests only; operators use the service)."""
    row, _ = RiskLimits.objects.get_or_create(account=None)
    for name, value in fields.items():
        setattr(row, name, value)
    row.save()
    return row


def generous(**overrides: object) -> RiskLimits:
    """Limits that none of a test's orders reach, except those it sets."""
    values: dict[str, object] = {
        "max_order_notional": Decimal("1000000"),
        "max_position_notional": Decimal("1000000"),
        "max_gross_exposure": Decimal("1000000"),
        "max_leverage": Decimal("100"),
        "max_open_positions": 100,
        "max_daily_loss": Decimal("1000000"),
        "max_drawdown": Decimal("0.99"),
        "max_orders_per_window": 1000,
    }
    values.update(overrides)
    return limits(**values)


def hold(
    account: ExchangeAccount, market: Market, quantity: str | Decimal, price: Decimal = PRICE
) -> Position:
    position, _ = Position.objects.update_or_create(
        account=account,
        market=market,
        defaults={"quantity": Decimal(quantity), "average_price": price},
    )
    return position


def mark(market: Market, price: Decimal | str) -> Candle:
    """A newer bar closing at `price`: the mark price for equity and exposure."""
    price = Decimal(price)
    return Candle.objects.create(
        market=market,
        timeframe="1h",
        open_time=timezone.now().replace(microsecond=0) + timedelta(hours=next(_bars)),
        open=price,
        high=price,
        low=price,
        close=price,
        volume=Decimal("1"),
    )


def open_order(
    account: ExchangeAccount,
    market: Market,
    side: str,
    quantity: str | Decimal,
    status: str = Order.Status.ACCEPTED,
    filled: str | Decimal = "0",
) -> Order:
    return Order.objects.create(
        account=account,
        market=market,
        side=side,
        quantity=Decimal(quantity),
        filled_quantity=Decimal(filled),
        status=status,
        client_order_id=f"test-{next(_ids)}",
    )
