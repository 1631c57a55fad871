"""Reads shared by the operator pages, the API and the reports."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from risk.models import (
    AuditEvent,
    EquitySnapshot,
    FlattenRequest,
    Incident,
    RiskDecision,
    RiskLimits,
    TradingState,
)
from risk.services.audit import audit_head
from risk.services.equity import EquityView, day_start
from risk.services.limits import limits_for
from trading.models import ExchangeAccount
from trading.selectors import account_equity


def trading_states() -> QuerySet[TradingState]:
    """The global state first, then each account's."""
    return TradingState.objects.select_related("account").order_by("account_id", "id")


def decisions_recent(*, approved: bool | None = None) -> QuerySet[RiskDecision]:
    qs = RiskDecision.objects.select_related("account", "market", "signal")
    return qs if approved is None else qs.filter(approved=approved)


def limits_all() -> list[RiskLimits]:
    limits_for(None)  # the global row always exists once asked for
    return list(RiskLimits.objects.select_related("account").order_by("account_id", "id"))


@dataclass(frozen=True)
class AccountRisk:
    account: ExchangeAccount
    state: TradingState | None
    limits: RiskLimits
    equity: EquityView


def accounts_risk() -> list[AccountRisk]:
    """Per account: state, the limits that apply, equity with its peak and day start."""
    states = {s.account_id: s for s in TradingState.objects.exclude(account__isnull=True)}
    own = {r.account_id: r for r in RiskLimits.objects.exclude(account__isnull=True)}
    default = limits_for(None)
    today = day_start(timezone.now())
    rows = []
    for account in ExchangeAccount.objects.select_related("exchange").order_by("name"):
        snapshots = EquitySnapshot.objects.filter(account=account)
        last = snapshots.order_by("-taken_at", "-id").first()
        first_today = snapshots.filter(taken_at__gte=today).order_by("taken_at", "id").first()
        equity = account_equity(account=account)
        view = EquityView(
            equity=equity,
            peak=max(last.peak, equity) if last else equity,
            day_start=first_today.equity if first_today else equity,
        )
        rows.append(
            AccountRisk(account, states.get(account.pk), own.get(account.pk, default), view)
        )
    return rows


AUDIT_FILTERS = ("action", "actor", "object_type", "object_id")


def audit_events(*, params: dict[str, Any]) -> QuerySet[AuditEvent]:
    """Newest first; filters: action (prefix), actor, object_type, object_id, since, until, q."""
    qs = AuditEvent.objects.order_by("-seq")
    if params.get("action"):
        qs = qs.filter(action__startswith=params["action"])
    if params.get("actor"):
        qs = qs.filter(actor=params["actor"])
    if params.get("object_type"):
        qs = qs.filter(object_type=params["object_type"])
    if params.get("object_id"):
        qs = qs.filter(object_id=params["object_id"])
    if params.get("since"):
        qs = qs.filter(created_at__gte=params["since"])
    if params.get("until"):
        qs = qs.filter(created_at__lt=params["until"])
    if params.get("q"):
        q = params["q"]
        qs = qs.filter(Q(action__icontains=q) | Q(actor__icontains=q) | Q(object_id=q))
    return qs


def audit_actions() -> list[str]:
    return list(AuditEvent.objects.order_by("action").values_list("action", flat=True).distinct())


def incidents(*, status: str = "", severity: str = "") -> QuerySet[Incident]:
    qs = Incident.objects.select_related("account")
    if status == "unresolved":
        qs = qs.exclude(status=Incident.Status.RESOLVED)
    elif status:
        qs = qs.filter(status=status)
    if severity:
        qs = qs.filter(severity=severity)
    return qs


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def incident_report(*, since: datetime, until: datetime | None = None) -> str:
    """A Markdown report of the incidents opened in [since, until)."""
    until = until or timezone.now()
    rows = list(
        Incident.objects.filter(created_at__gte=since, created_at__lt=until)
        .select_related("account")
        .order_by("created_at", "id")
    )
    by_severity = Counter(i.severity for i in rows)
    by_status = Counter(i.status for i in rows)
    seq, digest = audit_head()
    lines = [
        "# Incident report",
        "",
        f"Period: {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC. "
        f"Generated {timezone.now():%Y-%m-%d %H:%M:%S} UTC.",
        "",
        f"Audit chain head at generation: `{seq}:{digest}`.",
        "",
        "## Summary",
        "",
        f"{len(rows)} incident(s).",
        "",
        "| severity | count |",
        "|---|---|",
        *[f"| {s} | {by_severity.get(s, 0)} |" for s in Incident.Severity.values],
        "",
        "| status | count |",
        "|---|---|",
        *[f"| {s} | {by_status.get(s, 0)} |" for s in Incident.Status.values],
        "",
        "## Incidents",
        "",
    ]
    if not rows:
        lines += ["No incidents in this period.", ""]
    else:
        lines += [
            "| # | opened (UTC) | severity | code | title | account | status | "
            "acknowledged | resolved |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for i in rows:
            ack = (
                f"{i.acknowledged_by} {i.acknowledged_at:%Y-%m-%d %H:%M}"
                if i.acknowledged_at
                else ""
            )
            res = f"{i.resolved_by} {i.resolved_at:%Y-%m-%d %H:%M}" if i.resolved_at else ""
            lines.append(
                f"| {i.pk} | {i.created_at:%Y-%m-%d %H:%M:%S} | {i.severity} | {i.code} | "
                f"{_cell(i.title)} | {i.account.name if i.account else 'global'} | {i.status} | "
                f"{_cell(ack)} | {_cell(res)} |"
            )
        lines.append("")
        lines += ["## Details", ""]
        for i in rows:
            lines += [f"### #{i.pk} {_cell(i.title)}", ""]
            lines.append(f"- severity: {i.severity}, code: `{i.code}`, status: {i.status}")
            if i.detail:
                lines.append(f"- detail: {_cell(i.detail)}")
            if i.resolution:
                lines.append(f"- resolution: {_cell(i.resolution)}")
            lines.append("")
    return "\n".join(lines)


def denial_counts(*, since: datetime) -> dict[str, int]:
    rows = RiskDecision.objects.filter(approved=False, created_at__gte=since).values_list(
        "code", flat=True
    )
    return dict(Counter(rows))


def flatten_requests() -> QuerySet[FlattenRequest]:
    return FlattenRequest.objects.select_related("account")
