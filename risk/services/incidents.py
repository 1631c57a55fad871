"""Incidents: something went wrong that an operator should see, acknowledge and resolve."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from quantum.preferences import incident_email_on_commit
from quantum.realtime import push_html
from risk.models import Incident
from risk.services.audit import audit_record

if TYPE_CHECKING:
    from trading.models import ExchangeAccount

logger = logging.getLogger(__name__)

UNRESOLVED = (Incident.Status.OPEN, Incident.Status.ACKNOWLEDGED)


class IncidentStateError(ValueError):
    pass


@transaction.atomic
def incident_open(
    *,
    severity: str,
    code: str,
    title: str,
    detail: str = "",
    account: ExchangeAccount | None = None,
    audit: bool = True,
) -> Incident:
    """Open an incident, or return the unresolved one with the same code and title (no floods).

    `audit=False` when the caller's own audit event already records the cause.
    """
    existing = Incident.objects.filter(code=code, title=title[:200], status__in=UNRESOLVED).first()
    if existing is not None:
        return existing
    incident = Incident.objects.create(
        severity=severity, code=code, title=title[:200], detail=detail, account=account
    )
    if audit:
        audit_record(
            actor="system:risk",
            action="incident.opened",
            obj=incident,
            payload={"severity": severity, "code": code, "title": incident.title},
        )
    log = logger.error if severity == Incident.Severity.CRITICAL else logger.warning
    log("incident %s: %s", code, title, extra={"reason": code})
    # Operators' sockets only: a refresh cue (the incident page reloads its list through its
    # own, role-checked view) and a "risk" toast, which each operator's preferences may mute.
    push_html(template="risk/push/incident.html", context={"incident": incident}, role="operator")
    incident_email_on_commit(incident.pk)  # to the operators who opted in, after commit
    return incident


@transaction.atomic
def incident_acknowledge(*, incident: Incident, actor: str, note: str = "") -> Incident:
    """An operator has seen it and is on it."""
    incident = Incident.objects.select_for_update().get(pk=incident.pk)
    if incident.status != Incident.Status.OPEN:
        raise IncidentStateError(f"incident #{incident.pk} is {incident.status}, not open")
    incident.status = Incident.Status.ACKNOWLEDGED
    incident.acknowledged_by = actor
    incident.acknowledged_at = timezone.now()
    incident.save()
    audit_record(actor=actor, action="incident.acknowledged", obj=incident, payload={"note": note})
    return incident


@transaction.atomic
def incident_resolve(*, incident: Incident, actor: str, resolution: str) -> Incident:
    """Close it with what was done; a resolution text is required."""
    if not resolution.strip():
        raise IncidentStateError("a resolution is required")
    incident = Incident.objects.select_for_update().get(pk=incident.pk)
    if incident.status == Incident.Status.RESOLVED:
        raise IncidentStateError(f"incident #{incident.pk} is already resolved")
    now = timezone.now()
    if incident.acknowledged_at is None:
        incident.acknowledged_by, incident.acknowledged_at = actor, now
    incident.status = Incident.Status.RESOLVED
    incident.resolved_by = actor
    incident.resolved_at = now
    incident.resolution = resolution
    incident.save()
    audit_record(
        actor=actor,
        action="incident.resolved",
        obj=incident,
        payload={"resolution": resolution},
    )
    return incident
