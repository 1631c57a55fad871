from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import User

from marketdata.models import Market
from marketdata.services.sync import market_register
from risk.lib.pretrade import CODES
from risk.models import AuditEvent, EquitySnapshot, FlattenRequest, RiskDecision, TradingState
from risk.services.checks import pretrade_check
from risk.services.limits import market_limits_update, risk_limits_update
from risk.services.state import kill_switch_set
from risk.tests.factories import PRICE, generous, hold, limits, mark, open_order
from trading.models import ExchangeAccount, Position


@pytest.fixture
def account(paper_account: ExchangeAccount) -> ExchangeAccount:
    limits(
        max_order_notional=Decimal("5000"),
        max_position_notional=Decimal("5000"),
        max_gross_exposure=Decimal("10000"),
        max_leverage=Decimal("1"),
        max_open_positions=2,
        max_daily_loss=Decimal("1000"),
        max_drawdown=Decimal("0.2"),
        max_orders_per_window=100,
    )
    return paper_account


@pytest.fixture
def eth(db: None) -> Market:
    return market_register(exchange_code="binance", symbol="ETH/USDT")


def check(
    account: ExchangeAccount,
    market: Market,
    side: str = "BUY",
    quantity: str = "0.05",
    price: Decimal = PRICE,
    flatten: bool = False,
) -> RiskDecision:
    return pretrade_check(
        account=account,
        market=market,
        side=side,
        quantity=Decimal(quantity),
        price=price,
        flatten=flatten,
    )


def set_global_state(state: str) -> None:
    TradingState.objects.filter(account=None).update(state=state)


def test_it_approves_an_order_within_limits_and_stores_the_decision(
    account: ExchangeAccount, market: Market
) -> None:
    decision = check(account, market)

    stored = RiskDecision.objects.get()
    assert stored == decision
    assert (stored.approved, stored.code, stored.detail) == (True, "", "")
    assert stored.notional == Decimal("2000")  # 0.05 × 40000
    assert stored.price == PRICE
    assert stored.limits_version == 1
    event = AuditEvent.objects.get(action="risk.approved")
    assert event.object_id == str(decision.pk)
    assert event.payload["code"] == ""
    assert event.payload["limits_version"] == 1


def test_it_stores_and_audits_a_denial_with_its_code_and_reason(
    account: ExchangeAccount, market: Market
) -> None:
    decision = check(account, market, "BUY", "0.2")  # 8000 > 5000

    assert (decision.approved, decision.code) == (False, "MAX_NOTIONAL")
    assert decision.detail == "order notional 8000.00 > 5000"
    event = AuditEvent.objects.get(action="risk.denied")
    assert event.payload["code"] == "MAX_NOTIONAL"
    assert event.payload["detail"] == decision.detail


def test_it_denies_everything_when_the_kill_switch_is_on(
    account: ExchangeAccount, market: Market, alice: User
) -> None:
    hold(account, market, "0.05")
    kill_switch_set(on=True, reason="exchange outage", actor=alice.username)

    buy = check(account, market, "BUY")
    sell = check(account, market, "SELL", "0.05")  # even an order that would reduce

    for decision in (buy, sell):
        assert (decision.approved, decision.code) == (False, "TRADING_HALTED")
        assert "exchange outage" in decision.detail
    assert AuditEvent.objects.filter(action="risk.denied").count() == 2


def test_it_denies_when_the_account_alone_is_halted(
    account: ExchangeAccount, market: Market
) -> None:
    TradingState.objects.create(
        account=account, state=TradingState.State.HALTED, reason="api key revoked"
    )

    decision = check(account, market)

    assert (decision.approved, decision.code) == (False, "TRADING_HALTED")
    assert decision.detail.startswith("account trading is halted")


def test_it_leaves_other_accounts_trading_when_one_is_halted(
    account: ExchangeAccount, market: Market
) -> None:
    other = ExchangeAccount.objects.create(name="other", exchange=account.exchange)
    TradingState.objects.create(account=other, state=TradingState.State.HALTED, reason="x")

    assert check(account, market).approved
    assert check(other, market).code == "TRADING_HALTED"


def test_it_denies_a_buy_while_reducing(account: ExchangeAccount, market: Market) -> None:
    hold(account, market, "0.05")
    set_global_state(TradingState.State.REDUCING)

    decision = check(account, market, "BUY", "0.01")

    assert (decision.approved, decision.code) == (False, "TRADING_REDUCING")


def test_it_allows_a_sell_that_reduces_while_reducing(
    account: ExchangeAccount, market: Market
) -> None:
    hold(account, market, "0.05")
    set_global_state(TradingState.State.REDUCING)

    partial = check(account, market, "SELL", "0.02")
    full = check(account, market, "SELL", "0.05")

    assert (partial.approved, partial.code, partial.reduces) == (True, "", True)
    assert (full.approved, full.code) == (True, "")


def test_it_denies_a_sell_that_would_not_reduce_while_reducing(
    account: ExchangeAccount, market: Market
) -> None:
    hold(account, market, "0.05")
    set_global_state(TradingState.State.REDUCING)

    assert check(account, market, "SELL", "0.06").code == "TRADING_REDUCING"  # flips short
    Position.objects.update(quantity=0)
    assert check(account, market, "SELL", "0.01").code == "TRADING_REDUCING"  # flat


def test_it_counts_open_sells_so_two_reducing_orders_cannot_flip_the_position(
    account: ExchangeAccount, market: Market
) -> None:
    hold(account, market, "0.05")
    open_order(account, market, "SELL", "0.04")
    set_global_state(TradingState.State.REDUCING)

    assert check(account, market, "SELL", "0.02").code == "TRADING_REDUCING"
    assert check(account, market, "SELL", "0.01").approved


def test_it_allows_a_buy_that_covers_a_short_while_reducing(
    account: ExchangeAccount, market: Market
) -> None:
    hold(account, market, "-0.05")
    set_global_state(TradingState.State.REDUCING)

    assert check(account, market, "BUY", "0.05").approved
    assert check(account, market, "BUY", "0.06").code == "TRADING_REDUCING"


@pytest.mark.parametrize(
    ("side", "quantity", "price", "code"),
    [
        ("BUY", "0", PRICE, "INVALID_QUANTITY"),
        ("BUY", "-0.01", PRICE, "INVALID_QUANTITY"),
        ("HOLD", "0.01", PRICE, "INVALID_SIDE"),
        ("BUY", "0.01", Decimal("0"), "INVALID_PRICE"),
    ],
)
def test_it_denies_a_malformed_order(
    account: ExchangeAccount, market: Market, side: str, quantity: str, price: Decimal, code: str
) -> None:
    decision = check(account, market, side, quantity, price)

    assert (decision.approved, decision.code) == (False, code)


def test_it_denies_a_quantity_finer_than_the_market_precision(
    account: ExchangeAccount, market: Market
) -> None:
    assert market.qty_precision == 5

    finer = check(account, market, "BUY", "0.000125")
    exact = check(account, market, "BUY", "0.00013")

    assert (finer.approved, finer.code) == (False, "QUANTITY_PRECISION")
    assert "0.00001" in finer.detail
    assert exact.approved


def test_it_applies_the_market_quantity_limits(
    account: ExchangeAccount, market: Market, alice: User
) -> None:
    market_limits_update(
        market=market,
        changes={"min_quantity": Decimal("0.001"), "max_quantity": Decimal("0.1")},
        reason="exchange filters",
        actor=alice.username,
    )

    assert check(account, market, "BUY", "0.0009").code == "MIN_QUANTITY"
    assert check(account, market, "BUY", "0.001").approved
    # The maximum is an exchange rule: it binds reducing orders too.
    hold(account, market, "0.2")
    assert check(account, market, "SELL", "0.11").code == "MAX_QUANTITY"
    assert check(account, market, "SELL", "0.1").approved


def test_it_denies_an_order_below_the_minimum_notional(
    account: ExchangeAccount, market: Market
) -> None:
    assert market.min_notional == Decimal("5")

    below = check(account, market, "BUY", "0.0001")  # 4.00 < 5
    at = check(account, market, "BUY", "0.00025", price=Decimal("20000"))  # 5.00, allowed

    assert (below.approved, below.code) == (False, "MIN_NOTIONAL")
    assert (at.approved, at.code) == (True, "")


def test_it_denies_an_order_above_the_maximum_notional(
    account: ExchangeAccount, market: Market
) -> None:
    over = check(account, market, "BUY", "0.12501")  # 5000.40 > 5000
    at = check(account, market, "BUY", "0.125")  # 5000

    assert (over.approved, over.code) == (False, "MAX_NOTIONAL")
    assert at.approved


def test_it_denies_a_buy_that_would_exceed_the_position_notional(
    account: ExchangeAccount, market: Market
) -> None:
    hold(account, market, "0.1")  # 4000 held

    over = check(account, market, "BUY", "0.03")  # 0.13 × 40000 = 5200 > 5000
    at = check(account, market, "BUY", "0.025")  # 0.125 × 40000 = 5000

    assert (over.approved, over.code) == (False, "MAX_POSITION_NOTIONAL")
    assert "5200.00" in over.detail
    assert at.approved


def test_it_counts_open_buys_towards_the_position(account: ExchangeAccount, market: Market) -> None:
    hold(account, market, "0.05")
    open_order(account, market, "BUY", "0.1", filled="0.04")  # 0.06 still to fill

    # 0.05 + 0.06 + 0.02 = 0.13 → 5200
    assert check(account, market, "BUY", "0.02").code == "MAX_POSITION_NOTIONAL"
    assert check(account, market, "BUY", "0.01").approved


def test_it_denies_a_buy_beyond_the_gross_exposure(
    account: ExchangeAccount, market: Market, eth: Market
) -> None:
    limits(max_leverage=Decimal("5"), max_gross_exposure=Decimal("6000"))
    hold(account, eth, "1", price=Decimal("3000"))
    mark(eth, "4000")  # marked at the last close, not the entry

    at = check(account, market, "BUY", "0.05")  # 4000 + 2000 = 6000, at the limit
    over = check(account, market, "BUY", "0.05001")

    assert at.approved
    assert (over.code, over.detail) == (
        "MAX_GROSS_EXPOSURE",
        "gross exposure would be 6000.40 > 6000",
    )


def test_it_denies_a_buy_beyond_the_leverage(
    account: ExchangeAccount, market: Market, eth: Market
) -> None:
    limits(max_leverage=Decimal("0.5"))
    account.cash = Decimal("10000")
    account.save()
    hold(account, eth, "1", price=Decimal("3000"))  # equity 13000 → 6500 allowed

    assert check(account, market, "BUY", "0.0875").approved  # 3000 + 3500 = 6500
    decision = check(account, market, "BUY", "0.0876")

    assert decision.code == "MAX_LEVERAGE"
    assert "0.5" in decision.detail


def test_it_denies_a_new_position_beyond_the_maximum_open(
    account: ExchangeAccount, market: Market, eth: Market
) -> None:
    limits(max_gross_exposure=Decimal("100000"), max_leverage=Decimal("10"))
    sol = market_register(exchange_code="binance", symbol="SOL/USDT")
    hold(account, eth, "1", price=Decimal("3000"))
    hold(account, sol, "1", price=Decimal("100"))

    decision = check(account, market, "BUY", "0.01")

    assert (decision.approved, decision.code) == (False, "MAX_OPEN_POSITIONS")
    # Adding to a position already open is not a new position.
    assert check(account, eth, "BUY", "0.01", price=Decimal("3000")).approved


def test_it_counts_a_market_with_only_an_open_order_as_open(
    account: ExchangeAccount, market: Market, eth: Market
) -> None:
    limits(max_open_positions=1)
    open_order(account, eth, "BUY", "0.5")

    assert check(account, market, "BUY", "0.01").code == "MAX_OPEN_POSITIONS"


def test_it_lets_a_sell_pass_the_position_limits(account: ExchangeAccount, market: Market) -> None:
    hold(account, market, "0.2")  # 8000, over the 5000 limit after a limit change

    assert check(account, market, "SELL", "0.2").approved


def test_it_refuses_a_short_on_a_spot_account(account: ExchangeAccount, market: Market) -> None:
    decision = check(account, market, "SELL", "0.01")

    assert (decision.approved, decision.code) == (False, "SHORT_NOT_ALLOWED")


def test_it_prefers_account_limits_over_the_global_default(
    account: ExchangeAccount, market: Market, alice: User
) -> None:
    risk_limits_update(
        limits=None,
        account=account,
        changes={"max_position_notional": Decimal("1000")},
        reason="small account",
        actor=alice.username,
    )

    decision = check(account, market, "BUY", "0.025")  # 1000 is fine, 2000 is not

    assert decision.approved
    assert check(account, market, "BUY", "0.05").code == "MAX_POSITION_NOTIONAL"


def test_it_throttles_by_denying_never_by_queueing(
    account: ExchangeAccount, market: Market
) -> None:
    limits(max_orders_per_window=3, throttle_window_seconds=60)

    decisions = [check(account, market, "BUY", "0.001") for _ in range(5)]

    assert [d.code for d in decisions] == ["", "", "", "RATE_LIMITED", "RATE_LIMITED"]
    assert "3 orders in the last 60s (max 3)" in decisions[3].detail
    # Denied means gone: nothing waits to be sent later.
    assert RiskDecision.objects.filter(approved=True).count() == 3


def test_it_lets_orders_through_again_once_the_window_has_passed(
    account: ExchangeAccount, market: Market
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    limits(max_orders_per_window=2, throttle_window_seconds=60)
    check(account, market, "BUY", "0.001")
    check(account, market, "BUY", "0.001")
    assert check(account, market, "BUY", "0.001").code == "RATE_LIMITED"

    RiskDecision.objects.update(created_at=timezone.now() - timedelta(seconds=61))

    assert check(account, market, "BUY", "0.001").approved


def test_it_throttles_per_account(account: ExchangeAccount, market: Market) -> None:
    limits(max_orders_per_window=1)
    other = ExchangeAccount.objects.create(name="other", exchange=account.exchange)

    assert check(account, market, "BUY", "0.001").approved
    assert check(other, market, "BUY", "0.001").approved
    assert check(account, market, "BUY", "0.001").code == "RATE_LIMITED"


def test_it_denies_new_exposure_after_the_daily_loss_and_engages_the_kill_switch(
    account: ExchangeAccount, market: Market
) -> None:
    limits(max_daily_loss=Decimal("500"), max_leverage=Decimal("5"))
    hold(account, market, "0.1")
    mark(market, "40000")
    assert check(account, market, "BUY", "0.001").approved  # the day starts at 14000

    mark(market, "35000")  # 0.1 × 5000 = 500 lost
    decision = check(account, market, "BUY", "0.001", price=Decimal("35000"))

    assert (decision.approved, decision.code) == (False, "MAX_DAILY_LOSS")
    assert "daily loss 500.00" in decision.detail
    state = TradingState.objects.get(account=account)
    assert (state.state, state.kill_switch, state.code) == ("HALTED", True, "MAX_DAILY_LOSS")
    assert AuditEvent.objects.get(action="killswitch.on").actor == "system:risk"
    assert check(account, market, "SELL", "0.1", price=Decimal("35000")).code == "TRADING_HALTED"


def test_it_denies_new_exposure_in_a_drawdown_from_the_peak(
    account: ExchangeAccount, market: Market
) -> None:
    generous(max_drawdown=Decimal("0.1"))
    account.cash = Decimal("0")
    account.save()
    hold(account, market, "0.25")
    mark(market, "40000")
    assert check(account, market, "BUY", "0.001").approved  # peak 10000
    mark(market, "50000")
    assert check(account, market, "BUY", "0.001", price=Decimal("50000")).approved
    assert EquitySnapshot.objects.filter(account=account).first().peak == Decimal("12500")

    mark(market, "45000")  # 11250: 10 % below the peak
    decision = check(account, market, "BUY", "0.001", price=Decimal("45000"))

    assert decision.code == "MAX_DRAWDOWN"
    assert TradingState.objects.get(account=account).code == "MAX_DRAWDOWN"


def test_it_lets_only_reducing_flatten_orders_through_a_halt_while_a_flatten_is_pending(
    account: ExchangeAccount, market: Market, alice: User
) -> None:
    hold(account, market, "0.05")
    kill_switch_set(on=True, reason="flatten now", actor=alice.username)

    # No request yet: a flatten order is denied like any other.
    assert check(account, market, "SELL", "0.05", flatten=True).code == "TRADING_HALTED"

    kill_switch_set(on=True, reason="flatten now", actor=alice.username, flatten=True)
    assert FlattenRequest.objects.get().status == "pending"

    assert check(account, market, "BUY", "0.01").code == "TRADING_HALTED"
    assert check(account, market, "SELL", "0.05").code == "TRADING_HALTED"  # not marked
    assert check(account, market, "SELL", "0.06", flatten=True).code == "TRADING_HALTED"
    decision = check(account, market, "SELL", "0.05", flatten=True)
    assert (decision.approved, decision.flatten, decision.reduces) == (True, True, True)


def test_it_refuses_a_flatten_order_that_does_not_reduce(
    account: ExchangeAccount, market: Market
) -> None:
    assert check(account, market, "BUY", "0.01", flatten=True).code == "FLATTEN_NOT_REDUCING"


def test_it_records_the_limits_version_each_decision_was_made_under(
    account: ExchangeAccount, market: Market, alice: User
) -> None:
    first = check(account, market, "BUY", "0.1")  # 4000 ≤ 5000
    limits_row = risk_limits_update(
        limits=limits(),
        changes={"max_order_notional": Decimal("3000")},
        reason="tighter",
        actor=alice.username,
    )
    second = check(account, market, "BUY", "0.1")

    first.refresh_from_db()
    assert (first.approved, first.limits_version) == (True, 1)
    assert (second.approved, second.code, second.limits_version) == (
        False,
        "MAX_NOTIONAL",
        limits_row.version,
    )


def test_every_code_is_documented(db: None) -> None:
    from pathlib import Path

    from django.conf import settings

    doc = (Path(settings.BASE_DIR) / "docs" / "RISK.md").read_text()
    missing = [code for code in CODES if f"`{code}`" not in doc]
    assert not missing


def test_it_keeps_exact_decimals(account: ExchangeAccount, market: Market) -> None:
    generous()
    decision = check(account, market, "BUY", "0.12345", price=Decimal("40000.12345678"))

    decision.refresh_from_db()
    assert decision.notional == Decimal("4938.01524074")  # 0.12345 × 40000.12345678, 8 dp
    assert decision.price == Decimal("40000.12345678")
