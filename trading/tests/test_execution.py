from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries

from marketdata.models import Market
from marketdata.services.sync import market_register
from risk.models import AuditEvent, RiskDecision, RiskLimits
from risk.services.state import kill_switch_set
from trading.models import ExchangeAccount, Fill, Order, Position, Signal, Trade
from trading.services.execution import STRATEGY, signal_act, signal_execute
from trading.services.ids import client_order_id
from trading.services.orders import order_intent_create
from trading.services.submission import orders_resolve_in_flight
from trading.tests.factories import CandleFactory, SignalFactory

S = Order.Status


@pytest.fixture
def account(paper_account: ExchangeAccount) -> ExchangeAccount:
    # Pinned so the figures below do not depend on QT_PAPER_CASH / QT_FEE_BPS / ...
    paper_account.cash = Decimal("10000")
    paper_account.fee_bps = Decimal("10")
    paper_account.slippage_bps = Decimal("5")
    paper_account.save()
    limits = RiskLimits.objects.get(account=None)
    limits.position_fraction = Decimal("0.2")
    limits.max_position_notional = Decimal("5000")
    limits.max_open_positions = 2
    limits.save()
    return paper_account


def audit_actions(obj_type: str, obj_id: int) -> list[str]:
    return list(
        AuditEvent.objects.filter(object_type=obj_type, object_id=str(obj_id))
        .order_by("seq")
        .values_list("action", flat=True)
    )


def test_it_buys_a_fraction_of_equity_when_flat(account: ExchangeAccount, market: Market) -> None:
    signal = SignalFactory(market=market, action=Signal.Action.BUY, price=Decimal("43210.55"))

    order = signal_act(account=account, signal=signal)

    assert order is not None
    assert Order.objects.get() == order
    # 10000 × 0.2 = 2000; 2000 / 43210.55 = 0.046285... → 0.04628 (5 places, down)
    assert order.quantity == Decimal("0.04628")
    assert (order.side, order.status, order.signal_id) == ("BUY", S.FILLED, signal.pk)
    assert order.client_order_id == client_order_id(
        strategy=STRATEGY,
        account_id=account.pk,
        market_id=market.pk,
        decision=f"signal:{signal.pk}",
    )
    fill = Fill.objects.get()
    assert fill.order == order
    assert fill.price == Decimal("43232.16")  # 43210.55 × 1.0005 = 43232.155275
    assert Position.objects.get(account=account, market=market).quantity == Decimal("0.04628")
    decision = RiskDecision.objects.get()
    assert (decision.approved, decision.code, decision.signal) == (True, "", signal)


def test_it_marks_open_positions_at_the_last_close_when_sizing(
    account: ExchangeAccount, market: Market
) -> None:
    eth = market_register(exchange_code="binance", symbol="ETH/USDT")
    account.cash = Decimal("9000")
    account.save()
    Position.objects.create(
        account=account, market=eth, quantity=Decimal("1"), average_price=Decimal("1500")
    )
    CandleFactory(market=eth, close=Decimal("3000"))
    signal = SignalFactory(market=market, price=Decimal("40000"))

    order = signal_act(account=account, signal=signal)

    # equity = 9000 + 1 ETH × 3000 (last close, not the 1500 paid) = 12000
    # 12000 × 0.2 = 2400; 2400 / 40000 = 0.06
    assert order is not None
    assert order.quantity == Decimal("0.06000")


def test_it_does_not_order_twice_for_a_redelivered_signal(
    account: ExchangeAccount, market: Market
) -> None:
    signal = SignalFactory(market=market)
    first = signal_act(account=account, signal=signal)
    counts = (
        Order.objects.count(),
        Fill.objects.count(),
        RiskDecision.objects.count(),
        AuditEvent.objects.count(),
    )

    again = signal_act(account=account, signal=signal)

    assert again is not None and first is not None
    assert again.pk == first.pk
    assert (
        Order.objects.count(),
        Fill.objects.count(),
        RiskDecision.objects.count(),
        AuditEvent.objects.count(),
    ) == counts


def test_it_submits_an_intent_that_was_persisted_but_never_sent(
    account: ExchangeAccount, market: Market
) -> None:
    signal = SignalFactory(market=market)
    coid = client_order_id(
        strategy=STRATEGY,
        account_id=account.pk,
        market_id=market.pk,
        decision=f"signal:{signal.pk}",
    )
    # A worker died between persisting the intent and submitting it.
    intent = order_intent_create(
        account_id=account.pk,
        market_id=market.pk,
        signal_id=signal.pk,
        side="BUY",
        quantity=Decimal("0.05"),
        client_order_id=coid,
        strategy=STRATEGY,
        reason="crashed",
    )

    order = signal_act(account=account, signal=signal)

    assert order is not None
    assert order.pk == intent.pk
    assert Order.objects.get().status == S.FILLED
    assert Fill.objects.count() == 1


def _crashed_intent(account: ExchangeAccount, market: Market, signal: Signal) -> Order:
    return order_intent_create(
        account_id=account.pk,
        market_id=market.pk,
        signal_id=signal.pk,
        side="BUY",
        quantity=Decimal("0.05"),
        client_order_id=client_order_id(
            strategy=STRATEGY,
            account_id=account.pk,
            market_id=market.pk,
            decision=f"signal:{signal.pk}",
        ),
        strategy=STRATEGY,
        reason="crashed",
    )


def test_it_cancels_an_unsent_intent_once_it_expires_and_never_sends_it(
    account: ExchangeAccount, market: Market, settings
) -> None:
    settings.QT_INTENT_TTL_S = 60
    signal = SignalFactory(market=market)
    intent = _crashed_intent(account, market, signal)
    fresh = _crashed_intent(account, market, SignalFactory(market=market))
    Order.objects.filter(pk=intent.pk).update(created_at=timezone.now() - timedelta(seconds=61))

    assert orders_resolve_in_flight() == 1  # the periodic resolver's sweep

    expired = Order.objects.get(pk=intent.pk)
    assert expired.status == S.CANCELED
    assert expired.events.get(to_status=S.CANCELED).cause.startswith("never sent: the intent")
    assert Order.objects.get(pk=fresh.pk).status == S.NEW  # younger than the TTL: left alone
    # The task comes back (the broker's visibility timeout): it finds the order, sends nothing.
    assert signal_act(account=account, signal=signal) == expired
    assert Order.objects.get(pk=intent.pk).status == S.CANCELED
    assert not Fill.objects.exists()
    assert "order.canceled" in audit_actions("trading.order", intent.pk)


def test_a_redelivered_task_cancels_its_expired_intent_instead_of_sending_it(
    account: ExchangeAccount, market: Market, settings
) -> None:
    settings.QT_INTENT_TTL_S = 60
    signal = SignalFactory(market=market)
    intent = _crashed_intent(account, market, signal)
    Order.objects.filter(pk=intent.pk).update(created_at=timezone.now() - timedelta(minutes=50))

    order = signal_act(account=account, signal=signal)

    assert order is not None and order.pk == intent.pk
    assert Order.objects.get(pk=intent.pk).status == S.CANCELED
    assert not Fill.objects.exists()
    assert Position.objects.filter(market=market, quantity__gt=0).count() == 0


def test_it_denies_a_signal_that_comes_back_after_its_time_with_decision_expired(
    account: ExchangeAccount, market: Market, settings
) -> None:
    settings.QT_INTENT_TTL_S = 60
    signal = SignalFactory(market=market)
    Signal.objects.filter(pk=signal.pk).update(created_at=timezone.now() - timedelta(hours=1))
    signal.refresh_from_db()

    assert signal_act(account=account, signal=signal) is None

    assert not Order.objects.exists()
    decision = RiskDecision.objects.get()
    assert (decision.approved, decision.code) == (False, "DECISION_EXPIRED")
    assert "3600s old" in decision.detail


def test_it_does_nothing_on_a_sell_when_flat(account: ExchangeAccount, market: Market) -> None:
    signal = SignalFactory(market=market, action=Signal.Action.SELL)

    assert signal_act(account=account, signal=signal) is None

    assert not Order.objects.exists()
    assert not RiskDecision.objects.exists()


def test_it_does_nothing_on_hold(account: ExchangeAccount, market: Market) -> None:
    signal = SignalFactory(market=market, action=Signal.Action.HOLD)

    assert signal_act(account=account, signal=signal) is None

    assert not Order.objects.exists()
    assert not RiskDecision.objects.exists()


def test_it_does_not_buy_again_when_already_long(account: ExchangeAccount, market: Market) -> None:
    signal_act(account=account, signal=SignalFactory(market=market))

    assert signal_act(account=account, signal=SignalFactory(market=market)) is None
    assert Order.objects.count() == 1


def test_it_closes_the_position_on_a_sell_when_long(
    account: ExchangeAccount, market: Market
) -> None:
    signal_act(account=account, signal=SignalFactory(market=market, price=Decimal("40000")))
    sell = SignalFactory(market=market, action=Signal.Action.SELL, price=Decimal("42000"))

    order = signal_act(account=account, signal=sell)

    assert order is not None
    assert (order.side, order.quantity, order.status) == ("SELL", Decimal("0.05"), S.FILLED)
    assert Position.objects.get(account=account, market=market).quantity == 0
    trade = Trade.objects.get()
    # Entry 40020.00, exit 42000 × 0.9995 = 41979.00; fees 2.001 + 2.09895
    assert trade.pnl == Decimal("97.95") - Decimal("2.001") - Decimal("2.09895")


def test_it_records_a_denial_instead_of_an_order_when_halted(
    account: ExchangeAccount, market: Market, alice: User
) -> None:
    kill_switch_set(on=True, reason="exchange incident", actor=alice.username)
    signal = SignalFactory(market=market)

    assert signal_act(account=account, signal=signal) is None

    assert not Order.objects.exists()
    decision = RiskDecision.objects.get()
    assert (decision.approved, decision.code, decision.signal) == (False, "TRADING_HALTED", signal)
    assert "exchange incident" in decision.detail
    event = AuditEvent.objects.get(action="risk.denied")
    assert event.object_id == str(decision.pk)
    assert event.payload["code"] == "TRADING_HALTED"
    assert event.payload["signal"] == signal.pk


def test_it_audits_every_order_and_fill(account: ExchangeAccount, market: Market) -> None:
    signal_act(account=account, signal=SignalFactory(market=market, price=Decimal("40000")))
    signal_act(
        account=account, signal=SignalFactory(market=market, action="SELL", price=Decimal("41000"))
    )

    assert Order.objects.count() == 2
    for order in Order.objects.all():
        assert audit_actions("trading.order", order.pk) == [
            "order.created",
            "order.submitted",
            "order.accepted",
            "order.filled",
        ]
    assert Fill.objects.count() == 2
    for fill in Fill.objects.all():
        assert audit_actions("trading.fill", fill.pk) == ["fill.recorded"]
    assert AuditEvent.objects.filter(action="risk.approved").count() == 2


def test_it_acts_for_every_enabled_account_on_the_signal_exchange(
    account: ExchangeAccount, market: Market
) -> None:
    second = ExchangeAccount.objects.create(
        name="paper-2", exchange=market.exchange, cash=Decimal("5000")
    )
    ExchangeAccount.objects.create(
        name="paper-off", exchange=market.exchange, strategy_enabled=False
    )
    signal = SignalFactory(market=market, price=Decimal("40000"))

    orders = signal_execute(signal=signal)

    assert {o.account_id for o in orders} == {account.pk, second.pk}
    # 5000 × 0.2 = 1000; 1000 / 40000 = 0.025
    assert Order.objects.get(account=second).quantity == Decimal("0.02500")
    assert len({o.client_order_id for o in orders}) == 2


def test_it_acts_on_a_signal_in_a_bounded_number_of_queries(
    account: ExchangeAccount, market: Market, django_assert_max_num_queries: DjangoAssertNumQueries
) -> None:
    # History must not make it slower: earlier round trips, orders, fills and audit entries.
    for i in range(5):
        signal_act(account=account, signal=SignalFactory(market=market, price=Decimal("40000")))
        signal_act(
            account=account,
            signal=SignalFactory(market=market, action="SELL", price=Decimal(40100 + i)),
        )
    assert Trade.objects.count() == 5
    signal = Signal.objects.select_related("market").get(pk=SignalFactory(market=market).pk)

    # About 45 statements (including one OrderEvent row per transition) plus the
    # SAVEPOINT/RELEASE pairs of nested atomic blocks, a locked re-read per transition and,
    # on PostgreSQL, the audit chain's advisory lock per entry (about 80 on SQLite, 95 on
    # PostgreSQL today); the bound catches a query per row of history sneaking in.
    with django_assert_max_num_queries(105):
        order = signal_act(account=account, signal=signal)
    assert order is not None
    assert order.status == S.FILLED

    # A redelivery only looks up the order it already made.
    with django_assert_max_num_queries(1):
        assert signal_act(account=account, signal=signal) == order


def test_atr_sizing_uses_the_volatility_of_the_real_bars_before_the_signal(
    account: ExchangeAccount, market: Market
) -> None:
    import talib

    from marketdata.selectors import candles_frame
    from marketdata.tests.factories import load_real

    load_real(market, start=30000, count=60)
    last = candles_frame(market=market, timeframe="1h").index[-1]
    bars = candles_frame(market=market, timeframe="1h", last=42)
    atr = talib.ATR(bars["high"].to_numpy(), bars["low"].to_numpy(), bars["close"].to_numpy(), 14)
    account.sizing = ExchangeAccount.Sizing.ATR
    account.risk_fraction = Decimal("0.01")
    account.atr_multiple = Decimal("2")
    account.save()
    RiskLimits.objects.filter(account=None).update(max_position_notional=Decimal("100000"))
    price = Decimal("40000")
    signal = SignalFactory(market=market, action=Signal.Action.BUY, price=price, candle_time=last)

    order = signal_act(account=account, signal=signal)

    # 10000 × 0.01 / (2 × ATR): 100 USDT at risk over a two-ATR move
    expected = Decimal(100) / (2 * Decimal(str(round(float(atr[-1]), 8))))
    assert expected * price < Decimal("10000"), "the leverage cap must not be what decides"
    assert order is not None
    assert order.quantity == expected.quantize(Decimal("0.00001"), rounding="ROUND_DOWN")
