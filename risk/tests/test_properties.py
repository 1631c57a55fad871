"""Property tests: no sequence of orders that passes the pre-trade checks breaches a limit.

The database test drives the real `pretrade_check` with random sequences of orders, price
moves and state changes; every approved order is filled at its price (positions and cash
updated the way a fill does), and after each step the account is measured from the
database with plain arithmetic, independently of the risk code, against every limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from marketdata.models import Market
from marketdata.services.sync import market_register
from risk.lib.pretrade import (
    Book,
    Holding,
    Limits,
    OrderRequest,
    ScopeState,
    evaluate,
    gross_exposure,
    reduces,
)
from risk.models import RiskDecision, RiskLimits, TradingState
from risk.services.checks import pretrade_check
from risk.tests.factories import mark
from trading.models import ExchangeAccount, Position

D = Decimal

# --- the pure checks: any book, any order --------------------------------------------------

money = st.decimals(min_value=D("0"), max_value=D("100000"), places=2)
qty = st.decimals(min_value=D("-5"), max_value=D("5"), places=4)
pos_qty = st.decimals(min_value=D("0"), max_value=D("5"), places=4)

holdings_st = st.dictionaries(
    st.integers(1, 4),
    st.builds(Holding, quantity=qty, pending_buy=pos_qty, pending_sell=pos_qty, mark=money),
    max_size=4,
)
limits_st = st.builds(
    Limits,
    max_order_notional=money,
    max_position_notional=money,
    max_gross_exposure=money,
    max_leverage=st.decimals(min_value=D("0.1"), max_value=D("10"), places=2),
    max_open_positions=st.integers(0, 4),
    max_daily_loss=money,
    max_drawdown=st.decimals(min_value=D("0.01"), max_value=D("1"), places=2),
    max_orders_per_window=st.integers(0, 20),
    qty_precision=st.integers(0, 8),
    min_quantity=st.decimals(min_value=D("0"), max_value=D("1"), places=4),
    max_quantity=st.none() | st.decimals(min_value=D("0.0001"), max_value=D("5"), places=4),
    min_notional=st.decimals(min_value=D("0"), max_value=D("20"), places=2),
)
state_st = st.builds(
    ScopeState,
    scope=st.sampled_from(["global", "account"]),
    state=st.sampled_from(["ACTIVE", "REDUCING", "HALTED"]),
    kill_switch=st.booleans(),
)
book_st = st.builds(
    Book,
    holdings=holdings_st,
    equity=st.decimals(min_value=D("-1000"), max_value=D("100000"), places=2),
    peak_equity=money,
    day_start_equity=money,
    recent_orders=st.integers(0, 25),
    states=st.lists(state_st, max_size=2).map(tuple),
    flatten_pending=st.booleans(),
    allow_short=st.booleans(),
)
order_st = st.builds(
    OrderRequest,
    market_id=st.integers(1, 4),
    side=st.sampled_from(["BUY", "SELL", "HOLD"]),
    quantity=st.decimals(min_value=D("-1"), max_value=D("5"), places=6),
    price=st.decimals(min_value=D("0"), max_value=D("100000"), places=2),
    flatten=st.booleans(),
)


@settings(max_examples=1000, deadline=None)
@given(order=order_st, book=book_st, limits=limits_st)
def test_an_approved_order_never_takes_the_book_past_a_limit(
    order: OrderRequest, book: Book, limits: Limits
) -> None:
    if evaluate(order, book, limits) is not None:
        return
    holding = book.holdings.get(order.market_id, Holding())
    step = D(1).scaleb(-limits.qty_precision)
    # Always: a well-formed order inside the instrument rules and the throttle.
    assert order.side in ("BUY", "SELL") and order.quantity > 0 and order.price > 0
    assert order.quantity % step == 0
    assert limits.min_quantity <= order.quantity
    assert limits.max_quantity is None or order.quantity <= limits.max_quantity
    assert order.notional >= limits.min_notional
    assert book.recent_orders < limits.max_orders_per_window
    halted = any(s.kill_switch or s.state == "HALTED" for s in book.states)
    reducing_only = any(s.state == "REDUCING" for s in book.states)
    if reduces(order, holding):
        # Reducing: exposure cannot grow; a halt lets it through only as a requested flatten.
        # (Both sides mark the order's market at the order's price, as the checks do.)
        repriced = {**book.holdings, order.market_id: replace(holding, mark=order.price)}
        assert gross_exposure(book.holdings, order) <= gross_exposure(repriced)
        assert not halted or (order.flatten and book.flatten_pending)
        return
    assert not halted and not reducing_only and not order.flatten
    assert order.side == "BUY" or book.allow_short
    assert book.daily_loss < limits.max_daily_loss
    assert book.peak_equity <= 0 or book.drawdown < limits.max_drawdown
    assert order.notional <= limits.max_order_notional
    buy = order.quantity if order.side == "BUY" else D(0)
    sell = order.quantity if order.side == "SELL" else D(0)
    assert holding.worst_quantity(buy, sell) * order.price <= limits.max_position_notional
    gross = gross_exposure(book.holdings, order)
    assert gross <= limits.max_gross_exposure
    assert book.equity > 0 and gross <= limits.max_leverage * book.equity
    opened = {m for m, h in book.holdings.items() if h.is_open} | {order.market_id}
    assert len(opened) <= limits.max_open_positions


# --- the real checks against the database: sequences ---------------------------------------

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
START = (D("40000"), D("3000"), D("100"))


@dataclass
class World:
    account: ExchangeAccount
    markets: list[Market]
    limits: RiskLimits
    prices: list[Decimal]
    day_start: Decimal | None = None
    peak: Decimal = Decimal(0)
    approvals: int = 0
    halted_by_breach: bool = False
    log: list[str] = field(default_factory=list)

    def positions(self) -> dict[int, Decimal]:
        return {p.market_id: p.quantity for p in Position.objects.filter(account=self.account)}

    def equity(self) -> Decimal:
        self.account.refresh_from_db()
        held = self.positions()
        return self.account.cash + sum(
            (held.get(m.pk, D(0)) * p for m, p in zip(self.markets, self.prices, strict=True)),
            D(0),
        )

    def gross(self) -> Decimal:
        held = self.positions()
        return sum(
            (abs(held.get(m.pk, D(0))) * p for m, p in zip(self.markets, self.prices, strict=True)),
            D(0),
        )

    def fill(self, i: int, side: str, quantity: Decimal) -> None:
        """What a fill does to the books (no fee): position and cash."""
        market, price = self.markets[i], self.prices[i]
        position, _ = Position.objects.get_or_create(account=self.account, market=market)
        signed = quantity if side == "BUY" else -quantity
        position.quantity += signed
        position.average_price = price
        position.save()
        self.account.cash -= signed * price
        self.account.save(update_fields=["cash"])


buy_step = st.tuples(st.just("BUY"), st.integers(0, 2), st.integers(20, 6000))  # notional
sell_step = st.tuples(st.just("SELL"), st.integers(0, 2), st.integers(1, 120))  # % of held
# Prices drift down more than up, so that losses (daily loss, drawdown) come up often.
price_step = st.tuples(st.just("price"), st.integers(0, 2), st.integers(-30, 15))
state_step = st.tuples(st.just("state"), st.sampled_from(["ACTIVE", "ACTIVE", "REDUCING"]))
steps_st = st.lists(
    st.one_of(
        buy_step, buy_step, buy_step, sell_step, sell_step, price_step, price_step, state_step
    ),
    min_size=15,
    max_size=40,
)
limits_values = st.fixed_dictionaries(
    {
        "max_order_notional": st.integers(500, 6000).map(D),
        "max_position_notional": st.integers(1000, 8000).map(D),
        "max_gross_exposure": st.integers(1500, 12000).map(D),
        "max_leverage": st.sampled_from([D("0.3"), D("0.6"), D("1"), D("2")]),
        "max_open_positions": st.integers(1, 3),
        "max_daily_loss": st.integers(50, 1500).map(D),
        "max_drawdown": st.sampled_from([D("0.01"), D("0.02"), D("0.05"), D("0.1")]),
        "max_orders_per_window": st.integers(5, 60),
    }
)


def _quantity(world: World, i: int, side: str, amount: int) -> Decimal:
    step = D(1).scaleb(-world.markets[i].qty_precision)
    if side == "BUY":
        return (D(amount) / world.prices[i]).quantize(step, rounding="ROUND_DOWN")
    # A sell of some percent of what is held (over 100: more than held, which spot refuses).
    held = world.positions().get(world.markets[i].pk, D(0))
    return (max(held, step) * amount / 100).quantize(step, rounding="ROUND_DOWN")


def _run(world: World, steps: list[tuple]) -> None:
    for step in steps:
        if step[0] == "price":
            _, i, pct = step
            world.prices[i] = (world.prices[i] * (100 + pct) / 100).quantize(D("0.01"))
            mark(world.markets[i], world.prices[i])
            continue
        if step[0] == "state":
            TradingState.objects.filter(account=None).update(state=step[1], kill_switch=False)
            continue
        side, i, amount = step
        held = world.positions().get(world.markets[i].pk, D(0))
        quantity = _quantity(world, i, side, amount)
        if quantity <= 0:
            continue
        equity_before = world.equity()
        world.day_start = equity_before if world.day_start is None else world.day_start
        world.peak = max(world.peak, equity_before)
        breach = (
            world.day_start - equity_before >= world.limits.max_daily_loss
            or (world.peak - equity_before) / world.peak >= world.limits.max_drawdown
        )
        global_state = TradingState.objects.get(account=None).state
        decision = pretrade_check(
            account=world.account,
            market=world.markets[i],
            side=side,
            quantity=quantity,
            price=world.prices[i],
        )
        world.log.append(f"{side} {quantity} {SYMBOLS[i]} @ {world.prices[i]} -> {decision.code}")
        # A breach seen by a check engages the account's kill switch: nothing passes after it.
        was_halted, world.halted_by_breach = (
            world.halted_by_breach,
            world.halted_by_breach or breach,
        )
        if not decision.approved:
            continue
        world.approvals += 1
        L = world.limits
        assert world.approvals <= L.max_orders_per_window
        assert not was_halted, world.log
        assert not breach or decision.reduces, world.log
        assert global_state == "ACTIVE" or decision.reduces, world.log
        gross_before = world.gross()
        abs_before = abs(held)
        world.fill(i, side, quantity)
        held_after = world.positions()[world.markets[i].pk]
        assert held_after >= 0, "a spot account never goes short"
        if decision.reduces:
            assert abs(held_after) < abs_before
            assert world.gross() < gross_before
            continue
        assert quantity * world.prices[i] <= L.max_order_notional
        assert abs(held_after) * world.prices[i] <= L.max_position_notional, world.log
        assert world.gross() <= L.max_gross_exposure, world.log
        assert world.gross() <= L.max_leverage * equity_before, world.log
        assert sum(1 for q in world.positions().values() if q != 0) <= L.max_open_positions
        assert world.day_start - equity_before < L.max_daily_loss
        assert (world.peak - equity_before) / world.peak < L.max_drawdown


@pytest.mark.django_db
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(values=limits_values, steps=steps_st)
def test_no_sequence_of_approved_orders_breaches_a_limit(
    paper_account: ExchangeAccount, values: dict[str, Decimal], steps: list[tuple]
) -> None:
    assume(any(s[0] == "BUY" for s in steps))
    # Each example starts from the same account and rolls back everything it did.
    with transaction.atomic():
        markets = [market_register(exchange_code="binance", symbol=s) for s in SYMBOLS]
        for market, price in zip(markets, START, strict=True):
            mark(market, price)
        limits, _ = RiskLimits.objects.get_or_create(account=None)
        for name, value in values.items():
            setattr(limits, name, value)
        limits.save()
        world = World(
            account=ExchangeAccount.objects.get(pk=paper_account.pk),
            markets=markets,
            limits=limits,
            prices=list(START),
        )
        _run(world, steps)
        assert RiskDecision.objects.filter(approved=True).count() == world.approvals
        transaction.set_rollback(True)
