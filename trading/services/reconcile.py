"""Reconciliation: the exchange is the truth for orders, fills and balances.

Runs for every exchange-backed account at start-up — before any trading for that account —
and then periodically. If it cannot complete, or finds what it cannot explain, the account
is halted and an incident is opened (fail closed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from marketdata.models import Market
from risk.models import TradingState
from risk.services.audit import audit_record
from risk.services.incidents import incident_open
from trading.adapters import UnclearOutcome, adapter_for
from trading.models import ExchangeAccount, Order, Position
from trading.services.submission import OPEN, order_resolve

logger = logging.getLogger(__name__)

# Quote balance differences below this are fee dust, not a discrepancy.
CASH_TOLERANCE = Decimal("0.01")


@dataclass
class ReconcileReport:
    account: str
    ok: bool = True
    orders_checked: int = 0
    orders_changed: int = 0
    mismatches: list[str] = field(default_factory=list)
    cash_local: Decimal | None = None
    cash_exchange: Decimal | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "account": self.account,
            "ok": self.ok,
            "orders_checked": self.orders_checked,
            "orders_changed": self.orders_changed,
            "mismatches": self.mismatches,
            "cash_local": str(self.cash_local),
            "cash_exchange": str(self.cash_exchange),
        }


def accounts_mark_unreconciled() -> int:
    """At start-up: no exchange-backed account trades until it has been reconciled."""
    return ExchangeAccount.objects.exclude(mode=ExchangeAccount.Mode.PAPER).update(
        needs_reconcile=True
    )


def account_reconcile(*, account: ExchangeAccount) -> ReconcileReport:
    report = ReconcileReport(account=account.name)
    if account.is_paper:
        return report
    try:
        _orders(account, report)
        _balances(account, report)
    except (UnclearOutcome, Exception) as exc:
        report.ok = False
        report.mismatches.append(f"could not reconcile: {type(exc).__name__}: {exc}"[:300])
    if report.mismatches:
        report.ok = False
        _fail_closed(account, report)
    else:
        ExchangeAccount.objects.filter(pk=account.pk).update(
            needs_reconcile=False, reconciled_at=timezone.now()
        )
    audit_record(
        actor="system:reconcile", action="account.reconciled", obj=account, payload=report.as_dict()
    )
    return report


def _orders(account: ExchangeAccount, report: ReconcileReport) -> None:
    adapter = adapter_for(account)
    local = list(Order.objects.filter(account=account, status__in=OPEN).select_related("market"))
    for order in local:
        before = (order.status, order.filled_quantity)
        order = order_resolve(order=order)
        report.orders_checked += 1
        report.orders_changed += (order.status, order.filled_quantity) != before
    symbols = sorted(
        Market.objects.filter(exchange=account.exchange, active=True).values_list(
            "symbol", flat=True
        )
    )
    known = set(Order.objects.filter(account=account).values_list("client_order_id", flat=True))
    for raw in adapter.open_orders(symbols):
        coid = str(raw.get("clientOrderId") or "")
        if coid.startswith("qt") and coid not in known:
            report.mismatches.append(f"exchange has an order we never made: {coid}")


def _balances(account: ExchangeAccount, report: ReconcileReport) -> None:
    balances = adapter_for(account).balances()
    if account.market_type == ExchangeAccount.MarketType.SPOT:
        for position in Position.objects.filter(account=account).select_related("market"):
            held = balances.get(position.market.base, Decimal(0))
            if position.quantity > held:
                report.mismatches.append(
                    f"{position.market.symbol}: we hold {position.quantity}, the exchange {held}"
                )
    cash = balances.get(account.quote_currency)
    report.cash_local = account.cash
    report.cash_exchange = cash
    if cash is not None and abs(cash - account.cash) > CASH_TOLERANCE:
        # PnL is reconciled against the exchange: its balance is adopted, and the
        # difference is reported so it is never silent.
        incident_open(
            severity="warning",
            code="PNL_DRIFT",
            title=f"{account.name}: local cash {account.cash} differs from exchange {cash}",
        )
        ExchangeAccount.objects.filter(pk=account.pk).update(cash=cash)


@transaction.atomic
def _fail_closed(account: ExchangeAccount, report: ReconcileReport) -> None:
    """Halt the account now (audited, pushed, with an incident) and keep it unreconciled."""
    from risk.services.state import trading_state_escalate

    detail = "; ".join(report.mismatches)[:490]
    ExchangeAccount.objects.filter(pk=account.pk).update(needs_reconcile=True)
    trading_state_escalate(
        to=TradingState.State.HALTED,
        code="RECONCILIATION_FAILED",
        account=account,
        reason=f"reconciliation failed: {detail}"[:500],
        severity="critical",
        actor="system:reconcile",
    )
    logger.error("reconciliation failed for %s: %s", account.name, detail)


def accounts_reconcile() -> list[ReconcileReport]:
    accounts = ExchangeAccount.objects.exclude(mode=ExchangeAccount.Mode.PAPER)
    return [account_reconcile(account=a) for a in accounts.select_related("exchange")]
