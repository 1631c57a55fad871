from __future__ import annotations

from decimal import Decimal

import pytest

from marketdata.models import Market
from risk.models import AuditEvent
from trading.adapters import FillReport
from trading.models import ExchangeAccount, Fill, Order, Position, Trade
from trading.services.orders import (
    IllegalTransition,
    fill_apply,
    order_intent_create,
    order_transition,
)
from trading.services.submission import order_submit

S = Order.Status


@pytest.fixture
def account(paper_account: ExchangeAccount) -> ExchangeAccount:
    # Pin the cost model so the expected figures below do not depend on the environment.
    paper_account.fee_bps = Decimal("10")
    paper_account.slippage_bps = Decimal("5")
    paper_account.cash = Decimal("10000")
    paper_account.save()
    return paper_account


def new_order(
    account: ExchangeAccount,
    market: Market,
    *,
    side: str = "BUY",
    quantity: str = "0.05",
    n: int = 1,
) -> Order:
    return order_intent_create(
        account_id=account.pk,
        market_id=market.pk,
        signal_id=None,
        side=side,
        quantity=Decimal(quantity),
        client_order_id=f"test-{side}-{n}",
        strategy="test",
        reason="test",
    )


def actions_for(order: Order) -> list[str]:
    return list(
        AuditEvent.objects.filter(object_type="trading.order", object_id=str(order.pk))
        .order_by("seq")
        .values_list("action", flat=True)
    )


def test_it_audits_the_intent_before_anything_is_sent(
    account: ExchangeAccount, market: Market
) -> None:
    order = new_order(account, market)
    assert order.status == S.NEW
    event = AuditEvent.objects.get(action="order.created")
    assert event.object_id == str(order.pk)
    assert event.payload["client_order_id"] == order.client_order_id
    assert event.payload["quantity"] == "0.05"


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ([], S.FILLED),
        ([], S.ACCEPTED),
        ([S.SUBMITTED, S.REJECTED], S.ACCEPTED),
        ([S.SUBMITTED, S.FILLED], S.CANCELED),
        ([S.SUBMITTED, S.EXPIRED], S.FILLED),
        ([S.SUBMITTED, S.ACCEPTED], S.NEW),
    ],
)
def test_it_refuses_an_illegal_transition_and_saves_nothing(
    account: ExchangeAccount, market: Market, path: list[str], illegal: str
) -> None:
    order = new_order(account, market)
    for status in path:
        order_transition(order=order, to=status, cause="test")
    events_before = AuditEvent.objects.count()
    stored_before = Order.objects.get(pk=order.pk).updated_at

    with pytest.raises(IllegalTransition):
        order_transition(order=order, to=illegal, cause="test")

    stored = Order.objects.get(pk=order.pk)
    assert stored.status == (path[-1] if path else S.NEW)
    assert stored.updated_at == stored_before
    assert order.status == stored.status
    assert AuditEvent.objects.count() == events_before


def test_it_audits_each_legal_transition(account: ExchangeAccount, market: Market) -> None:
    order = new_order(account, market)
    for status in (S.SUBMITTED, S.ACCEPTED, S.PARTIALLY_FILLED, S.CANCELED):
        order_transition(order=order, to=status, cause="test")

    assert Order.objects.get(pk=order.pk).status == S.CANCELED
    assert actions_for(order) == [
        "order.created",
        "order.submitted",
        "order.accepted",
        "order.partially_filled",
        "order.canceled",
    ]
    last = AuditEvent.objects.filter(action="order.canceled").get()
    assert last.payload["from"] == S.PARTIALLY_FILLED
    assert last.payload["to"] == S.CANCELED
    assert last.actor == "system:execution"


def test_it_submits_a_paper_order_and_fills_it(account: ExchangeAccount, market: Market) -> None:
    order = order_submit(order=new_order(account, market), reference_price=Decimal("40000"))

    order.refresh_from_db()
    assert order.status == S.FILLED
    assert order.exchange_order_id == f"paper-{order.pk}"
    assert order.filled_quantity == Decimal("0.05")
    assert order.average_price == Decimal("40020.00")  # 40000 × 1.0005
    fill = order.fills.get()
    assert fill.trade_id == f"paper-{order.client_order_id}-1"
    assert fill.fee == Decimal("2.00100000")  # 2001.00 × 10/10000
    assert actions_for(order) == [
        "order.created",
        "order.submitted",
        "order.accepted",
        "order.filled",
    ]
    assert AuditEvent.objects.filter(
        action="fill.recorded", object_type="trading.fill", object_id=str(fill.pk)
    ).exists()


def test_it_ignores_a_fill_whose_trade_id_was_already_seen(
    account: ExchangeAccount, market: Market
) -> None:
    order = order_submit(order=new_order(account, market), reference_price=Decimal("40000"))
    fill = order.fills.get()
    position_before = Position.objects.get(account=account, market=market)
    cash_before = ExchangeAccount.objects.get(pk=account.pk).cash
    events_before = AuditEvent.objects.count()

    replay = FillReport(
        trade_id=fill.trade_id,
        price=fill.price,
        quantity=fill.quantity,
        fee=fill.fee,
        fee_currency=fill.fee_currency,
        filled_at=fill.filled_at,
    )
    assert fill_apply(order=order, report=replay) is None

    assert Fill.objects.filter(order=order).count() == 1
    position = Position.objects.get(account=account, market=market)
    assert (position.quantity, position.average_price, position.fees_paid) == (
        position_before.quantity,
        position_before.average_price,
        position_before.fees_paid,
    )
    assert ExchangeAccount.objects.get(pk=account.pk).cash == cash_before
    order.refresh_from_db()
    assert order.filled_quantity == Decimal("0.05")
    assert AuditEvent.objects.count() == events_before


def test_it_fills_partially_then_fully_with_a_volume_weighted_average(
    account: ExchangeAccount, market: Market
) -> None:
    order = new_order(account, market, quantity="0.3")
    order_transition(order=order, to=S.SUBMITTED, cause="test")
    at = order.created_at
    fill_apply(
        order=order,
        report=FillReport("t-1", Decimal("100"), Decimal("0.1"), Decimal("0.01"), "USDT", at),
    )
    assert Order.objects.get(pk=order.pk).status == S.PARTIALLY_FILLED
    fill_apply(
        order=order,
        report=FillReport("t-2", Decimal("103"), Decimal("0.2"), Decimal("0.0206"), "USDT", at),
    )

    order.refresh_from_db()
    assert order.status == S.FILLED
    assert order.filled_quantity == Decimal("0.3")
    # (100 × 0.1 + 103 × 0.2) / 0.3 = 30.6 / 0.3 = 102
    assert order.average_price == Decimal("102")
    position = Position.objects.get(account=account, market=market)
    assert position.quantity == Decimal("0.3")
    assert position.average_price == Decimal("102")
    # 10000 − 10 − 0.01 − 20.6 − 0.0206
    assert ExchangeAccount.objects.get(pk=account.pk).cash == Decimal("9969.3694")


def test_it_rolls_back_a_fill_the_order_state_cannot_take(
    account: ExchangeAccount, market: Market
) -> None:
    order = new_order(account, market)  # still NEW: never sent, so it cannot be filled
    report = FillReport(
        "t-1", Decimal("40000"), Decimal("0.05"), Decimal("2"), "USDT", order.created_at
    )

    with pytest.raises(IllegalTransition):
        fill_apply(order=order, report=report)

    assert not Fill.objects.exists()
    assert not Position.objects.filter(quantity__gt=0).exists()
    stored = Order.objects.get(pk=order.pk)
    assert (stored.status, stored.filled_quantity) == (S.NEW, Decimal("0"))
    assert ExchangeAccount.objects.get(pk=account.pk).cash == Decimal("10000")
    assert not AuditEvent.objects.filter(action="fill.recorded").exists()


def test_it_settles_a_round_trip_in_cash_position_and_trade(
    account: ExchangeAccount, market: Market
) -> None:
    order_submit(order=new_order(account, market, side="BUY"), reference_price=Decimal("40000"))
    order_submit(order=new_order(account, market, side="SELL"), reference_price=Decimal("41000"))

    # Entry: 40000 × 1.0005 = 40020.00; notional 40020 × 0.05 = 2001.00; fee 2.001
    # Exit:  41000 × 0.9995 = 40979.50; notional 40979.5 × 0.05 = 2048.975; fee 2.048975
    entry_notional, entry_fee = Decimal("2001.00"), Decimal("2.001")
    exit_notional, exit_fee = Decimal("2048.975"), Decimal("2.048975")
    account.refresh_from_db()
    assert account.cash == Decimal("10000") - entry_notional - entry_fee + exit_notional - exit_fee
    assert account.cash == Decimal("10043.925025")

    position = Position.objects.get(account=account, market=market)
    assert position.quantity == 0
    assert not position.is_open
    assert position.fees_paid == 0

    trade = Trade.objects.get()
    assert (trade.entry_price, trade.exit_price) == (Decimal("40020.00"), Decimal("40979.50"))
    assert trade.quantity == Decimal("0.05")
    assert trade.fees == entry_fee + exit_fee
    # (40979.50 − 40020.00) × 0.05 − 4.049975 = 47.975 − 4.049975
    assert trade.pnl == (trade.exit_price - trade.entry_price) * trade.quantity - trade.fees
    assert trade.pnl == Decimal("43.925025")
    assert position.realized_pnl == trade.pnl
    assert trade.entry_time <= trade.exit_time


def test_it_refuses_to_sell_more_than_the_position(
    account: ExchangeAccount, market: Market
) -> None:
    order_submit(order=new_order(account, market, side="BUY"), reference_price=Decimal("40000"))
    oversell = new_order(account, market, side="SELL", quantity="0.06")

    with pytest.raises(ValueError, match="exceeds position"):
        order_submit(order=oversell, reference_price=Decimal("40000"))

    assert Position.objects.get(account=account, market=market).quantity == Decimal("0.05")
    assert not Fill.objects.filter(order=oversell).exists()


def test_it_books_every_partial_exit_into_the_round_trip(
    account: ExchangeAccount, market: Market
) -> None:
    buy = new_order(account, market, side="BUY", quantity="0.2")
    order_transition(order=buy, to=S.SUBMITTED, cause="test")
    at = buy.created_at
    fill_apply(
        order=buy,
        report=FillReport("b-1", Decimal("100"), Decimal("0.2"), Decimal("0.02"), "USDT", at),
    )
    sell = new_order(account, market, side="SELL", quantity="0.2")
    order_transition(order=sell, to=S.SUBMITTED, cause="test")
    fill_apply(
        order=sell,
        report=FillReport("s-1", Decimal("110"), Decimal("0.1"), Decimal("0.011"), "USDT", at),
    )
    fill_apply(
        order=sell,
        report=FillReport("s-2", Decimal("120"), Decimal("0.1"), Decimal("0.012"), "USDT", at),
    )

    # Cash is right either way: 10000 − 20 − 0.02 + 11 − 0.011 + 12 − 0.012
    assert ExchangeAccount.objects.get(pk=account.pk).cash == Decimal("10002.957")
    trade = Trade.objects.get()
    # (110 − 100) × 0.1 + (120 − 100) × 0.1 − 0.043 = 2.957, the same as the cash change
    assert trade.quantity == Decimal("0.2")
    assert trade.pnl == Decimal("2.957")
