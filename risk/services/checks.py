"""Pre-trade checks: every order intent passes here, and each outcome is stored and audited.

The arithmetic lives in `risk.lib.pretrade.evaluate`; this module reads the account's book
under a lock on the account's trading-state row, so two checks for one account never both
pass a limit that only one of them fits, and stores the decision with the limits version
it was made under.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import F, Max, Sum
from django.utils import timezone

from marketdata.models import Candle, Market
from risk.lib.pretrade import Book, Holding, Limits, OrderRequest, ScopeState, evaluate, reduces
from risk.models import RiskDecision, RiskLimits, TradingState
from risk.services.audit import audit_record
from risk.services.equity import EquityView, equity_guard, equity_view
from risk.services.limits import limits_for, market_limits_for
from risk.services.orders import OPEN_STATUSES, flatten_pending
from risk.services.state import halt_flags, state_lock
from trading.models import ExchangeAccount, Order, Position, Signal

__all__ = ["limits_for", "pretrade_check"]

EIGHT_PLACES = Decimal("0.00000001")


def _mark(market_id: int) -> Decimal | None:
    return (
        Candle.objects.filter(market_id=market_id)
        .order_by("-open_time")
        .values_list("close", flat=True)
        .first()
    )


def _holdings(account: ExchangeAccount, market: Market, price: Decimal) -> dict[int, Holding]:
    positions = {
        market_id: (quantity, average)
        for market_id, quantity, average in Position.objects.filter(account=account)
        .exclude(quantity=0)
        .values_list("market_id", "quantity", "average_price")
    }
    pending: dict[tuple[int, str], Decimal] = {}
    order_prices: dict[int, Decimal] = {}
    rows = (
        Order.objects.filter(account=account, status__in=OPEN_STATUSES)
        .values("market_id", "side")
        .annotate(remaining=Sum(F("quantity") - F("filled_quantity")), price=Max("price"))
    )
    for row in rows:
        pending[(row["market_id"], row["side"])] = max(row["remaining"] or Decimal(0), Decimal(0))
        if row["price"]:
            order_prices[row["market_id"]] = row["price"]
    holdings = {}
    for market_id in set(positions) | {m for m, _ in pending} | {market.pk}:
        quantity, average = positions.get(market_id, (Decimal(0), Decimal(0)))
        # The order's own price for its market; elsewhere the last close, else what we know.
        mark = (
            price
            if market_id == market.pk
            else (_mark(market_id) or average or order_prices.get(market_id, Decimal(0)))
        )
        holdings[market_id] = Holding(
            quantity=quantity,
            pending_buy=pending.get((market_id, "BUY"), Decimal(0)),
            pending_sell=pending.get((market_id, "SELL"), Decimal(0)),
            mark=mark,
        )
    return holdings


def _limits(limits: RiskLimits, market: Market) -> Limits:
    instrument = market_limits_for(market)
    return Limits(
        max_order_notional=limits.max_order_notional,
        max_position_notional=limits.max_position_notional,
        max_gross_exposure=limits.max_gross_exposure,
        max_leverage=limits.max_leverage,
        max_open_positions=limits.max_open_positions,
        max_daily_loss=limits.max_daily_loss,
        max_drawdown=limits.max_drawdown,
        max_orders_per_window=limits.max_orders_per_window,
        throttle_window_seconds=limits.throttle_window_seconds,
        qty_precision=market.qty_precision,
        min_quantity=instrument.min_quantity if instrument else Decimal(0),
        max_quantity=instrument.max_quantity if instrument else None,
        min_notional=market.min_notional,
    )


def _states(account: ExchangeAccount, account_state: TradingState) -> tuple[ScopeState, ...]:
    scopes = []
    global_state = TradingState.objects.filter(account__isnull=True).first()
    for scope, row in (("global", global_state), ("account", account_state)):
        if row is not None:
            scopes.append(ScopeState(scope, row.state, row.kill_switch, row.reason))
    # A kill switch whose state row is not committed yet halts all the same (the fast path).
    for scope, reason in halt_flags(account).items():
        scopes.append(ScopeState(scope, TradingState.State.HALTED, True, reason))
    return tuple(scopes)


def _book(
    account: ExchangeAccount,
    market: Market,
    price: Decimal,
    limits: RiskLimits,
    account_state: TradingState,
    equity: EquityView,
) -> Book:
    since = timezone.now() - timedelta(seconds=limits.throttle_window_seconds)
    return Book(
        holdings=_holdings(account, market, price),
        equity=equity.equity,
        peak_equity=equity.peak,
        day_start_equity=equity.day_start,
        recent_orders=RiskDecision.objects.filter(
            account=account, approved=True, created_at__gte=since
        ).count(),
        states=_states(account, account_state),
        flatten_pending=flatten_pending(account=account),
        allow_short=getattr(account, "market_type", "spot") == "futures",
    )


@transaction.atomic
def pretrade_check(
    *,
    account: ExchangeAccount,
    market: Market,
    side: str,
    quantity: Decimal,
    price: Decimal,
    signal: Signal | None = None,
    flatten: bool = False,
) -> RiskDecision:
    """Run every check; the first failure denies. The decision is stored and audited.

    `flatten=True` marks an order placed for an operator's flatten request: it must reduce,
    and it is the only kind that passes a halt while such a request is pending.
    """
    # The lock on the account's state row serialises checks for one account (and orders
    # them against the breaker and the kill switch of that account).
    account_state = state_lock(account)
    # Read once: a concurrent limit change is either entirely before this check or entirely
    # after it, and the decision records which version it was.
    limits = limits_for(account)
    equity = equity_view(account=account)
    book = _book(account, market, price, limits, account_state, equity)
    order = OrderRequest(
        market_id=market.pk, side=side, quantity=quantity, price=price, flatten=flatten
    )
    denial = evaluate(order, book, _limits(limits, market))
    notional = quantity * price
    decision = RiskDecision.objects.create(
        signal=signal,
        account=account,
        market=market,
        side=side[:4],
        quantity=quantity,
        price=price.quantize(EIGHT_PLACES),
        notional=notional.quantize(EIGHT_PLACES),
        approved=denial is None,
        code=denial.code if denial else "",
        detail=denial.detail[:500] if denial else "",
        reduces=reduces(order, book.holdings[market.pk]),
        flatten=flatten,
        limits_version=limits.version,
    )
    audit_record(
        actor="system:risk",
        action="risk.approved" if denial is None else "risk.denied",
        obj=decision,
        payload={
            "code": decision.code,
            "detail": decision.detail,
            "account": account.name,
            "side": side,
            "quantity": str(quantity),
            "price": str(price),
            "market": market.symbol,
            "signal": signal.pk if signal else None,
            "flatten": flatten,
            "limits_version": limits.version,
        },
    )
    # Every observation of a daily-loss or drawdown breach engages the automatic kill switch.
    equity_guard(account=account, view=equity)
    if denial is not None:
        from quantum.metrics import RISK_DENIALS

        RISK_DENIALS.labels(code=denial.code).inc()
    return decision
