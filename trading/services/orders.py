"""Orders: intent before submit, an explicit state machine, fills de-duplicated by trade id."""

from __future__ import annotations

import logging
from decimal import Decimal

from django.db import transaction

from quantum.metrics import ORDER_TRANSITIONS, ORDERS
from quantum.realtime import push_html
from risk.services.audit import audit_record
from trading.adapters import FillReport
from trading.lib.fills import quantize
from trading.models import Fill, Order, OrderEvent
from trading.selectors import positions_with_pnl
from trading.services.positions import position_apply_fill

logger = logging.getLogger(__name__)

S = Order.Status
TRANSITIONS: dict[str, set[str]] = {
    S.NEW: {S.SUBMITTED, S.REJECTED, S.CANCELED},
    S.SUBMITTED: {S.ACCEPTED, S.REJECTED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED},
    S.ACCEPTED: {S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED},
    S.PARTIALLY_FILLED: {S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED},
    # An exchange can report a fill that raced the cancel; the fill is the truth.
    S.CANCELED: {S.PARTIALLY_FILLED, S.FILLED},
    S.FILLED: set(),
    S.REJECTED: set(),
    S.EXPIRED: set(),
}


class IllegalTransition(Exception):
    pass


def order_transition(*, order: Order, to: str, cause: str) -> None:
    """Move `order` to state `to` (or raise), persisting and auditing the change.

    The check is made against the row as it is now, locked: another process (a resolver,
    a redelivered task) may have moved the order since this object was loaded.
    """
    current = Order.objects.select_for_update().values_list("status", flat=True).get(pk=order.pk)
    if to not in TRANSITIONS[current]:
        order.status = current
        raise IllegalTransition(f"order {order.client_order_id}: {current} -> {to}")
    previous = current
    order.status = to
    order.save(update_fields=["status", "updated_at"])
    OrderEvent.objects.create(order=order, from_status=previous, to_status=to, cause=cause)
    logger.info("order %s -> %s: %s", order.client_order_id, to, cause)
    ORDER_TRANSITIONS.labels(status=to).inc()
    audit_record(
        actor="system:execution",
        action=f"order.{to}",
        obj=order,
        payload={
            "from": previous,
            "to": to,
            "cause": cause,
            "client_order_id": order.client_order_id,
        },
    )


@transaction.atomic
def order_intent_create(
    *,
    account_id: int,
    market_id: int,
    signal_id: int | None,
    side: str,
    quantity: Decimal,
    client_order_id: str,
    strategy: str,
    reason: str,
) -> Order:
    """Persist the order before anything is sent anywhere."""
    order = Order.objects.create(
        account_id=account_id,
        market_id=market_id,
        signal_id=signal_id,
        side=side,
        quantity=quantity,
        client_order_id=client_order_id,
        strategy=strategy,
        reason=reason,
    )
    ORDERS.labels(side=side, strategy=strategy).inc()
    audit_record(
        actor="system:execution",
        action="order.created",
        obj=order,
        payload={
            "client_order_id": client_order_id,
            "side": side,
            "quantity": str(quantity),
            "signal": signal_id,
            "strategy": strategy,
        },
    )
    return order


@transaction.atomic
def fill_apply(*, order: Order, report: FillReport) -> Fill | None:
    """Record a fill once (by exchange trade id) and update order, position and cash."""
    fill, created = Fill.objects.get_or_create(
        order=order,
        trade_id=report.trade_id,
        defaults={
            "price": report.price,
            "quantity": report.quantity,
            "fee": report.fee,
            "fee_currency": report.fee_currency,
            "filled_at": report.filled_at,
        },
    )
    if not created:
        logger.info("duplicate fill %s ignored", report.trade_id, extra={"order": order.pk})
        return None
    filled_before = order.filled_quantity
    order.filled_quantity = filled_before + fill.quantity
    order.average_price = quantize(
        ((order.average_price or Decimal(0)) * filled_before + fill.price * fill.quantity)
        / order.filled_quantity,
        8,
    )
    order.save(update_fields=["filled_quantity", "average_price", "updated_at"])
    audit_record(
        actor="system:execution",
        action="fill.recorded",
        obj=fill,
        payload={
            "order": order.client_order_id,
            "trade_id": fill.trade_id,
            "price": str(fill.price),
            "quantity": str(fill.quantity),
            "fee": str(fill.fee),
        },
    )
    logger.info(
        "fill %s of %s: %s @ %s", fill.trade_id, order.client_order_id, fill.quantity, fill.price
    )
    done = order.filled_quantity >= order.quantity
    order_transition(order=order, to=S.FILLED if done else S.PARTIALLY_FILLED, cause="fill")
    position_apply_fill(fill=fill)

    from quantum.metrics import FILLS

    FILLS.labels(market=order.market.symbol, side=order.side).inc()
    push_html(template="trading/push/fill.html", context={"fill": fill})
    # A message of its own: the HTML parser cannot mix a <table> with the <tbody> rows above.
    push_html(
        template="trading/push/positions.html",
        context={"positions": positions_with_pnl(account=order.account)},
    )
    return fill
