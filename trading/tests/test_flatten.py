"""The kill switch's flatten request, carried out by the execution engine."""

from __future__ import annotations

from decimal import Decimal

import pytest

from risk.models import FlattenRequest
from risk.services.orders import positions_flatten_request
from risk.services.state import kill_switch_set
from trading.models import ExchangeAccount, Order, Position, Signal
from trading.services.execution import positions_flatten, signal_act
from trading.tests.factories import CandleFactory, SignalFactory


@pytest.fixture
def account(paper_account: ExchangeAccount) -> ExchangeAccount:
    return paper_account


def test_a_flatten_request_closes_every_position_even_while_halted(
    account, market, django_capture_on_commit_callbacks
) -> None:
    CandleFactory(market=market, close=Decimal("40000"))
    signal = SignalFactory(market=market, action=Signal.Action.BUY, price=Decimal("40000"))
    assert signal_act(account=account, signal=signal).status == Order.Status.FILLED
    with django_capture_on_commit_callbacks():  # the tasks are run by hand below
        kill_switch_set(on=True, reason="market chaos", actor="alice")
        request = positions_flatten_request(actor="alice", reason="market chaos")

    orders = positions_flatten(request_id=request.pk)

    assert [o.side for o in orders] == ["SELL"]
    assert orders[0].status == Order.Status.FILLED
    assert Position.objects.get(account=account, market=market).quantity == 0
    request.refresh_from_db()
    assert request.status == FlattenRequest.Status.DONE
    # Doing it again (a redelivered task) sends nothing new.
    positions_flatten(request_id=request.pk)
    assert Order.objects.filter(side="SELL").count() == 1


def test_a_new_buy_is_still_denied_while_halted(account, market) -> None:
    kill_switch_set(on=True, reason="stop", actor="alice")
    signal = SignalFactory(market=market, action=Signal.Action.BUY, price=Decimal("40000"))
    assert signal_act(account=account, signal=signal) is None
    assert not Order.objects.exists()
