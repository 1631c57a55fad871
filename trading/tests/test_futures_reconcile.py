# ruff: noqa: F811 (the venue fixtures are imported, and named again as test arguments)
"""Futures reconciliation against the venues' own position and wallet routes.

Binance USDⓈ-M: "Position Information V3" (GET /fapi/v3/positionRisk) and "Account
Information V3" (GET /fapi/v3/account, assets[].walletBalance). Bybit: docs/v5/position/
position.mdx (GET /v5/position/list) and docs/v5/account/wallet-balance.mdx (walletBalance).
The wallet moves by fees and realised PnL only, so after our fills our cash is the venue's
wallet to the cent; a position either side holds that the other does not halts the account.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from marketdata.services.ingestion import candles_ingest
from marketdata.tests.factories import bar
from risk.models import Incident, TradingState
from trading.adapters import adapter_for
from trading.models import ExchangeAccount, Position
from trading.selectors import account_equity, last_price
from trading.services.reconcile import account_reconcile
from trading.tests.test_venue_lookups import (  # noqa: F401 (fixtures)
    Venue,
    account,
    every,
    market,
    server,
    venue,
    venue_book,
)
from trading.tests.venues import buy, sell

FUTURES = ("binance-futures", "bybit-futures")


def by_hand(venue: Venue, server: Any, side: str, qty: str) -> None:
    """An order placed at the venue by someone else (the web site, another program)."""
    venue_book(venue, server).place(
        symbol="BTCUSDT", side=side, type="MARKET", qty=Decimal(qty), price=None, client_id=""
    )


def wallet(account: ExchangeAccount) -> Decimal:
    """The venue's margin wallet as its account route reports it (Bybit's unified wallet
    holds the spot coins' USDT too)."""
    found = adapter_for(account).futures_wallet()
    assert found is not None
    return found


@every(*FUTURES)
def test_a_futures_round_trip_leaves_our_cash_equal_to_the_venues_wallet(
    venue, server, account, market
) -> None:
    start = wallet(account)
    buy(account, market, "0.01", "qtfutures0001")
    assert account_reconcile(account=account).ok, "opening costs the fee only, as at the venue"
    server.set_price("BTCUSDT", "41000")
    sell(account, market, "0.01", "qtfutures0002", "41000")
    report = account_reconcile(account=account)  # settles an answer the venue had not shown

    account.refresh_from_db()
    fees = (Decimal("0.01") * (40000 + 41000) * Decimal("0.0005")).quantize(Decimal("1e-8"))
    assert wallet(account) == start + Decimal("10") - fees
    assert account.cash == wallet(account)
    assert report.ok and report.cash_exchange == account.cash
    assert not Incident.objects.filter(code="PNL_DRIFT").exists()


@every(*FUTURES)
def test_an_open_futures_position_counts_its_unrealised_pnl_not_its_notional(
    venue, server, account, market
) -> None:
    buy(account, market, "0.01", "qtfutures0010")
    assert account_reconcile(account=account).ok
    report = candles_ingest(
        market=market, timeframe="1h", rows=[bar(0, high="42100", close="42000")], source="test"
    )
    assert report.inserted == 1, report.rejected
    price = last_price(market.pk)
    assert price is not None and price != Decimal("40000")
    account.refresh_from_db()
    # A spot account would count 0.01 × price; the futures wallet already holds the margin.
    assert account_equity(account=account) == account.cash + Decimal("0.01") * (price - 40000)


@every(*FUTURES)
def test_a_futures_venue_that_holds_more_than_our_position_halts_the_account_with_an_incident(
    venue, server, account, market
) -> None:
    by_hand(venue, server, "BUY", "0.01")

    report = account_reconcile(account=account)

    assert not report.ok
    assert any(
        "BTC/USDT: our position 0, the exchange 0.01 (it holds more by 0.01)" in m
        for m in report.mismatches
    ), report.mismatches
    assert TradingState.objects.get(account=account).state == TradingState.State.HALTED
    incident = Incident.objects.get(code="RECONCILIATION_FAILED", account=account)
    assert "holds more by 0.01" in incident.detail
    account.refresh_from_db()
    assert account.needs_reconcile and account.cash == Decimal("100000"), "nothing adopted"


@every(*FUTURES)
def test_a_futures_venue_that_holds_less_than_our_position_halts_the_account(
    venue, server, account, market
) -> None:
    buy(account, market, "0.01", "qtfutures0020")
    by_hand(venue, server, "SELL", "0.01")  # closed at the venue behind our back

    report = account_reconcile(account=account)

    assert any("our position 0.01, the exchange 0 (it holds less" in m for m in report.mismatches)
    assert TradingState.objects.get(account=account).state == TradingState.State.HALTED


@every(*FUTURES)
def test_a_funding_sized_wallet_difference_is_adopted_with_a_warning_and_a_larger_one_halts(
    venue, server, account, market
) -> None:
    buy(account, market, "0.01", "qtfutures0030")  # 400 USDT open: allowance 2.01
    book = venue_book(venue, server)
    with book.lock:
        book.wallet -= Decimal("1.5")  # a funding payment
    report = account_reconcile(account=account)
    account.refresh_from_db()
    assert report.ok and account.cash == wallet(account)
    assert Incident.objects.filter(code="PNL_DRIFT", title__contains=account.name).exists()

    with book.lock:
        book.wallet -= Decimal("50")  # a withdrawal, or a fill we never heard of
    report = account_reconcile(account=account)
    assert any("wallet: ours" in m and "holds less by 50.00" in m for m in report.mismatches)
    assert TradingState.objects.get(account=account).state == TradingState.State.HALTED


@every(*FUTURES)
def test_an_operator_adopts_the_futures_venues_position_and_wallet(
    venue, server, account, market
) -> None:
    buy(account, market, "0.01", "qtfutures0040")
    by_hand(venue, server, "BUY", "0.02")
    assert not account_reconcile(account=account).ok

    call_command("account_adopt_holdings", account.name, reason="bought by hand at the venue")

    account.refresh_from_db()
    position = Position.objects.get(account=account, market=market)
    assert position.quantity == Decimal("0.03") and position.average_price == Decimal("40000")
    assert account.cash == wallet(account)
    assert not account.needs_reconcile and account_reconcile(account=account).ok


@every("binance-futures")
def test_a_short_at_the_futures_venue_is_not_adopted_into_a_long_flat_book(
    venue, server, account, market
) -> None:
    by_hand(venue, server, "SELL", "0.01")
    assert not account_reconcile(account=account).ok

    with pytest.raises(CommandError, match="short positions in BTC/USDT"):
        call_command("account_adopt_holdings", account.name, reason="opened by hand")

    assert not Position.objects.filter(account=account).exclude(quantity=0).exists()
    account.refresh_from_db()
    assert account.needs_reconcile
