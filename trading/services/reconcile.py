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
from django.db.models import Sum
from django.utils import timezone

from marketdata.models import Market
from risk.models import TradingState
from risk.services.audit import audit_record
from risk.services.incidents import incident_open
from trading.adapters import UnclearOutcome, adapter_for
from trading.models import ExchangeAccount, Fill, Order, Position
from trading.services.submission import OPEN, order_resolve

logger = logging.getLogger(__name__)

# Quote balance differences below this are rounding dust, not a discrepancy (fees are in
# our cash already); base holdings may differ by the fees the venue took in the base.
CASH_TOLERANCE = Decimal("0.01")
DUST = Decimal("1e-8")
# A futures wallet may differ from ours by a funding payment (not booked locally yet): at
# most this share of the open notional per reconciliation (beat runs it every 60 s, so it
# sees one funding time at most); beyond it the account halts, which is the safe side.
FUNDING_ALLOWANCE = Decimal("0.005")


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
    """Holdings and cash, compared in both directions: a venue that holds more than our
    position is as much a mismatch as one that holds less (coins we bought and never
    recorded would never be sold)."""
    if account.market_type == ExchangeAccount.MarketType.FUTURES:
        _futures(account, report)
        return
    balances = adapter_for(account).balances()
    account.refresh_from_db(fields=["cash"])  # the order pass above may have applied fills
    cash = balances.get(account.quote_currency)
    report.cash_local = account.cash
    report.cash_exchange = cash
    for market, ours, held in _holdings(account, balances):
        tolerance = _base_fees(account, market)
        if abs(held - ours) > tolerance:
            side = "more" if held > ours else "less"
            report.mismatches.append(
                f"{market.symbol}: we hold {_qty(ours)}, the exchange {_qty(held)} "
                f"(it holds {side} by {_qty(abs(held - ours))})"
            )
    if cash is not None and abs(cash - account.cash) > CASH_TOLERANCE:
        side = "more" if cash > account.cash else "less"
        report.mismatches.append(
            f"{account.quote_currency}: our cash {account.cash:,.2f}, the exchange {cash:,.2f} "
            f"(it holds {side} by {abs(cash - account.cash):,.2f})"
        )


def _futures(account: ExchangeAccount, report: ReconcileReport) -> None:
    """Futures: every position's signed size against the venue's, both ways, then the margin
    wallet against our cash (fees and realised PnL, see services.positions).

    Funding payments move the venue's wallet without a fill, and are not booked locally
    yet: a wallet difference no larger than one funding payment at FUNDING_ALLOWANCE of the
    open notional, with every position agreeing, is adopted with a `PNL_DRIFT` warning;
    anything larger, or any difference while flat, is a mismatch (fail closed).
    """
    adapter = adapter_for(account)
    held = adapter.futures_positions()
    ours = _futures_ours(account)
    for symbol in sorted(set(held) | set(ours)):
        venue, mine = held.get(symbol, (Decimal(0), Decimal(0)))[0], ours.get(symbol, Decimal(0))
        if abs(venue - mine) > DUST:
            side = "more" if venue > mine else "less"
            report.mismatches.append(
                f"{symbol}: our position {_qty(mine)}, the exchange {_qty(venue)} "
                f"(it holds {side} by {_qty(abs(venue - mine))})"
            )
    wallet = adapter.futures_wallet()
    account.refresh_from_db(fields=["cash"])
    report.cash_local, report.cash_exchange = account.cash, wallet
    if wallet is None or abs(wallet - account.cash) <= CASH_TOLERANCE:
        return
    notional = sum((abs(q) * entry for q, entry in held.values()), Decimal(0))
    gap = abs(wallet - account.cash)
    side = "more" if wallet > account.cash else "less"
    if report.mismatches or gap > CASH_TOLERANCE + FUNDING_ALLOWANCE * notional:
        report.mismatches.append(
            f"{account.quote_currency} wallet: ours {account.cash:,.2f}, the exchange "
            f"{wallet:,.2f} (it holds {side} by {gap:,.2f})"
        )
        return
    incident_open(
        severity="warning",
        code="PNL_DRIFT",
        title=f"{account.name}: wallet {wallet} adopted, ours was {account.cash} (funding?)",
    )
    ExchangeAccount.objects.filter(pk=account.pk).update(cash=wallet)


def _futures_ours(account: ExchangeAccount) -> dict[str, Decimal]:
    return {
        p.market.symbol: p.quantity
        for p in Position.objects.filter(account=account).select_related("market")
        if p.quantity
    }


def _qty(value: Decimal) -> str:
    """A quantity as the venue would print it: no trailing zeros, never exponent form."""
    return f"{value.normalize():f}" if value else "0"


def _holdings(
    account: ExchangeAccount, balances: dict[str, Decimal]
) -> list[tuple[Market, Decimal, Decimal]]:
    """(market, our position, the venue's balance of its base) for every market we hold a
    position in and every active market whose base the venue holds."""
    positions = {
        p.market_id: p.quantity
        for p in Position.objects.filter(account=account).select_related("market")
    }
    rows = []
    for market in Market.objects.filter(exchange=account.exchange):
        ours = positions.get(market.pk, Decimal(0))
        held = balances.get(market.base, Decimal(0))
        if market.pk in positions or (market.active and held):
            rows.append((market, ours, held))
    return rows


def _base_fees(account: ExchangeAccount, market: Market) -> Decimal:
    """Fees the venue took in the base asset: held at the venue, not in our position."""
    fees = Fill.objects.filter(
        order__account=account, order__market=market, fee_currency=market.base
    ).aggregate(total=Sum("fee"))["total"]
    return (fees or Decimal(0)) + DUST


def account_holdings_adopt(*, account: ExchangeAccount, actor: str, reason: str) -> ReconcileReport:
    """Operator: take the venue's holdings and cash as ours (after a mismatch is explained).

    Each spot position becomes the venue's balance of its base, at the market's last close
    when it grows (the venue's own cost is not known), and cash the venue's quote balance;
    audited with the before and after. Then the account is reconciled again.
    """
    if account.market_type == ExchangeAccount.MarketType.FUTURES:
        return _futures_adopt(account=account, actor=actor, reason=reason)
    balances = adapter_for(account).balances()
    changes: list[dict[str, str]] = []
    with transaction.atomic():
        for market, ours, held in _holdings(account, balances):
            if held == ours:
                continue
            position, _ = Position.objects.select_for_update().get_or_create(
                account=account, market=market
            )
            if held > ours:
                price = _last_close(market) or position.average_price
                total = held
                position.average_price = (
                    (position.average_price * ours + price * (held - ours)) / total
                ).quantize(Decimal("1e-8"))
            position.quantity = held
            if held == 0:
                position.average_price = Decimal(0)
            position.save()
            changes.append({"market": market.symbol, "from": str(ours), "to": str(held)})
        _adopt_cash(account, balances.get(account.quote_currency), changes)
        _adopted_record(account, actor=actor, reason=reason, changes=changes)
    account.refresh_from_db()
    return account_reconcile(account=account)


def _futures_adopt(*, account: ExchangeAccount, actor: str, reason: str) -> ReconcileReport:
    """Futures: each position becomes the venue's size at the venue's entry price, and cash
    the venue's margin wallet. A short at the venue cannot be adopted (positions here are
    long/flat): it is refused, to be flattened at the venue first."""
    adapter = adapter_for(account)
    held = adapter.futures_positions()
    shorts = sorted(symbol for symbol, (qty, _) in held.items() if qty < 0)
    if shorts:
        raise ValueError(
            f"the exchange holds short positions in {', '.join(shorts)}: positions here are "
            "long/flat, so close them at the exchange first"
        )
    wallet = adapter.futures_wallet()
    markets = {m.symbol: m for m in Market.objects.filter(exchange=account.exchange)}
    unknown = sorted(set(held) - set(markets))
    if unknown:
        raise ValueError(f"the exchange holds positions in markets we do not list: {unknown}")
    changes: list[dict[str, str]] = []
    with transaction.atomic():
        ours = _futures_ours(account)
        for symbol in sorted(set(held) | set(ours)):
            qty, entry = held.get(symbol, (Decimal(0), Decimal(0)))
            if qty == ours.get(symbol, Decimal(0)):
                continue
            position, _ = Position.objects.select_for_update().get_or_create(
                account=account, market=markets[symbol]
            )
            changes.append({"market": symbol, "from": str(position.quantity), "to": str(qty)})
            position.quantity = position.round_quantity = qty
            position.average_price = entry if qty else Decimal(0)
            position.save()
        _adopt_cash(account, wallet, changes)
        _adopted_record(account, actor=actor, reason=reason, changes=changes)
    account.refresh_from_db()
    return account_reconcile(account=account)


def _adopt_cash(
    account: ExchangeAccount, cash: Decimal | None, changes: list[dict[str, str]]
) -> None:
    if cash is not None and cash != account.cash:
        changes.append({"cash_from": str(account.cash), "cash_to": str(cash)})
        ExchangeAccount.objects.filter(pk=account.pk).update(cash=cash)


def _adopted_record(
    account: ExchangeAccount, *, actor: str, reason: str, changes: list[dict[str, str]]
) -> None:
    audit_record(
        actor=actor,
        action="account.holdings_adopted",
        obj=account,
        payload={"reason": reason, "changes": changes},
    )


def _last_close(market: Market) -> Decimal | None:
    from marketdata.models import Candle

    candle = Candle.objects.filter(market=market).order_by("-open_time").first()
    return candle.close if candle else None


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
