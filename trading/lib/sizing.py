"""Position sizing: pure arithmetic on Decimals. Every method is capped the same way."""

from __future__ import annotations

from decimal import Decimal

from trading.lib.fills import quantize


def _capped(
    notional: Decimal, *, equity: Decimal, max_notional: Decimal, max_leverage: Decimal
) -> Decimal:
    """No order beyond the notional limit, nor beyond equity × leverage."""
    return max(Decimal(0), min(notional, max_notional, equity * max_leverage))


def fixed_fraction_quantity(
    *,
    equity: Decimal,
    fraction: Decimal,
    price: Decimal,
    qty_precision: int,
    max_notional: Decimal,
    max_leverage: Decimal = Decimal(1),
) -> Decimal:
    """Quantity worth `fraction` of equity, capped, rounded down to the precision."""
    if price <= 0 or equity <= 0:
        return Decimal("0")
    notional = _capped(
        equity * fraction, equity=equity, max_notional=max_notional, max_leverage=max_leverage
    )
    return quantize(notional / price, qty_precision)


def atr_risk_quantity(
    *,
    equity: Decimal,
    risk_fraction: Decimal,
    atr: Decimal,
    atr_multiple: Decimal,
    price: Decimal,
    qty_precision: int,
    max_notional: Decimal,
    max_leverage: Decimal = Decimal(1),
) -> Decimal:
    """Volatility targeting: lose at most `risk_fraction` of equity if price moves
    `atr_multiple` ATRs against the position; capped and rounded down like the others."""
    if price <= 0 or equity <= 0 or atr <= 0 or atr_multiple <= 0:
        return Decimal("0")
    quantity = equity * risk_fraction / (atr * atr_multiple)
    notional = _capped(
        quantity * price, equity=equity, max_notional=max_notional, max_leverage=max_leverage
    )
    return quantize(notional / price, qty_precision)
