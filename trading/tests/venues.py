"""Shared set-up for the venue tests: an account reconciled against its loopback venue, the
market at the finest precision, and a market buy through the real engine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal

from marketdata.models import Market
from quantum.bootstrap import trading_defaults_ensure
from trading.adapters.ccxt_adapter import _clients
from trading.models import ExchangeAccount, Order
from trading.services.execution import Intent, decision_execute
from trading.services.reconcile import account_reconcile


def reconciled_account(make: Callable[[], ExchangeAccount], settings) -> Iterator[ExchangeAccount]:  # type: ignore[no-untyped-def]
    """Yield the account `make` builds once it matches its venue (open orders, balances)."""
    settings.QT_EXCHANGE_TIMEOUT_MS = 2000
    _clients.clear()
    trading_defaults_ensure()
    account = make()
    report = account_reconcile(account=account)
    assert report.ok, report.mismatches
    account.refresh_from_db()
    yield account
    _clients.clear()


def finest_market(account: ExchangeAccount, symbol: str) -> Market:
    """The market as finely as the venue allows, so the venue's own precision rounds."""
    market = Market.objects.get(exchange=account.exchange, symbol=symbol)
    market.qty_precision = 8
    market.save(update_fields=["qty_precision"])
    return market


def buy(
    account: ExchangeAccount, market: Market, quantity: str, coid: str, price: str = "40000"
) -> Order | None:
    return decide(account, market, "BUY", quantity, coid, price)


def sell(
    account: ExchangeAccount, market: Market, quantity: str, coid: str, price: str = "40000"
) -> Order | None:
    return decide(account, market, "SELL", quantity, coid, price)


def decide(
    account: ExchangeAccount, market: Market, side: str, quantity: str, coid: str, price: str
) -> Order | None:
    """One decision through the real execution path (risk, submit, fills)."""
    return decision_execute(
        account=account,
        market=market,
        intent=Intent(side=side, quantity=Decimal(quantity), reason="test"),
        client_order_id=coid,
        reference_price=Decimal(price),
        strategy="test",
    )
