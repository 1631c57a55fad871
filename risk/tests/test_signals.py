from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.models import User
from django.test import Client

from risk.models import AuditEvent, RiskLimits
from risk.services.limits import EDITABLE_LIMITS


def test_a_login_is_audited(alice: User) -> None:
    assert Client().login(username="alice", password="correct-horse-42")

    event = AuditEvent.objects.get(action="auth.login")
    assert (event.actor, event.object_type, event.object_id) == (
        "alice",
        "auth.user",
        str(alice.pk),
    )


def test_a_failed_login_is_audited_without_the_password(alice: User) -> None:
    client = Client()
    client.post("/accounts/login/", {"login": "alice", "password": "wrong-guess"})

    event = AuditEvent.objects.get(action="auth.login_failed")
    assert event.actor == "anonymous:alice"
    assert "wrong-guess" not in str(event.payload)


def test_a_logout_is_audited(client_as, alice: User) -> None:  # type: ignore[no-untyped-def]
    client_as(alice).post("/accounts/logout/")

    assert AuditEvent.objects.filter(action="auth.logout", actor="alice").exists()


def test_an_admin_action_is_audited(client_as, alice: User, paper_account) -> None:  # type: ignore[no-untyped-def]
    from django.contrib.auth.models import Group, Permission

    Group.objects.get(name="operator").permissions.add(
        *Permission.objects.filter(content_type__app_label="risk")
    )
    limits = RiskLimits.objects.get(account=None)
    data = {f: getattr(limits, f) for f in EDITABLE_LIMITS}

    response = client_as(alice).post(
        f"/admin/risk/risklimits/{limits.pk}/change/",
        {**data, "max_daily_loss": "600", "reason": "from the admin"},
    )

    assert response.status_code == 302
    limits.refresh_from_db()
    assert (limits.max_daily_loss, limits.version, limits.reason) == (
        Decimal("600"),
        2,
        "from the admin",
    )
    changed = AuditEvent.objects.get(action="risk.limits_changed")
    assert changed.payload["changes"] == {"max_daily_loss": ["1000.00000000", "600"]}
    admin = AuditEvent.objects.get(action="admin.changed")
    assert (admin.actor, admin.object_type, admin.object_id) == (
        "alice",
        "risk.risklimits",
        str(limits.pk),
    )
    assert admin.seq > changed.seq
