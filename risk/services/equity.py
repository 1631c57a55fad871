"""Equity history for the daily loss and drawdown limits, and the automatic kill switch.

Why snapshots and not a replay of fills: drawdown is measured against the peak of *marked*
equity (cash plus positions at market prices), which fills alone cannot give without
re-pricing every position at every past moment. A snapshot stores the equity and the
running peak; the day's baseline is the first snapshot at or after 00:00 UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from risk.models import EquitySnapshot, TradingState
from risk.services.limits import limits_for
from trading.models import ExchangeAccount
from trading.selectors import account_equity

# The periodic watch records at most one snapshot per account per interval; new highs and
# the day's first observation are recorded whenever they are seen.
SNAPSHOT_EVERY = timedelta(seconds=60)
# Older snapshots go: every snapshot carries the running peak, so nothing is lost.
SNAPSHOT_KEEP = timedelta(days=30)


@dataclass(frozen=True)
class EquityView:
    equity: Decimal
    peak: Decimal
    day_start: Decimal

    @property
    def daily_loss(self) -> Decimal:
        return max(self.day_start - self.equity, Decimal(0))

    @property
    def drawdown(self) -> Decimal:
        if self.peak <= 0:
            return Decimal(0)
        return max(self.peak - self.equity, Decimal(0)) / self.peak


def day_start(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def equity_view(
    *, account: ExchangeAccount, equity: Decimal | None = None, periodic: bool = False
) -> EquityView:
    """Current equity, peak and the day's starting equity; records a snapshot when needed."""
    now = timezone.now()
    if equity is None:
        equity = account_equity(account=account)
    snapshots = EquitySnapshot.objects.filter(account=account)
    last = snapshots.order_by("-taken_at", "-id").first()
    first_today = snapshots.filter(taken_at__gte=day_start(now)).order_by("taken_at", "id").first()
    peak = max(last.peak, equity) if last else equity
    start = first_today.equity if first_today else equity
    due = (
        first_today is None
        or last is None
        or equity > last.peak
        or (periodic and now - last.taken_at >= SNAPSHOT_EVERY)
    )
    if due:
        EquitySnapshot.objects.create(account=account, taken_at=now, equity=equity, peak=peak)
    return EquityView(equity=equity, peak=peak, day_start=start)


def equity_breach(*, account: ExchangeAccount, view: EquityView) -> tuple[str, str] | None:
    """(code, reason) if the daily loss or drawdown limit is reached, else None."""
    limits = limits_for(account)
    if view.daily_loss >= limits.max_daily_loss:
        return (
            "MAX_DAILY_LOSS",
            f"daily loss {view.daily_loss:.2f} reached the limit {limits.max_daily_loss} "
            f"(equity {view.equity:.2f}, day start {view.day_start:.2f})",
        )
    if view.peak > 0 and view.drawdown >= limits.max_drawdown:
        return (
            "MAX_DRAWDOWN",
            f"drawdown {view.drawdown:.2%} reached the limit {limits.max_drawdown:.2%} "
            f"(equity {view.equity:.2f}, peak {view.peak:.2f})",
        )
    return None


@transaction.atomic
def equity_guard(
    *, account: ExchangeAccount, view: EquityView | None = None, periodic: bool = False
) -> str | None:
    """The automatic kill switch: engage it for the account on a daily loss or drawdown breach.

    Returns the breached limit's code (or None). Releasing it stays with an operator.
    """
    from risk.services.state import kill_switch_set

    if view is None:
        view = equity_view(account=account, periodic=periodic)
    breach = equity_breach(account=account, view=view)
    if breach is None:
        return None
    code, reason = breach
    engaged = TradingState.objects.filter(account=account, kill_switch=True).exists()
    if not engaged:
        kill_switch_set(on=True, reason=reason, actor="system:risk", account=account, code=code)
    return code


def equity_snapshots_prune(*, keep: timedelta = SNAPSHOT_KEEP) -> int:
    """Delete snapshots older than `keep`, never an account's newest (it carries the peak)."""
    cutoff = timezone.now() - keep
    newest = EquitySnapshot.objects.filter(account=OuterRef("account")).order_by("-taken_at", "-id")
    deleted, _ = (
        EquitySnapshot.objects.filter(taken_at__lt=cutoff)
        .exclude(pk=Subquery(newest.values("pk")[:1]))
        .delete()
    )
    return deleted
