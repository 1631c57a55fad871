"""Risk limits: read the ones that apply, change them (operators only, with a reason)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction

from marketdata.models import Market
from risk.models import MarketLimits, RiskLimits
from risk.services.audit import audit_record
from trading.models import ExchangeAccount

# What an operator may change on RiskLimits and MarketLimits (nothing else: not the version,
# not the account a row belongs to).
EDITABLE_LIMITS = (
    "max_order_notional",
    "max_position_notional",
    "max_gross_exposure",
    "max_leverage",
    "max_open_positions",
    "max_daily_loss",
    "max_drawdown",
    "max_orders_per_window",
    "throttle_window_seconds",
    "max_consecutive_errors",
    "max_slippage_bps",
    "stale_data_bars",
    "position_fraction",
)
EDITABLE_MARKET_LIMITS = ("min_quantity", "max_quantity")


class ReasonRequired(ValueError):
    pass


def limits_for(account: ExchangeAccount | None) -> RiskLimits:
    """The account's own limits if it has a row, else the global default (created if missing)."""
    if account is not None:
        limits = RiskLimits.objects.filter(account=account).first()
        if limits is not None:
            return limits
    limits, _ = RiskLimits.objects.get_or_create(account=None)
    return limits


def market_limits_for(market: Market) -> MarketLimits | None:
    return MarketLimits.objects.filter(market=market).first()


def _jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


def _apply(obj: Any, fields: tuple[str, ...], changes: dict[str, Any]) -> dict[str, list[Any]]:
    unknown = set(changes) - set(fields)
    if unknown:
        raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
    diff = {}
    for name, value in changes.items():
        before = getattr(obj, name)
        if before != value:
            diff[name] = [_jsonable(before), _jsonable(value)]
            setattr(obj, name, value)
    return diff


@transaction.atomic
def risk_limits_update(
    *,
    limits: RiskLimits | None,
    account: ExchangeAccount | None = None,
    changes: dict[str, Any],
    reason: str,
    actor: str,
) -> RiskLimits:
    """Change limits (creating an account's own row if `limits` is None); audited, versioned.

    Orders already past their checks keep the decision they got: nothing here touches
    decisions or orders, and each decision records the version it was checked under.
    """
    if not reason.strip():
        raise ReasonRequired("a reason is required to change risk limits")
    if limits is None:
        # An account's own row starts as a copy of the global one, then takes the changes.
        base = limits_for(None)
        limits = RiskLimits.objects.create(
            account=account, **{name: getattr(base, name) for name in EDITABLE_LIMITS}
        )
    else:
        limits = RiskLimits.objects.select_for_update().get(pk=limits.pk)
    diff = _apply(limits, EDITABLE_LIMITS, changes)
    limits.version += 1
    limits.changed_by = actor
    limits.reason = reason
    limits.full_clean()
    limits.save()
    audit_record(
        actor=actor,
        action="risk.limits_changed",
        obj=limits,
        payload={
            "scope": limits.account.name if limits.account else "global",
            "version": limits.version,
            "changes": diff,
            "reason": reason,
        },
    )
    return limits


@transaction.atomic
def market_limits_update(
    *, market: Market, changes: dict[str, Any], reason: str, actor: str
) -> MarketLimits:
    """Change a market's quantity limits; audited, versioned."""
    if not reason.strip():
        raise ReasonRequired("a reason is required to change risk limits")
    limits, _ = MarketLimits.objects.select_for_update().get_or_create(market=market)
    diff = _apply(limits, EDITABLE_MARKET_LIMITS, changes)
    limits.version += 1
    limits.changed_by = actor
    limits.reason = reason
    limits.full_clean()
    limits.save()
    audit_record(
        actor=actor,
        action="risk.market_limits_changed",
        obj=limits,
        payload={
            "market": market.symbol,
            "version": limits.version,
            "changes": diff,
            "reason": reason,
        },
    )
    return limits
