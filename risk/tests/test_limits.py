from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from marketdata.models import Market
from risk.models import AuditEvent, MarketLimits, RiskDecision, RiskLimits
from risk.services.checks import pretrade_check
from risk.services.limits import (
    ReasonRequired,
    limits_for,
    market_limits_update,
    risk_limits_update,
)
from risk.tests.factories import open_order
from trading.models import ExchangeAccount, Order


def test_an_operator_changes_a_limit_with_a_reason_and_it_is_audited(
    paper_account: ExchangeAccount, alice: User
) -> None:
    limits = limits_for(None)

    changed = risk_limits_update(
        limits=limits,
        changes={"max_order_notional": Decimal("2500"), "max_open_positions": 2},
        reason="quieter market",
        actor=alice.username,
    )

    assert (changed.max_order_notional, changed.version) == (Decimal("2500"), 2)
    assert (changed.changed_by, changed.reason) == ("alice", "quieter market")
    event = AuditEvent.objects.get(action="risk.limits_changed")
    assert event.actor == "alice"
    # Only what changed is recorded, before and after.
    assert event.payload == {
        "scope": "global",
        "version": 2,
        "changes": {"max_order_notional": ["5000.00000000", "2500"]},
        "reason": "quieter market",
    }


@pytest.mark.parametrize("reason", ["", "  "])
def test_it_refuses_a_change_without_a_reason(
    paper_account: ExchangeAccount, alice: User, reason: str
) -> None:
    with pytest.raises(ReasonRequired):
        risk_limits_update(
            limits=limits_for(None),
            changes={"max_order_notional": Decimal("1")},
            reason=reason,
            actor=alice.username,
        )

    assert limits_for(None).version == 1
    assert not AuditEvent.objects.exists()


def test_it_refuses_fields_that_are_not_limits(paper_account: ExchangeAccount) -> None:
    with pytest.raises(ValueError, match="not editable: version"):
        risk_limits_update(limits=limits_for(None), changes={"version": 7}, reason="x", actor="a")


def test_it_refuses_a_nonsensical_limit(paper_account: ExchangeAccount) -> None:
    with pytest.raises(ValidationError):
        risk_limits_update(
            limits=limits_for(None),
            changes={"max_daily_loss": Decimal("-5")},
            reason="typo",
            actor="alice",
        )

    assert limits_for(None).max_daily_loss == Decimal("1000")


def test_an_accounts_own_limits_start_from_the_global_ones(
    paper_account: ExchangeAccount, alice: User
) -> None:
    own = risk_limits_update(
        limits=None,
        account=paper_account,
        changes={"max_daily_loss": Decimal("250")},
        reason="small live account",
        actor=alice.username,
    )

    assert own.account == paper_account
    assert own.max_daily_loss == Decimal("250")
    assert own.max_order_notional == limits_for(None).max_order_notional
    assert limits_for(paper_account) == own


def test_a_limit_change_never_applies_to_an_order_past_its_checks(
    paper_account: ExchangeAccount, market: Market, alice: User, sent_tasks: list
) -> None:
    approved = pretrade_check(
        account=paper_account,
        market=market,
        side="BUY",
        quantity=Decimal("0.1"),
        price=Decimal("40000"),
    )
    order = open_order(paper_account, market, "BUY", "0.1", status=Order.Status.NEW)

    risk_limits_update(
        limits=limits_for(None),
        changes={"max_order_notional": Decimal("1000")},
        reason="tighter",
        actor=alice.username,
    )

    approved.refresh_from_db()
    order.refresh_from_db()
    assert (approved.approved, approved.limits_version) == (True, 1)
    assert order.status == Order.Status.NEW  # not re-checked, not cancelled
    assert sent_tasks == []
    later = pretrade_check(
        account=paper_account,
        market=market,
        side="BUY",
        quantity=Decimal("0.1"),
        price=Decimal("40000"),
    )
    assert (later.code, later.limits_version) == ("MAX_NOTIONAL", 2)
    assert RiskDecision.objects.filter(approved=True).count() == 1


def test_market_quantity_limits_are_changed_with_a_reason(market: Market, alice: User) -> None:
    limits = market_limits_update(
        market=market,
        changes={"max_quantity": Decimal("5")},
        reason="exchange filter",
        actor=alice.username,
    )

    assert MarketLimits.objects.get() == limits
    assert (limits.max_quantity, limits.version) == (Decimal("5"), 2)
    assert AuditEvent.objects.get().payload["changes"] == {"max_quantity": [None, "5"]}


def test_there_is_one_global_row_and_one_per_account(paper_account: ExchangeAccount) -> None:
    from django.db import IntegrityError, transaction

    from risk.models import TradingState

    RiskLimits.objects.get_or_create(account=None)
    RiskLimits.objects.create(account=paper_account)
    for model in (RiskLimits, TradingState):
        model.objects.get_or_create(account=None)
        with pytest.raises(IntegrityError), transaction.atomic():
            model.objects.create(account=None)
