"""From a signal to orders: strategy decision, sizing, risk check, intent, submit."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from marketdata.models import Market
from models_registry.selectors import model_may_drive
from quantum.metrics import RISK_DENIALS
from risk.models import RiskDecision
from risk.services.audit import audit_record
from risk.services.checks import limits_for, pretrade_check
from trading.adapters import NotSent, OrderRejected, UnclearOutcome, adapter_for
from trading.lib.sizing import atr_risk_quantity, fixed_fraction_quantity
from trading.models import ExchangeAccount, Order, Position, Signal
from trading.selectors import account_equity, market_atr
from trading.services.ids import client_order_id
from trading.services.orders import order_intent_create
from trading.services.submission import order_submit

logger = logging.getLogger(__name__)

STRATEGY = "model"


@dataclass(frozen=True)
class Intent:
    side: str
    quantity: Decimal
    reason: str


def _decide(account: ExchangeAccount, signal: Signal) -> Intent | None:
    """Long/flat: BUY opens a position when flat, SELL closes it when long."""
    position = Position.objects.filter(account=account, market=signal.market).first()
    held = position.quantity if position else Decimal("0")
    if signal.action == Signal.Action.BUY and held == 0:
        quantity = _size(account, signal)
        return Intent("BUY", quantity, f"BUY signal p={signal.prob_buy:.2f}")
    if signal.action == Signal.Action.SELL and held > 0:
        return Intent("SELL", held, f"SELL signal p={signal.prob_sell:.2f}")
    return None


def _size(account: ExchangeAccount, signal: Signal) -> Decimal:
    """The account's sizing method, capped by its risk limits and leverage."""
    limits = limits_for(account)
    leverage = account.leverage if account.market_type == account.MarketType.FUTURES else 1
    max_leverage = min(Decimal(leverage), Decimal(getattr(limits, "max_leverage", leverage)))
    common = {
        "equity": account_equity(account=account),
        "price": signal.price,
        "qty_precision": signal.market.qty_precision,
        "max_notional": min(
            limits.max_position_notional,
            getattr(limits, "max_order_notional", limits.max_position_notional),
        ),
        "max_leverage": max_leverage,
    }
    if account.sizing == ExchangeAccount.Sizing.ATR:
        atr = market_atr(market=signal.market, timeframe=signal.timeframe, until=signal.candle_time)
        return atr_risk_quantity(
            risk_fraction=account.risk_fraction,
            atr=atr,
            atr_multiple=account.atr_multiple,
            **common,
        )
    return fixed_fraction_quantity(fraction=Decimal(limits.position_fraction), **common)


def signal_execute(*, signal: Signal) -> list[Order]:
    """Act on a signal for every account with the strategy enabled on its exchange."""
    orders = []
    accounts = ExchangeAccount.objects.filter(
        strategy_enabled=True, exchange_id=signal.market.exchange_id
    )
    for account in accounts:
        order = signal_act(account=account, signal=signal)
        if order is not None:
            orders.append(order)
    return orders


def signal_act(*, account: ExchangeAccount, signal: Signal) -> Order | None:
    """The model strategy's decision for one signal, executed once."""
    coid = client_order_id(
        strategy=STRATEGY,
        account_id=account.pk,
        market_id=signal.market_id,
        decision=f"signal:{signal.pk}",
    )
    existing = _existing(coid, signal.price)
    if existing is not None:
        return existing
    intent = _decide(account, signal)
    if intent is None:
        return None
    age = timezone.now() - signal.created_at
    if age > timedelta(seconds=settings.QT_INTENT_TTL_S):
        # A task redelivered long after its worker died: the moment for this decision passed.
        _deny(
            account,
            signal.market,
            signal,
            intent,
            signal.price,
            "DECISION_EXPIRED",
            f"signal is {int(age.total_seconds())}s old "
            f"(QT_INTENT_TTL_S={settings.QT_INTENT_TTL_S})",
        )
        return None
    if not account.is_paper and not model_may_drive(
        model_version=signal.model_version, mode=account.mode
    ):
        # An ungated (or retired) model may be watched on paper, never trade real money.
        _deny(
            account,
            signal.market,
            signal,
            intent,
            signal.price,
            "MODEL_NOT_APPROVED",
            f"model v{signal.model_version.version} is not an active model that passed its gates",
        )
        return None
    return decision_execute(
        account=account,
        market=signal.market,
        intent=intent,
        client_order_id=coid,
        reference_price=signal.price,
        signal=signal,
        strategy=STRATEGY,
    )


def _existing(coid: str, reference_price: Decimal) -> Order | None:
    """A redelivered task finds the order its decision already made: never a second one."""
    existing = Order.objects.filter(client_order_id=coid).first()
    if existing is not None and existing.status == Order.Status.NEW:
        # Persisted but never sent (the worker died in between): send it now, same id.
        return order_submit(order=existing, reference_price=reference_price)
    return existing


def decision_execute(
    *,
    account: ExchangeAccount,
    market: Market,
    intent: Intent,
    client_order_id: str,
    reference_price: Decimal,
    strategy: str,
    signal: Signal | None = None,
    flatten: bool = False,
) -> Order | None:
    """Exchange rules, risk checks, the intent persisted, then the submit.

    `flatten` marks the reducing orders of an operator's flatten request, which the risk
    checks let through a halt (and only those).
    """
    existing = _existing(client_order_id, reference_price)
    if existing is not None:
        return existing
    if not account.is_paper and account.needs_reconcile:
        # Fail closed: an account is not traded until it matches its exchange.
        _deny(
            account,
            market,
            signal,
            intent,
            reference_price,
            "NOT_RECONCILED",
            "account awaits reconciliation",
        )
        return None
    try:
        quantity = adapter_for(account).normalize_quantity(market, intent.quantity, reference_price)
    except OrderRejected as exc:
        _deny(account, market, signal, intent, reference_price, "EXCHANGE_RULES", str(exc))
        return None
    except (UnclearOutcome, NotSent) as exc:
        # The market's rules could not be read: the exchange is backing off (429/418) or
        # unreachable. Nothing was sent; the decision is not retried later (it would be stale).
        _deny(account, market, signal, intent, reference_price, "EXCHANGE_UNAVAILABLE", str(exc))
        return None
    decision = pretrade_check(
        account=account,
        market=market,
        side=intent.side,
        quantity=quantity,
        price=reference_price,
        signal=signal,
        flatten=flatten,
    )
    if not decision.approved:
        logger.info(
            "order denied %s: %s",
            decision.code,
            decision.detail,
            extra={"signal": signal.pk if signal else None, "reason": decision.code},
        )
        return None
    try:
        order = order_intent_create(
            account_id=account.pk,
            market_id=market.pk,
            signal_id=signal.pk if signal else None,
            side=intent.side,
            quantity=quantity,
            client_order_id=client_order_id,
            strategy=strategy,
            reason=intent.reason,
        )
    except IntegrityError:
        # Two deliveries of the same decision raced; the other one owns the order.
        return Order.objects.get(client_order_id=client_order_id)
    return order_submit(order=order, reference_price=reference_price)


def _deny(
    account: ExchangeAccount,
    market: Market,
    signal: Signal | None,
    intent: Intent,
    price: Decimal,
    code: str,
    detail: str,
) -> None:
    """A denial decided before the risk checks, stored and audited like theirs."""
    decision = RiskDecision.objects.create(
        signal=signal,
        account=account,
        market=market,
        side=intent.side,
        quantity=intent.quantity,
        notional=intent.quantity * price,
        approved=False,
        code=code,
        detail=detail[:500],
    )
    audit_record(
        actor="system:execution",
        action="risk.denied",
        obj=decision,
        payload={"code": code, "detail": detail[:300], "signal": signal.pk if signal else None},
    )
    logger.info("order denied %s: %s", code, detail, extra={"reason": code})
    RISK_DENIALS.labels(code=code).inc()


def positions_flatten(*, request_id: int) -> list[Order]:
    """Close every open position in a flatten request's scope with reducing market orders."""
    from risk.models import FlattenRequest
    from risk.services.orders import flatten_request_complete
    from trading.selectors import last_price

    request = FlattenRequest.objects.select_related("account").get(pk=request_id)
    positions = Position.objects.exclude(quantity=0).select_related(
        "account", "account__exchange", "market", "market__exchange"
    )
    if request.account_id is not None:
        positions = positions.filter(account_id=request.account_id)
    orders, problems = [], []
    for position in positions:
        price = last_price(position.market_id) or position.average_price
        order = decision_execute(
            account=position.account,
            market=position.market,
            intent=Intent("SELL", position.quantity, f"flatten request #{request_id}"),
            client_order_id=client_order_id(
                strategy="flatten",
                account_id=position.account_id,
                market_id=position.market_id,
                decision=f"flatten:{request_id}",
            ),
            reference_price=price,
            strategy="flatten",
            flatten=True,
        )
        if order is None or order.status == Order.Status.REJECTED:
            problems.append(f"{position.market.symbol} on {position.account.name}: not closed")
        else:
            orders.append(order)
    flatten_request_complete(
        request_id=request_id,
        ok=not problems,
        detail="; ".join(problems) or f"{len(orders)} orders",
    )
    return orders
