from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.utils import timezone

from models_registry.models import ModelVersion
from risk.models import AuditEvent, Incident, TradingState
from risk.services.audit import audit_record

# What an operator does in the admin: the kill switch, model promotion, reading the audit log.
OPERATOR_PERMISSIONS = [
    ("risk", "view_tradingstate"),
    ("risk", "change_tradingstate"),
    ("risk", "view_auditevent"),
    ("models_registry", "view_modelversion"),
    ("models_registry", "change_modelversion"),
]


@pytest.fixture
def operator(alice):  # type: ignore[no-untyped-def]
    """Alice, with the admin permissions of the operator group."""
    group = Group.objects.get(name="operator")
    for app_label, codename in OPERATOR_PERMISSIONS:
        group.permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return alice


@pytest.fixture
def global_state(paper_account) -> TradingState:  # type: ignore[no-untyped-def]
    return TradingState.objects.get(account=None)


def model_version(version: int, **fields: object) -> ModelVersion:
    return ModelVersion.objects.create(
        version=version,
        market_group="binance:BTC/USDT",
        timeframe="1h",
        path=f"var/artifacts/v{version}.json",
        sha256=f"{version}" * 64,
        feature_set="test",
        feature_set_hash="f" * 64,
        trained_at=timezone.now(),
        **fields,
    )


def change_url(obj: object) -> str:
    meta = obj._meta  # type: ignore[attr-defined]
    return f"/admin/{meta.app_label}/{meta.model_name}/{obj.pk}/change/"  # type: ignore[attr-defined]


def test_it_shows_the_kill_switch_form_with_a_reason_field(  # type: ignore[no-untyped-def]
    operator, client_as, global_state
) -> None:
    response = client_as(operator).get(change_url(global_state))
    assert response.status_code == 200
    assert b'name="kill_switch"' in response.content
    assert b'name="reason"' in response.content


def test_it_refuses_the_kill_switch_without_a_reason(  # type: ignore[no-untyped-def]
    operator, client_as, global_state
) -> None:
    response = client_as(operator).post(
        change_url(global_state), {"kill_switch": "on", "reason": "  "}
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"reason": ["This field is required."]}
    global_state.refresh_from_db()
    assert global_state.state == TradingState.State.ACTIVE
    assert global_state.kill_switch is False
    assert not AuditEvent.objects.filter(action__startswith="killswitch").exists()


def test_it_halts_trading_with_a_reason(operator, client_as, global_state) -> None:  # type: ignore[no-untyped-def]
    response = client_as(operator).post(
        change_url(global_state), {"kill_switch": "on", "reason": "exchange outage"}
    )
    assert response.status_code == 302
    global_state.refresh_from_db()
    assert global_state.state == TradingState.State.HALTED
    assert global_state.kill_switch is True
    assert global_state.reason == "exchange outage"
    assert global_state.changed_by == operator
    event = AuditEvent.objects.get(action="killswitch.on")
    assert event.actor == "alice"
    assert event.payload == {"reason": "exchange outage"}
    assert Incident.objects.get(code="KILL_SWITCH").severity == Incident.Severity.CRITICAL


def test_it_releases_the_kill_switch_with_a_reason(  # type: ignore[no-untyped-def]
    operator, client_as, global_state
) -> None:
    client = client_as(operator)
    client.post(change_url(global_state), {"kill_switch": "on", "reason": "outage"})
    response = client.post(change_url(global_state), {"reason": "exchange is back"})
    assert response.status_code == 302
    global_state.refresh_from_db()
    assert global_state.state == TradingState.State.ACTIVE
    assert global_state.kill_switch is False
    # (Logins and the admin's own log entries are in the audit trail too.)
    assert list(
        AuditEvent.objects.filter(action__startswith="killswitch").values_list("action", flat=True)
    ) == ["killswitch.on", "killswitch.off"]


def test_it_keeps_non_operators_out_of_the_admin(bob, client_as, global_state) -> None:  # type: ignore[no-untyped-def]
    response = client_as(bob).get(change_url(global_state))
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_it_cannot_add_a_second_trading_state(operator, client_as, db) -> None:  # type: ignore[no-untyped-def]
    assert client_as(operator).get("/admin/risk/tradingstate/add/").status_code == 403


def test_it_promotes_a_model_and_retires_the_previous_one(  # type: ignore[no-untyped-def]
    operator, client_as
) -> None:
    old = model_version(1, is_active=True, status=ModelVersion.Status.ACTIVE)
    new = model_version(2, status=ModelVersion.Status.APPROVED)
    response = client_as(operator).post(
        "/admin/models_registry/modelversion/",
        {"action": "promote", "_selected_action": [new.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Model v2 is now active." in [str(m) for m in response.context["messages"]]
    new.refresh_from_db()
    old.refresh_from_db()
    assert (new.is_active, new.status) == (True, ModelVersion.Status.ACTIVE)
    assert (old.is_active, old.status) == (False, ModelVersion.Status.RETIRED)
    event = AuditEvent.objects.get(action="model.promoted")
    assert event.actor == "alice"
    assert event.payload == {"version": 2, "replaced": [1]}


def test_it_refuses_to_promote_a_rejected_model(operator, client_as) -> None:  # type: ignore[no-untyped-def]
    old = model_version(1, is_active=True, status=ModelVersion.Status.ACTIVE)
    bad = model_version(2, status=ModelVersion.Status.REJECTED)
    response = client_as(operator).post(
        "/admin/models_registry/modelversion/",
        {"action": "promote", "_selected_action": [bad.pk]},
        follow=True,
    )
    messages = [str(m) for m in response.context["messages"]]
    assert messages == ["model v2 failed its gates and cannot go live"]
    old.refresh_from_db()
    assert old.is_active is True
    assert not AuditEvent.objects.filter(action="model.promoted").exists()


def test_it_promotes_exactly_one_model_at_a_time(operator, client_as) -> None:  # type: ignore[no-untyped-def]
    first = model_version(1)
    second = model_version(2)
    response = client_as(operator).post(
        "/admin/models_registry/modelversion/",
        {"action": "promote", "_selected_action": [first.pk, second.pk]},
        follow=True,
    )
    assert [str(m) for m in response.context["messages"]] == [
        "Select exactly one model to promote."
    ]
    assert not ModelVersion.objects.filter(is_active=True).exists()


def test_it_lists_the_audit_log(operator, client_as) -> None:  # type: ignore[no-untyped-def]
    audit_record(actor="system:test", action="test.listed", object_type="x", object_id="1")
    response = client_as(operator).get("/admin/risk/auditevent/")
    assert response.status_code == 200
    assert b"test.listed" in response.content


def test_it_keeps_the_audit_log_read_only(operator, client_as) -> None:  # type: ignore[no-untyped-def]
    event = audit_record(actor="system:test", action="test.kept", object_type="x", object_id="1")
    client = client_as(operator)
    assert client.get("/admin/risk/auditevent/add/").status_code == 403
    assert client.post("/admin/risk/auditevent/add/", {"actor": "mallory"}).status_code == 403
    assert client.get(f"/admin/risk/auditevent/{event.pk}/delete/").status_code == 403
    tampered = client.post(change_url(event), {"actor": "mallory", "action": "test.changed"})
    assert tampered.status_code == 403
    # The change page is a read-only view: no save buttons.
    page = client.get(change_url(event))
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    event.refresh_from_db()
    assert (event.actor, event.action) == ("system:test", "test.kept")
    assert AuditEvent.objects.filter(object_type="x").count() == 1
    assert not AuditEvent.objects.filter(action__startswith="admin.").exists()


def test_it_keeps_the_audit_log_read_only_even_for_a_superuser(  # type: ignore[no-untyped-def]
    alice, client_as
) -> None:
    alice.is_superuser = True
    alice.save()
    event = audit_record(actor="system:test", action="test.kept", object_type="x", object_id="1")
    client = client_as(alice)
    assert client.get("/admin/risk/auditevent/add/").status_code == 403
    assert client.post(change_url(event), {"actor": "mallory"}).status_code == 403
    assert client.get(f"/admin/risk/auditevent/{event.pk}/delete/").status_code == 403
