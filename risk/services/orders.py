"""What the kill switch does to orders and positions: cancel what is open, close what is held.

Risk never talks to an exchange itself. Cancels go through the execution engine's
`order_cancel`; flattening is a request that the engine's `trading.tasks.flatten_positions`
carries out with reducing orders (which pass the pre-trade checks with `flatten=True`).
"""

from __future__ import annotations

import logging
from datetime import datetime

from celery import current_app
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from risk.models import FlattenRequest
from risk.services.audit import audit_record
from risk.services.incidents import incident_open
from trading.models import ExchangeAccount, Order

logger = logging.getLogger(__name__)

OPEN_STATUSES = (
    Order.Status.NEW,
    Order.Status.SUBMITTED,
    Order.Status.ACCEPTED,
    Order.Status.PARTIALLY_FILLED,
)
FLATTEN_TASK = "trading.tasks.flatten_positions"
CANCEL_TASK = "risk.tasks.cancel_open_orders"


def _order_cancel():  # type: ignore[no-untyped-def]
    """The engine's cancel (imported late: the engine imports risk's checks)."""
    from trading.services.submission import order_cancel

    return order_cancel


def open_orders(*, account: ExchangeAccount | None = None) -> QuerySet[Order]:
    qs = Order.objects.filter(status__in=OPEN_STATUSES).select_related("account", "market")
    return qs.filter(account=account) if account is not None else qs


def orders_cancel_open(
    *, account: ExchangeAccount | None = None, cause: str, created_before: datetime | None = None
) -> int:
    """Cancel every open order of the scope (one failure does not stop the others).

    `created_before` spares orders placed after the kill switch engaged: those are the
    flatten orders, which passed the halt on purpose.
    """
    order_cancel = _order_cancel()
    canceled = 0
    orders = open_orders(account=account)
    if created_before is not None:
        orders = orders.filter(created_at__lt=created_before)
    for order in orders.order_by("id"):
        try:
            result = order_cancel(order=order, cause=cause)
        except Exception:
            logger.exception("kill switch: cancel of %s failed", order.client_order_id)
            continue
        if result.status == Order.Status.CANCELED:
            canceled += 1
    return canceled


def open_orders_cancel_enqueue(*, account: ExchangeAccount | None, cause: str) -> None:
    """Ask a worker to cancel the scope's open orders once this transaction commits."""
    account_id = account.pk if account is not None else None
    before = timezone.now().isoformat()
    transaction.on_commit(
        lambda: current_app.send_task(
            CANCEL_TASK,
            kwargs={"account_id": account_id, "cause": cause, "created_before": before},
        ),
        robust=True,
    )


@transaction.atomic
def positions_flatten_request(
    *, actor: str, reason: str, account: ExchangeAccount | None = None
) -> FlattenRequest:
    """Record a request to close every position of the scope; the engine's task does it.

    After commit `trading.tasks.flatten_positions(request_id=...)` is sent; it places
    reducing orders through the pre-trade checks with `flatten=True` and ends with
    `flatten_request_complete`.
    """
    request = FlattenRequest.objects.create(account=account, requested_by=actor, reason=reason)
    scope = f"account {account.name}" if account is not None else "every account"
    audit_record(
        actor=actor,
        action="positions.flatten_requested",
        obj=request,
        payload={"scope": scope, "reason": reason},
    )
    incident_open(
        severity="warning",
        code="FLATTEN",
        title=f"Flatten requested for {scope} by {actor}",
        detail=reason,
        account=account,
        audit=False,
    )
    transaction.on_commit(
        lambda: current_app.send_task(FLATTEN_TASK, kwargs={"request_id": request.pk}),
        robust=True,
    )
    return request


@transaction.atomic
def flatten_request_complete(*, request_id: int, ok: bool = True, detail: str = "") -> None:
    """The engine reports that a flatten request is done (or failed)."""
    request = FlattenRequest.objects.select_for_update().get(pk=request_id)
    request.status = FlattenRequest.Status.DONE if ok else FlattenRequest.Status.FAILED
    request.detail = detail[:500]
    request.completed_at = timezone.now()
    request.save()
    audit_record(
        actor="system:execution",
        action="positions.flattened" if ok else "positions.flatten_failed",
        obj=request,
        payload={"detail": detail},
    )
    if not ok:
        incident_open(
            severity="critical",
            code="FLATTEN_FAILED",
            title=f"Flatten request #{request.pk} failed",
            detail=detail,
            account=request.account,
        )


def flatten_pending(*, account: ExchangeAccount) -> bool:
    """A pending request covers this account (its own or one for every account)."""
    return FlattenRequest.objects.filter(
        Q(account__isnull=True) | Q(account=account), status=FlattenRequest.Status.PENDING
    ).exists()
