"""The periodic risk watch: what must be looked at even when no order is being placed."""

from __future__ import annotations

import logging

from risk.models import FlattenRequest, TradingState
from risk.services.equity import equity_guard, equity_snapshots_prune
from risk.services.orders import open_orders, orders_cancel_open
from trading.models import ExchangeAccount

logger = logging.getLogger(__name__)


def risk_watch() -> dict[str, object]:
    """Snapshot equity and apply the automatic kill switch for every account; cancel orders
    still open under a kill switch (one approved just before it engaged, say)."""
    breaches = {}
    for account in ExchangeAccount.objects.all().order_by("id"):
        try:
            code = equity_guard(account=account, periodic=True)
        except Exception:  # one account's failure must not blind the watch to the others
            logger.exception("risk watch failed for %s", account.name)
            continue
        if code:
            breaches[account.name] = code
    canceled = 0
    halted = TradingState.objects.filter(kill_switch=True).select_related("account")
    # While a flatten request is pending its reducing orders are open on purpose.
    if not FlattenRequest.objects.filter(status=FlattenRequest.Status.PENDING).exists():
        scopes: list[ExchangeAccount | None] = (
            [None]
            if halted.filter(account__isnull=True).exists()
            else [state.account for state in halted.exclude(account__isnull=True)]
        )
        for scope in scopes:
            if open_orders(account=scope).exists():
                canceled += orders_cancel_open(account=scope, cause="kill switch is on")
    equity_snapshots_prune()
    return {"breaches": breaches, "canceled": canceled}
