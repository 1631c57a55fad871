from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from marketdata.models import Market
from risk.models import EquitySnapshot, TradingState
from risk.services.equity import equity_guard, equity_view
from risk.services.watch import risk_watch
from risk.tests.factories import hold, limits, mark, open_order
from trading.models import ExchangeAccount, Order


def test_the_first_observation_of_the_day_is_the_days_baseline(
    paper_account: ExchangeAccount, market: Market
) -> None:
    hold(paper_account, market, "0.1")
    mark(market, "40000")

    first = equity_view(account=paper_account)
    mark(market, "39000")
    later = equity_view(account=paper_account)

    assert (first.equity, first.day_start, first.peak) == (Decimal("14000"),) * 3
    assert (later.equity, later.day_start, later.daily_loss) == (
        Decimal("13900"),
        Decimal("14000"),
        Decimal("100"),
    )
    assert EquitySnapshot.objects.count() == 1  # a lower equity is not recorded by a check


def test_yesterdays_snapshots_do_not_set_todays_baseline(
    paper_account: ExchangeAccount, market: Market
) -> None:
    EquitySnapshot.objects.create(
        account=paper_account,
        taken_at=timezone.now() - timedelta(days=1),
        equity=Decimal("20000"),
        peak=Decimal("20000"),
    )

    view = equity_view(account=paper_account)

    assert (view.day_start, view.daily_loss) == (Decimal("10000"), Decimal("0"))
    # ... but the peak remembers: a 50 % drawdown.
    assert (view.peak, view.drawdown) == (Decimal("20000"), Decimal("0.5"))


def test_a_new_high_moves_the_peak(paper_account: ExchangeAccount, market: Market) -> None:
    hold(paper_account, market, "0.1")
    mark(market, "40000")
    equity_view(account=paper_account)
    mark(market, "50000")

    view = equity_view(account=paper_account)

    assert view.peak == Decimal("15000")
    assert EquitySnapshot.objects.first().peak == Decimal("15000")


def test_the_periodic_watch_snapshots_and_engages_the_automatic_kill_switch(
    paper_account: ExchangeAccount, market: Market, sent_tasks: list
) -> None:
    limits(max_drawdown=Decimal("0.1"), max_daily_loss=Decimal("100000"))
    hold(paper_account, market, "0.1")
    mark(market, "40000")
    assert risk_watch() == {"breaches": {}, "canceled": 0}

    mark(market, "26000")  # 14000 -> 12600: 10 %

    assert risk_watch()["breaches"] == {"paper": "MAX_DRAWDOWN"}
    state = TradingState.objects.get(account=paper_account)
    assert (state.kill_switch, state.code) == (True, "MAX_DRAWDOWN")
    assert "drawdown 10.00%" in state.reason


def test_the_guard_leaves_an_engaged_kill_switch_alone(
    paper_account: ExchangeAccount, market: Market, sent_tasks: list
) -> None:
    limits(max_daily_loss=Decimal("100"))
    hold(paper_account, market, "0.1")
    mark(market, "40000")
    equity_view(account=paper_account)
    mark(market, "30000")

    assert equity_guard(account=paper_account) == "MAX_DAILY_LOSS"
    assert equity_guard(account=paper_account) == "MAX_DAILY_LOSS"

    from risk.models import AuditEvent

    assert AuditEvent.objects.filter(action="killswitch.on").count() == 1


def test_the_watch_cancels_orders_left_open_under_a_kill_switch(
    paper_account: ExchangeAccount,
    market: Market,
    alice,
    sent_tasks: list,  # type: ignore[no-untyped-def]
) -> None:
    from risk.services.state import kill_switch_set

    order = open_order(paper_account, market, "BUY", "0.01", status=Order.Status.NEW)
    kill_switch_set(on=True, reason="outage", actor=alice.username)

    assert risk_watch()["canceled"] == 1

    order.refresh_from_db()
    assert order.status == Order.Status.CANCELED


def test_old_snapshots_are_pruned_without_losing_the_peak(
    paper_account: ExchangeAccount, market: Market
) -> None:
    from risk.services.equity import equity_snapshots_prune

    long_ago = timezone.now() - timedelta(days=40)
    for i, equity in enumerate(("12000", "15000", "11000")):
        EquitySnapshot.objects.create(
            account=paper_account,
            taken_at=long_ago + timedelta(minutes=i),
            equity=Decimal(equity),
            peak=max(Decimal("12000"), Decimal(equity)) if i < 2 else Decimal("15000"),
        )

    assert equity_snapshots_prune() == 2

    [kept] = EquitySnapshot.objects.all()
    assert kept.peak == Decimal("15000")
    assert equity_view(account=paper_account).peak == Decimal("15000")
