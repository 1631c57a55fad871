"""Reads shared by pages and the API."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet

from marketdata.models import Candle, Market
from trading.models import ExchangeAccount, Fill, Order, Position, Signal


def last_price(market_id: int, timeframe: str | None = None) -> Decimal | None:
    qs = Candle.objects.filter(market_id=market_id)
    if timeframe:
        qs = qs.filter(timeframe=timeframe)
    return qs.order_by("-open_time").values_list("close", flat=True).first()


def account_equity(*, account: ExchangeAccount) -> Decimal:
    """Cash plus open positions marked at the last close: their worth on spot, their
    unrealised PnL on futures (where cash is the margin wallet, see services.positions)."""
    # Cash is read from the row, not the object: fills change it with F() updates, so an
    # account loaded before a fill (the breaker's after-fill equity check holds one) is stale.
    equity = ExchangeAccount.objects.values_list("cash", flat=True).get(pk=account.pk)
    futures = account.market_type == ExchangeAccount.MarketType.FUTURES
    for position in Position.objects.filter(account=account).exclude(quantity=0):
        price = last_price(position.market_id) or position.average_price
        cost = position.average_price if futures else Decimal(0)
        equity += position.quantity * (price - cost)
    return equity


def positions_with_pnl(*, account: ExchangeAccount | None = None) -> list[Position]:
    qs = Position.objects.select_related("market", "account").order_by("market__symbol")
    if account is not None:
        qs = qs.filter(account=account)
    positions = list(qs)
    for p in positions:
        price = last_price(p.market_id)
        p.last_price = price  # type: ignore[attr-defined]
        p.unrealized_pnl = (  # type: ignore[attr-defined]
            (price - p.average_price) * p.quantity if price and p.quantity else 0
        )
    return positions


def signals_recent(*, market_id: int | None = None) -> QuerySet[Signal]:
    qs = Signal.objects.select_related("market", "model_version")
    return qs.filter(market_id=market_id) if market_id else qs


def fills_recent(*, market_id: int | None = None) -> QuerySet[Fill]:
    qs = Fill.objects.select_related("order", "order__market", "order__account")
    return qs.filter(order__market_id=market_id) if market_id else qs


def orders_recent(*, market_id: int | None = None) -> QuerySet[Order]:
    qs = Order.objects.select_related("market", "account", "signal")
    return qs.filter(market_id=market_id) if market_id else qs


def market_atr(*, market: Market, timeframe: str, until: datetime, period: int = 14) -> Decimal:
    """ATR (TA-Lib) over the bars up to `until`, as a Decimal price distance."""
    import talib

    from marketdata.selectors import candles_frame

    bars = candles_frame(market=market, timeframe=timeframe, until=until, last=period * 3)
    if len(bars) <= period:
        return Decimal(0)
    values = talib.ATR(
        bars["high"].to_numpy(), bars["low"].to_numpy(), bars["close"].to_numpy(), period
    )
    last = values[-1]
    return Decimal(str(round(float(last), 8))) if last == last else Decimal(0)


def reconcile_problems(account_ids: list[int]) -> dict[int, Any]:
    """The open reconciliation incident of each account that has one (newest first)."""
    from risk.models import Incident

    rows = Incident.objects.filter(
        account_id__in=account_ids,
        code="RECONCILIATION_FAILED",
        status__in=[Incident.Status.OPEN, Incident.Status.ACKNOWLEDGED],
    ).order_by("-pk")
    found: dict[int, Any] = {}
    for incident in rows:
        if incident.account_id is not None:
            found.setdefault(incident.account_id, incident)
    return found
