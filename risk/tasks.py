"""Celery tasks of the risk engine: thin wrappers around services."""

from __future__ import annotations

from datetime import datetime

from celery import shared_task

from risk.services import breaker, watch
from risk.services.orders import orders_cancel_open
from trading.models import ExchangeAccount


@shared_task(ignore_result=True)
def risk_watch() -> None:
    """Periodic: equity snapshots, the automatic kill switch, cancels left under a halt."""
    watch.risk_watch()


@shared_task(ignore_result=True)
def market_data_watch() -> None:
    """Periodic: the circuit breaker's stale market data check."""
    breaker.market_data_watch()


@shared_task(ignore_result=True, acks_late=True)
def cancel_open_orders(
    account_id: int | None, cause: str, created_before: str | None = None
) -> None:
    """Cancel the open orders of one account, or of every account (the kill switch)."""
    account = ExchangeAccount.objects.get(pk=account_id) if account_id is not None else None
    before = datetime.fromisoformat(created_before) if created_before else None
    orders_cancel_open(account=account, cause=cause, created_before=before)
