"""Talking to the exchange about one order: submit, resolve an unclear outcome, cancel.

The rule that keeps money safe: an order whose outcome is unclear (timeout, disconnect,
5xx, 429) stays SUBMITTED — in flight — and is resolved by asking the exchange for its
client order id. It is never sent again under a new id, and a resend under the same id is
refused by the exchange as a duplicate.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from quantum.metrics import ORDER_LATENCY
from trading.adapters import (
    NotSent,
    OrderRejected,
    OrderSnapshot,
    UnclearOutcome,
    adapter_for,
)
from trading.models import ExchangeAccount, Order
from trading.services.orders import TRANSITIONS, S, fill_apply, order_transition

logger = logging.getLogger(__name__)

# After QT_NOT_FOUND_GRACE_S (60 s), an order the exchange does not know never reached it:
# the request was refused or dropped before matching (Binance rejects requests older than
# recvWindow, 5 s; the client gives up after 10 s), so it is safe to call it rejected.
OPEN = (S.SUBMITTED, S.ACCEPTED, S.PARTIALLY_FILLED)


def _breaker(name: str, **kwargs: object) -> None:
    """Tell the circuit breaker (risk) about an execution outcome; never fail the order path."""
    from risk.services import breaker  # late: risk's checks import the engine's models

    try:
        getattr(breaker, name)(**kwargs)
    except Exception:
        logger.exception("circuit breaker hook %s failed", name)


def intent_expired(order: Order) -> bool:
    """A NEW order older than QT_INTENT_TTL_S is never sent (see `intent_expire`)."""
    age = timezone.now() - order.created_at
    return age > timedelta(seconds=settings.QT_INTENT_TTL_S)


def intent_expire(*, order: Order) -> Order:
    """Cancel a NEW order whose worker died before sending it, once it is too old to send.

    The row is locked: a redelivered task sending the same order waits and then finds it
    canceled (or the resolver finds it submitted and leaves it alone).
    """
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order.pk)
        if order.status == S.NEW and intent_expired(order):
            age = int((timezone.now() - order.created_at).total_seconds())
            order_transition(
                order=order, to=S.CANCELED, cause=f"never sent: the intent expired after {age}s"
            )
    return order


def order_submit(*, order: Order, reference_price: Decimal) -> Order:
    """Send a NEW order (already persisted as an intent) and apply what comes back.

    Only a NEW order is sent, and only once: the row is locked while it moves to SUBMITTED,
    so a redelivered task and a resolver never both act on it. An intent older than
    QT_INTENT_TTL_S is canceled instead of sent.
    """
    with transaction.atomic():
        order = (
            Order.objects.select_for_update(of=("self",))
            .select_related("account", "account__exchange", "market", "market__exchange")
            .get(pk=order.pk)
        )
        if order.status != S.NEW:
            return order
        if intent_expired(order):
            return intent_expire(order=order)
        order.submitted_at = timezone.now()
        order.save(update_fields=["submitted_at", "updated_at"])
        order_transition(order=order, to=S.SUBMITTED, cause="submit")
    adapter = adapter_for(order.account)
    try:
        result = adapter.submit(order, reference_price=reference_price, at=timezone.now())
        ORDER_LATENCY.labels(exchange=order.account.exchange.code, mode=order.account.mode).observe(
            (timezone.now() - order.submitted_at).total_seconds()
        )
    except (OrderRejected, NotSent) as exc:
        # A refusal before anything was sent is as final as the exchange's no: a market
        # order decided on one bar is not sent a minute later.
        with transaction.atomic():
            order.error = str(exc)[:500]
            order.save(update_fields=["error", "updated_at"])
            prefix = "not sent" if isinstance(exc, NotSent) else "exchange rejected"
            order_transition(order=order, to=S.REJECTED, cause=f"{prefix}: {exc}"[:300])
        if isinstance(exc, OrderRejected):
            _breaker("execution_error_record", account=order.account, error=str(exc))
        return order
    except UnclearOutcome as exc:
        order.error = str(exc)[:500]
        order.save(update_fields=["error", "updated_at"])
        logger.warning(
            "order %s in flight after unclear outcome: %s",
            order.client_order_id,
            exc,
            extra={"order": order.pk},
        )
        _breaker("execution_error_record", account=order.account, error=str(exc))
        return order
    _breaker("execution_success_record", account=order.account)
    return snapshot_apply(
        order=order,
        snapshot=OrderSnapshot(
            client_order_id=order.client_order_id,
            exchange_order_id=result.exchange_order_id,
            status=result.status,
            filled_quantity=sum((f.quantity for f in result.fills), Decimal(0)),
            fills=result.fills,
        ),
        reference_price=reference_price,
        cause="exchange ack",
    )


@transaction.atomic
def snapshot_apply(
    *,
    order: Order,
    snapshot: OrderSnapshot,
    reference_price: Decimal | None = None,
    cause: str = "found at exchange",
) -> Order:
    """Bring the local order in line with the exchange's view: fills first, then status."""
    order = Order.objects.select_for_update().get(pk=order.pk)
    if not order.exchange_order_id and snapshot.exchange_order_id:
        order.exchange_order_id = snapshot.exchange_order_id
        order.save(update_fields=["exchange_order_id", "updated_at"])
    if order.status == S.SUBMITTED and snapshot.status != S.REJECTED:
        order_transition(order=order, to=S.ACCEPTED, cause=cause)
    for report in snapshot.fills:
        fill = fill_apply(order=order, report=report)
        if fill is not None and reference_price is not None:
            _breaker(
                "slippage_record",
                account=order.account,
                market=order.market,
                expected_price=reference_price,
                fill_price=fill.price,
                side=order.side,
            )
        order.refresh_from_db()
    final = snapshot.status
    if final in (S.CANCELED, S.EXPIRED, S.REJECTED) and final in TRANSITIONS[order.status]:
        order_transition(order=order, to=final, cause="exchange reports " + final)
    order.checked_at = timezone.now()
    order.save(update_fields=["checked_at", "updated_at"])
    return order


def order_resolve(*, order: Order) -> Order:
    """Settle an in-flight or open order by asking the exchange for its client order id."""
    if order.status not in OPEN or order.account.is_paper:
        return order
    adapter = adapter_for(order.account)
    try:
        snapshot = adapter.fetch(order)
    except (UnclearOutcome, NotSent, OrderRejected) as exc:
        # A refused look-up (auth, a symbol the venue no longer lists) says nothing about
        # the order: it stays in flight, and reconciliation halts the account meanwhile.
        logger.warning("cannot resolve %s yet: %s", order.client_order_id, exc)
        return order
    if snapshot is not None:
        return snapshot_apply(order=order, snapshot=snapshot)
    age = timezone.now() - (order.submitted_at or order.created_at)
    if order.status == S.SUBMITTED and age > timedelta(seconds=settings.QT_NOT_FOUND_GRACE_S):
        with transaction.atomic():
            order_transition(
                order=order,
                to=S.REJECTED,
                cause=f"not found at the exchange {int(age.total_seconds())}s after submit",
            )
    return order


def order_cancel(*, order: Order, cause: str) -> Order:
    """Cancel at the exchange (if it is open there) and record the cancel."""
    if order.status not in (S.NEW, *OPEN):
        return order
    if order.status == S.NEW:
        with transaction.atomic():
            order_transition(order=order, to=S.CANCELED, cause=cause)
        return order
    if not order.account.is_paper:
        adapter = adapter_for(order.account)
        try:
            adapter.cancel(order)
        except (UnclearOutcome, OrderRejected, NotSent) as exc:
            # Resolution decides: it may have filled meanwhile (the canceled/filled race).
            logger.warning("cancel of %s unclear: %s", order.client_order_id, exc)
            return order_resolve(order=order)
    with transaction.atomic():
        order.refresh_from_db()
        if order.status in OPEN:
            order_transition(order=order, to=S.CANCELED, cause=cause)
    return order


def orders_resolve_in_flight(
    *, older_than: timedelta = timedelta(seconds=3), account: ExchangeAccount | None = None
) -> int:
    """Periodic: resolve every open exchange order not checked recently, and cancel every
    intent that expired unsent (any mode: a paper worker dies the same way)."""
    cutoff = timezone.now() - older_than
    count = 0
    expired_before = timezone.now() - timedelta(seconds=settings.QT_INTENT_TTL_S)
    stale = Order.objects.filter(status=S.NEW, created_at__lt=expired_before)
    if account is not None:
        stale = stale.filter(account=account)
    for order in stale[:200]:
        intent_expire(order=order)
        count += 1
    qs = Order.objects.filter(status__in=OPEN).exclude(account__mode="paper")
    if account is not None:
        qs = qs.filter(account=account)
    for order in qs.select_related("account", "account__exchange", "market")[:200]:
        if order.checked_at and order.checked_at > cutoff:
            continue
        try:
            order_resolve(order=order)
        except Exception:
            # One order's surprise (a venue answer we cannot parse) must not leave the rest
            # of the batch unresolved; it is logged with its traceback and tried again.
            logger.exception("resolving %s failed", order.client_order_id)
            continue
        count += 1
    return count
