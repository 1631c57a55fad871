"""Positions, cash and round-trip trades, updated from fills (long/flat for now).

Spot cash moves by the whole notional of each fill. A futures account's cash is its margin
wallet, as the venue keeps it (Binance USDⓈ-M "Account Information V3" walletBalance,
Bybit docs/v5/account/wallet-balance.mdx walletBalance): opening a position costs only the
fee, closing it books the realised PnL less the fee, and the open position's worth is its
unrealised PnL (`trading.selectors.account_equity`).
"""

from __future__ import annotations

from decimal import Decimal

from django.db.models import F

from trading.lib.fills import quantize
from trading.models import ExchangeAccount, Fill, Position, Trade


def position_apply_fill(*, fill: Fill) -> Position:
    """Apply one fill to its position and account cash; a position back at zero is a Trade."""
    order = fill.order
    position, _ = Position.objects.select_for_update().get_or_create(
        account=order.account, market=order.market
    )
    notional = fill.price * fill.quantity
    futures = order.account.market_type == ExchangeAccount.MarketType.FUTURES
    position.fees_paid += fill.fee
    if order.side == "BUY":
        total = position.quantity + fill.quantity
        position.average_price = quantize(
            (position.average_price * position.quantity + notional) / total, 8
        )
        if position.quantity == 0:
            position.opened_at = fill.filled_at
        position.quantity = total
        position.round_quantity += fill.quantity
        cash_change = -fill.fee if futures else -(notional + fill.fee)
    else:
        if fill.quantity > position.quantity:
            raise ValueError(
                f"sell of {fill.quantity} exceeds position {position.quantity} (long/flat only)"
            )
        realised = (fill.price - position.average_price) * fill.quantity
        position.quantity -= fill.quantity
        position.round_exit_notional += notional
        position.round_gross_pnl += realised
        cash_change = (realised if futures else notional) - fill.fee
        if position.quantity == 0:
            _trade_close(position, fill)
    position.save()
    ExchangeAccount.objects.filter(pk=order.account_id).update(cash=F("cash") + cash_change)
    return position


def _trade_close(position: Position, fill: Fill) -> None:
    """Book the whole round trip (every entry and partial exit) as one Trade."""
    quantity = position.round_quantity
    pnl = quantize(position.round_gross_pnl - position.fees_paid, 8)
    Trade.objects.create(
        account_id=position.account_id,
        market_id=position.market_id,
        quantity=quantity,
        entry_time=position.opened_at or fill.filled_at,
        exit_time=fill.filled_at,
        entry_price=position.average_price,
        exit_price=quantize(position.round_exit_notional / quantity, 8),
        fees=position.fees_paid,
        pnl=pnl,
    )
    position.realized_pnl += pnl
    position.fees_paid = Decimal("0")
    position.round_quantity = Decimal("0")
    position.round_exit_notional = Decimal("0")
    position.round_gross_pnl = Decimal("0")
    position.average_price = Decimal("0")
    position.opened_at = None
