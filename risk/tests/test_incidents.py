from __future__ import annotations

from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from risk.models import AuditEvent, Incident
from risk.services.incidents import (
    IncidentStateError,
    incident_acknowledge,
    incident_open,
    incident_resolve,
)


def opened(code: str = "SLIPPAGE", title: str = "paper: slippage", **kw: object) -> Incident:
    return incident_open(severity="warning", code=code, title=title, detail="60 bps", **kw)


def test_it_opens_an_incident_once_while_it_is_unresolved(db: None, alice: User) -> None:
    first = opened()
    assert opened() == first
    incident_acknowledge(incident=first, actor=alice.username)
    assert opened() == first  # acknowledged is still unresolved

    incident_resolve(incident=first, actor=alice.username, resolution="venue fixed")

    assert opened() != first
    assert AuditEvent.objects.filter(action="incident.opened").count() == 2


def test_an_operator_acknowledges_then_resolves(db: None, alice: User) -> None:
    incident = opened()

    incident_acknowledge(incident=incident, actor=alice.username, note="looking")
    incident = incident_resolve(incident=incident, actor=alice.username, resolution="widened")

    assert incident.status == Incident.Status.RESOLVED
    assert (incident.acknowledged_by, incident.resolved_by, incident.resolution) == (
        "alice",
        "alice",
        "widened",
    )
    assert incident.acknowledged_at <= incident.resolved_at
    assert list(
        AuditEvent.objects.filter(object_type="risk.incident").values_list("action", "actor")
    ) == [
        ("incident.opened", "system:risk"),
        ("incident.acknowledged", "alice"),
        ("incident.resolved", "alice"),
    ]


def test_it_refuses_to_resolve_twice_or_without_a_resolution(db: None, alice: User) -> None:
    incident = opened()
    with pytest.raises(IncidentStateError):
        incident_resolve(incident=incident, actor=alice.username, resolution="  ")
    incident_resolve(incident=incident, actor=alice.username, resolution="done")

    with pytest.raises(IncidentStateError):
        incident_resolve(incident=incident, actor=alice.username, resolution="again")
    with pytest.raises(IncidentStateError):
        incident_acknowledge(incident=incident, actor=alice.username)


def report(*args: str) -> str:
    out = StringIO()
    call_command("incident_report", *args, stdout=out)
    return out.getvalue()


def test_the_report_lists_incidents_since_a_date_in_markdown(db: None, alice: User) -> None:
    old = opened(code="DATA_STALE", title="old one")
    Incident.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    critical = incident_open(
        severity="critical", code="EXECUTION_ERRORS", title="paper: 3 errors | in a row"
    )
    incident_resolve(incident=critical, actor=alice.username, resolution="exchange back")
    opened()
    since = (timezone.now() - timedelta(days=1)).date().isoformat()

    text = report("--since", since)

    assert text.startswith("# Incident report\n")
    assert "| critical | 1 |" in text and "| warning | 1 |" in text
    assert "| resolved | 1 |" in text and "| open | 1 |" in text
    assert "old one" not in text
    assert "paper: 3 errors \\| in a row" in text  # a pipe does not break the table
    assert "- resolution: exchange back" in text
    assert "Audit chain head at generation:" in text


def test_the_report_goes_to_a_file(db: None, tmp_path: Path) -> None:
    opened()
    path = tmp_path / "report.md"

    call_command("incident_report", "--since", "2020-01-01", "--out", str(path), stderr=StringIO())

    assert "paper: slippage" in path.read_text()


def test_the_report_says_when_there_is_nothing(db: None) -> None:
    assert "No incidents in this period." in report("--since", "2020-01-01T00:00:00Z")


@pytest.mark.parametrize(
    "args",
    [("--since", "yesterday"), ("--since", "2024-01-02", "--until", "2024-01-01")],
)
def test_the_report_refuses_bad_dates(db: None, args: tuple[str, ...]) -> None:
    with pytest.raises(CommandError):
        report(*args)
