"""The circuit breaker: the execution engine reports outcomes here; risk restricts trading.

Hooks the engine calls (exact signatures): `execution_error_record`,
`execution_success_record`, `slippage_record`, `reconciliation_mismatch`. Stale market data
is found by `market_data_watch` (a periodic task). What each trigger does is the severity
taxonomy in docs/RISK.md.

The engine may call a hook inside its own transaction (a fill being applied). The counting
happens there; any escalation runs after that transaction commits, in its own, so the
breaker never takes locks in the middle of the engine's work and never fails it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from marketdata.models import TIMEFRAMES, Candle, Market
from risk.models import TradingState
from risk.services.equity import equity_guard
from risk.services.limits import limits_for
from risk.services.state import trading_state_escalate, trading_state_recover
from trading.models import ExchangeAccount

logger = logging.getLogger(__name__)

State = TradingState.State

# The taxonomy, in one place: trigger -> (state it forces, incident severity).
TAXONOMY: dict[str, tuple[str, str]] = {
    "EXECUTION_ERRORS": (State.HALTED, "critical"),
    "SLIPPAGE": (State.REDUCING, "warning"),
    "DATA_STALE": (State.REDUCING, "warning"),
    "RECONCILIATION_MISMATCH": (State.HALTED, "critical"),
}


def _after_commit(fn: Callable[[], object]) -> None:
    transaction.on_commit(fn, robust=True)


def _escalate(code: str, reason: str, account: ExchangeAccount | None) -> None:
    to, severity = TAXONOMY[code]
    trading_state_escalate(
        to=to, code=code, reason=reason[:500], account=account, severity=severity
    )


def execution_error_record(*, account: ExchangeAccount, error: str) -> None:
    """One more execution error in a row; at the account's limit, halt the account."""
    with transaction.atomic():
        TradingState.objects.get_or_create(account=account)
        TradingState.objects.filter(account=account).update(
            consecutive_errors=F("consecutive_errors") + 1
        )
        count = TradingState.objects.values_list("consecutive_errors", flat=True).get(
            account=account
        )
    limit = limits_for(account).max_consecutive_errors
    logger.warning("execution error %d/%d on %s: %s", count, limit, account.name, error)
    if count >= limit:
        reason = f"{count} consecutive execution errors; last: {error}"
        _after_commit(lambda: _escalate("EXECUTION_ERRORS", reason, account))


def execution_success_record(*, account: ExchangeAccount) -> None:
    """An order went through: the run of errors is over."""
    TradingState.objects.filter(account=account, consecutive_errors__gt=0).update(
        consecutive_errors=0
    )


def slippage_bps(*, expected_price: Decimal, fill_price: Decimal, side: str) -> Decimal:
    """Adverse slippage in basis points (positive: the fill was worse than expected)."""
    if expected_price <= 0:
        return Decimal(0)
    move = (fill_price - expected_price) if side == "BUY" else (expected_price - fill_price)
    return move / expected_price * Decimal(10000)


def slippage_record(
    *,
    account: ExchangeAccount,
    market: Market,
    expected_price: Decimal,
    fill_price: Decimal,
    side: str,
) -> None:
    """A fill happened: check its slippage, and the account's daily loss and drawdown."""
    bps = slippage_bps(expected_price=expected_price, fill_price=fill_price, side=side)
    limit = limits_for(account).max_slippage_bps
    if bps > limit:
        reason = (
            f"{side} {market.symbol} filled at {fill_price} vs expected {expected_price}: "
            f"{bps:.1f} bps > {limit} bps"
        )
        _after_commit(lambda: _escalate("SLIPPAGE", reason, account))
    # A fill changes equity: the automatic kill switch looks right after it commits.
    _after_commit(lambda: equity_guard(account=account))


def reconciliation_mismatch(*, account: ExchangeAccount, detail: str) -> None:
    """Our books and the exchange disagree: halt the account until an operator looks."""
    _after_commit(lambda: _escalate("RECONCILIATION_MISMATCH", detail, account))


def _stale_limit(timeframe: str, bars: int) -> tuple[str, timedelta]:
    if settings.QT_MARKET_SOURCE == "replay":
        # Replayed bars carry historical times: what must keep moving is the replay clock.
        every = settings.QT_REPLAY_INTERVAL * (bars + 1)
        return "tick", timedelta(seconds=max(every, 60.0))
    return "bar", TIMEFRAMES[timeframe] * (bars + 1)


def stale_markets(*, now: object = None) -> list[tuple[Market, str]]:
    """Active markets whose data stopped: (market, why). Markets never fed are not judged
    (readiness reports those); only a feed that ran and then stopped is stale."""
    now = now or timezone.now()
    timeframe = settings.QT_TIMEFRAME
    kind, limit = _stale_limit(timeframe, limits_for(None).stale_data_bars)
    stale = []
    for market in Market.objects.filter(active=True).select_related("exchange"):
        newest = (
            Candle.objects.filter(market=market, timeframe=timeframe)
            .order_by("-open_time")
            .values_list("open_time", flat=True)
            .first()
        )
        if newest is None:
            continue
        seen = market.last_ingest_at if kind == "tick" else newest
        if seen is None:
            continue
        age = now - seen  # type: ignore[operator]
        if age > limit:
            stale.append((market, f"{market.symbol}: last {kind} {age} ago (limit {limit})"))
    return stale


def market_data_watch() -> list[str]:
    """Periodic: stale data moves trading (global) to REDUCING; fresh data clears that."""
    stale = stale_markets()
    if stale:
        reason = "stale market data: " + "; ".join(why for _, why in stale)
        _escalate("DATA_STALE", reason, None)
    elif TradingState.objects.filter(account__isnull=True, code="DATA_STALE").exists():
        trading_state_recover(code="DATA_STALE", reason="market data is fresh again")
    return [market.symbol for market, _ in stale]
