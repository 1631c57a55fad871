"""The execution engine against a real exchange protocol: the loopback Binance, real ccxt.

Each test uses a testnet account pointed at the loopback server, so the real adapter, the
real HTTP client and the real signing run; only the exchange itself is ours.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from marketdata.models import Market
from quantum.bootstrap import roles_ensure, trading_defaults_ensure
from risk.models import Incident, RiskDecision, TradingState
from trading.adapters.ccxt_adapter import _clients
from trading.models import ExchangeAccount, Fill, Order, OrderEvent, Signal
from trading.services.accounts import account_keys_set
from trading.services.execution import signal_act
from trading.services.reconcile import account_reconcile, accounts_mark_unreconciled
from trading.services.submission import order_cancel, order_resolve
from trading.tests.factories import SignalFactory, gated_model
from venues.binance import LoopbackExchange

S = Order.Status
KEY = "qt-test-api-key-7a1f"
SECRET = "qt-test-secret-do-not-leak-93b2"


@pytest.fixture
def exchange():
    with LoopbackExchange(
        port=0, seed=7, api_key=KEY, api_secret=SECRET, symbols=["BTCUSDT"]
    ) as ex:
        ex.set_price("BTCUSDT", "40000")
        yield ex


@pytest.fixture
def account(db, exchange, settings, market: Market):
    settings.QT_EXCHANGE_TIMEOUT_MS = 1500
    _clients.clear()
    trading_defaults_ensure()
    account = ExchangeAccount.objects.create(
        name="loopback",
        exchange=market.exchange,
        mode=ExchangeAccount.Mode.TESTNET,
        cash=Decimal("100000"),
        starting_cash=Decimal("100000"),
        api_url_override=exchange.url,
    )
    account_keys_set(account=account, api_key=KEY, api_secret=SECRET, actor="alice")
    report = account_reconcile(account=account)
    assert report.ok, report.mismatches
    account.refresh_from_db()
    yield account
    _clients.clear()


def buy_signal(market: Market) -> Signal:
    return SignalFactory(
        market=market,
        action=Signal.Action.BUY,
        price=Decimal("40000"),
        model_version=gated_model(),
    )


def our_orders(exchange: LoopbackExchange) -> list[dict]:
    return [o for o in exchange.orders() if str(o.get("clientOrderId", "")).startswith("qt")]


def test_a_testnet_account_trades_through_the_exchange_by_client_order_id(
    account, exchange, market
) -> None:
    order = signal_act(account=account, signal=buy_signal(market))

    assert order is not None and order.status == S.FILLED
    assert [o["clientOrderId"] for o in our_orders(exchange)] == [order.client_order_id]
    fill = Fill.objects.get(order=order)
    assert fill.trade_id == str(exchange.trades()[0]["id"])
    assert order.exchange_order_id == str(our_orders(exchange)[0]["orderId"])
    # 100000 × 0.2 = 20000, capped by max_position_notional 5000 → 0.125 BTC
    assert order.quantity == Decimal("0.125")
    assert list(order.events.values_list("to_status", flat=True)) == [
        S.SUBMITTED,
        S.ACCEPTED,
        S.FILLED,
    ]


def test_a_timed_out_submit_stays_in_flight_and_resolves_without_a_second_order(
    account, exchange, market
) -> None:
    exchange.inject("accept_then_timeout", endpoint="POST /api/v3/order", count=1, mode="drop")
    signal = buy_signal(market)

    order = signal_act(account=account, signal=signal)

    assert order.status == S.SUBMITTED, "an unclear outcome leaves the order in flight"
    assert len(our_orders(exchange)) == 1, "the exchange did take it"
    # The task is redelivered: it finds the same order and sends nothing new.
    assert signal_act(account=account, signal=signal) == order
    assert len(our_orders(exchange)) == 1

    order = order_resolve(order=order)

    assert order.status == S.FILLED
    assert Fill.objects.filter(order=order).count() == 1
    assert Order.objects.count() == 1
    assert OrderEvent.objects.filter(order=order, cause="found at exchange").exists()


def test_a_5xx_before_the_exchange_took_the_order_is_rejected_only_after_the_grace(
    account, exchange, market
) -> None:
    exchange.inject("http_5xx", endpoint="POST /api/v3/order", count=1, status=503)

    order = signal_act(account=account, signal=buy_signal(market))
    assert order.status == S.SUBMITTED
    assert our_orders(exchange) == []

    assert order_resolve(order=order).status == S.SUBMITTED, "too early to call it"
    Order.objects.filter(pk=order.pk).update(submitted_at=timezone.now() - timedelta(minutes=5))
    order.refresh_from_db()
    assert order_resolve(order=order).status == S.REJECTED
    assert our_orders(exchange) == []


def test_partial_fills_are_recorded_once_each_by_exchange_trade_id(
    account, exchange, market
) -> None:
    exchange.inject("partial_fill", endpoint="POST /api/v3/order", count=1, parts=3)

    order = signal_act(account=account, signal=buy_signal(market))
    order = order_resolve(order=order)
    order = order_resolve(order=order)  # asking again changes nothing

    assert order.status == S.FILLED
    fills = Fill.objects.filter(order=order)
    assert fills.count() == 3
    assert sorted(f.trade_id for f in fills) == sorted(str(t["id"]) for t in exchange.trades())
    assert sum(f.quantity for f in fills) == order.quantity


def test_a_429_backs_every_worker_off_and_opens_an_incident(account, exchange, market) -> None:
    exchange.inject("rate_limit_429", endpoint="POST /api/v3/order", count=1)

    order = signal_act(account=account, signal=buy_signal(market))

    assert order.status == S.SUBMITTED
    assert Incident.objects.filter(code="EXCHANGE_RATE_LIMIT").exists()
    seen = len(exchange.requests())
    assert order_resolve(order=order).status == S.SUBMITTED
    assert len(exchange.requests()) == seen, "nobody calls the exchange during the back-off"


def test_a_decision_during_a_back_off_is_denied_exchange_unavailable_and_nothing_is_sent(
    account, exchange, market
) -> None:
    exchange.inject("rate_limit_429", endpoint="POST /api/v3/order", count=1)
    first = signal_act(account=account, signal=buy_signal(market))
    assert first.status == S.SUBMITTED  # the 429 started a back-off for every worker
    seen = len(exchange.requests())
    _clients.clear()  # another worker (or this one restarted): it must load the markets

    assert signal_act(account=account, signal=buy_signal(market)) is None

    denial = RiskDecision.objects.get(approved=False)
    assert denial.code == "EXCHANGE_UNAVAILABLE" and "backing off" in denial.detail
    assert Order.objects.count() == 1
    assert len(exchange.requests()) == seen


def test_an_order_we_never_made_halts_the_account_fail_closed(account, exchange, market) -> None:
    from trading.adapters.ccxt_adapter import ccxt_for_account

    ccxt_for_account(account).create_order(
        "BTC/USDT", "limit", "buy", 0.01, 1000, {"newClientOrderId": "qt-stranger-1"}
    )

    report = account_reconcile(account=account)

    assert not report.ok
    assert "qt-stranger-1" in report.mismatches[0]
    assert TradingState.objects.get(account=account).state == TradingState.State.HALTED
    assert Incident.objects.filter(code="RECONCILIATION_FAILED", severity="critical").exists()


def test_an_unreachable_exchange_at_start_up_keeps_the_account_from_trading(
    account, exchange, market
) -> None:
    accounts_mark_unreconciled()
    exchange.close()
    account.refresh_from_db()

    report = account_reconcile(account=account)
    assert not report.ok
    account.refresh_from_db()
    assert account.needs_reconcile

    assert signal_act(account=account, signal=buy_signal(market)) is None
    assert RiskDecision.objects.filter(code="NOT_RECONCILED").exists()
    assert not Order.objects.exists()


def test_canceling_a_resting_order_cancels_it_at_the_exchange(account, exchange, market) -> None:
    order = Order.objects.create(
        account=account,
        market=market,
        client_order_id="qtrestinglimit01",
        side="BUY",
        order_type="limit",
        quantity=Decimal("0.01"),
        price=Decimal("30000"),
    )
    from trading.services.submission import order_submit

    order = order_submit(order=order, reference_price=Decimal("40000"))
    assert order.status == S.ACCEPTED

    order = order_cancel(order=order, cause="operator")

    assert order.status == S.CANCELED
    assert our_orders(exchange)[0]["status"] == "CANCELED"


def test_the_api_secret_never_reaches_logs_or_pages(
    account, exchange, market, caplog, client_as, alice
) -> None:
    caplog.set_level(logging.DEBUG)
    roles_ensure()  # operators' admin permissions, as the first start grants them
    signal_act(account=account, signal=buy_signal(market))
    account.refresh_from_db()

    pages = [
        client_as(alice).get(f"/admin/trading/exchangeaccount/{account.pk}/change/"),
        client_as(alice).get("/admin/trading/exchangeaccount/"),
        client_as(alice).get("/"),
        client_as(alice).get("/api/v1/orders/"),
    ]
    assert [p.status_code for p in pages] == [200, 200, 200, 200]
    text = caplog.text + "".join(p.content.decode() for p in pages)
    assert SECRET not in text and KEY not in text
    assert SECRET not in account.api_secret_enc and KEY not in account.api_key_enc
    assert account.api_key_masked == "…7a1f"


def test_an_ungated_model_never_drives_a_testnet_account(account, exchange, market) -> None:
    from trading.tests.factories import ModelVersionFactory

    ungated = ModelVersionFactory(is_active=True, status="rejected")
    signal = SignalFactory(
        market=market, action=Signal.Action.BUY, price=Decimal("40000"), model_version=ungated
    )

    assert signal_act(account=account, signal=signal) is None
    assert RiskDecision.objects.get(code="MODEL_NOT_APPROVED").approved is False
    assert our_orders(exchange) == []
