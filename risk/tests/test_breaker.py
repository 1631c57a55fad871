from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from marketdata.models import Market
from risk.models import AuditEvent, Incident, TradingState
from risk.services import breaker
from risk.tests.factories import hold, limits, mark
from trading.models import ExchangeAccount

State = TradingState.State


@pytest.fixture
def account(paper_account: ExchangeAccount, sent_tasks: list) -> ExchangeAccount:
    limits(max_consecutive_errors=3, max_slippage_bps=Decimal("50"))
    return paper_account


def account_state(account: ExchangeAccount) -> TradingState:
    return TradingState.objects.get(account=account)


def test_it_halts_the_account_after_n_consecutive_execution_errors(
    account: ExchangeAccount, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        breaker.execution_error_record(account=account, error="timeout")
        breaker.execution_error_record(account=account, error="timeout")
    assert account_state(account).state == State.ACTIVE

    with django_capture_on_commit_callbacks(execute=True):
        breaker.execution_error_record(account=account, error="502 Bad Gateway")

    state = account_state(account)
    assert (state.state, state.code, state.consecutive_errors) == (
        State.HALTED,
        "EXECUTION_ERRORS",
        3,
    )
    assert "502 Bad Gateway" in state.reason
    incident = Incident.objects.get(code="EXECUTION_ERRORS")
    assert (incident.severity, incident.account) == ("critical", account)
    assert AuditEvent.objects.get(action="trading_state.escalated").actor == "system:risk"
    assert TradingState.objects.get(account=None).state == State.ACTIVE


def test_a_success_resets_the_count(
    account: ExchangeAccount, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(2):
            breaker.execution_error_record(account=account, error="timeout")
        breaker.execution_success_record(account=account)
        for _ in range(2):
            breaker.execution_error_record(account=account, error="timeout")

    assert (account_state(account).state, account_state(account).consecutive_errors) == (
        State.ACTIVE,
        2,
    )


def test_slippage_beyond_the_threshold_moves_the_account_to_reducing(
    account: ExchangeAccount, market: Market, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        # 40 bps worse: tolerated.
        breaker.slippage_record(
            account=account,
            market=market,
            expected_price=Decimal("40000"),
            fill_price=Decimal("40160"),
            side="BUY",
        )
    assert not TradingState.objects.filter(account=account).exclude(state=State.ACTIVE).exists()

    with django_capture_on_commit_callbacks(execute=True):
        # A sell filled 60 bps lower than expected.
        breaker.slippage_record(
            account=account,
            market=market,
            expected_price=Decimal("40000"),
            fill_price=Decimal("39760"),
            side="SELL",
        )

    state = account_state(account)
    assert (state.state, state.code) == (State.REDUCING, "SLIPPAGE")
    assert "60.0 bps > 50" in state.reason
    assert Incident.objects.get(code="SLIPPAGE").severity == "warning"


def test_favourable_slippage_is_not_a_breach() -> None:
    assert breaker.slippage_bps(
        expected_price=Decimal("100"), fill_price=Decimal("99"), side="BUY"
    ) == Decimal("-100")
    assert breaker.slippage_bps(
        expected_price=Decimal("100"), fill_price=Decimal("99"), side="SELL"
    ) == Decimal("100")


def test_it_escalates_only_after_the_engines_transaction_commits(
    account: ExchangeAccount, market: Market, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        breaker.slippage_record(
            account=account,
            market=market,
            expected_price=Decimal("100"),
            fill_price=Decimal("110"),
            side="BUY",
        )
        # Inside the engine's transaction nothing has been escalated yet.
        assert not TradingState.objects.filter(account=account, state="REDUCING").exists()
    assert callbacks

    assert account_state(account).state == State.REDUCING


def test_a_fill_that_takes_the_account_past_its_daily_loss_engages_the_kill_switch(
    account: ExchangeAccount, market: Market, django_capture_on_commit_callbacks: Any
) -> None:
    limits(max_daily_loss=Decimal("300"))
    hold(account, market, "0.1")
    mark(market, "40000")
    from risk.services.equity import equity_view

    equity_view(account=account)  # the day starts at 14000
    mark(market, "37000")  # -300

    with django_capture_on_commit_callbacks(execute=True):
        breaker.slippage_record(
            account=account,
            market=market,
            expected_price=Decimal("37000"),
            fill_price=Decimal("37000"),
            side="SELL",
        )

    state = account_state(account)
    assert (state.state, state.kill_switch, state.code) == (State.HALTED, True, "MAX_DAILY_LOSS")


def test_a_reconciliation_mismatch_halts_the_account(
    account: ExchangeAccount, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        breaker.reconciliation_mismatch(account=account, detail="BTC: local 0.1, exchange 0.2")

    state = account_state(account)
    assert (state.state, state.code) == (State.HALTED, "RECONCILIATION_MISMATCH")
    incident = Incident.objects.get(code="RECONCILIATION_MISMATCH")
    assert (incident.severity, incident.detail) == ("critical", "BTC: local 0.1, exchange 0.2")


@pytest.fixture
def fed(market: Market, settings: Any) -> Market:
    """A market whose feed ran: bars up to an hour ago (1h bars, ccxt mode)."""
    settings.QT_MARKET_SOURCE = "ccxt"
    settings.QT_TIMEFRAME = "1h"
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    from marketdata.models import Candle

    Candle.objects.create(
        market=market,
        timeframe="1h",
        open_time=now - timedelta(hours=1),
        open=1,
        high=1,
        low=1,
        close=1,
        volume=1,
    )
    return market


def test_stale_market_data_moves_trading_to_reducing_and_fresh_data_clears_it(
    paper_account: ExchangeAccount, fed: Market, sent_tasks: list
) -> None:
    limits(stale_data_bars=3)
    assert breaker.market_data_watch() == []

    from marketdata.models import Candle

    Candle.objects.update(open_time=timezone.now() - timedelta(hours=5))  # > (3+1) bars
    assert breaker.market_data_watch() == ["BTC/USDT"]

    state = TradingState.objects.get(account=None)
    assert (state.state, state.code) == (State.REDUCING, "DATA_STALE")
    assert Incident.objects.get(code="DATA_STALE").severity == "warning"

    breaker.market_data_watch()  # still stale: no second incident
    assert Incident.objects.filter(code="DATA_STALE").count() == 1

    Candle.objects.update(open_time=timezone.now() - timedelta(hours=1))
    assert breaker.market_data_watch() == []
    assert TradingState.objects.get(account=None).state == State.ACTIVE


def test_a_market_never_fed_is_not_judged_stale(
    paper_account: ExchangeAccount, market: Market, settings: Any
) -> None:
    settings.QT_MARKET_SOURCE = "ccxt"

    assert breaker.market_data_watch() == []
    assert TradingState.objects.get(account=None).state == State.ACTIVE


def test_a_stopped_replay_clock_is_stale(
    paper_account: ExchangeAccount, fed: Market, settings: Any, sent_tasks: list
) -> None:
    settings.QT_MARKET_SOURCE = "replay"
    settings.QT_REPLAY_INTERVAL = 2.0
    Market.objects.update(last_ingest_at=timezone.now() - timedelta(seconds=30))
    assert breaker.market_data_watch() == []

    Market.objects.update(last_ingest_at=timezone.now() - timedelta(seconds=61))

    assert breaker.market_data_watch() == ["BTC/USDT"]


def test_an_operators_reducing_state_is_not_cleared_by_fresh_data(
    paper_account: ExchangeAccount, fed: Market, alice: Any
) -> None:
    from risk.services.state import trading_state_set

    trading_state_set(state=State.REDUCING, reason="news", actor=alice.username)

    breaker.market_data_watch()

    assert TradingState.objects.get(account=None).state == State.REDUCING
