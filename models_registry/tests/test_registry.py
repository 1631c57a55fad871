"""Promotion and rollback rules, and that no surface lets a model that failed a gate go live."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from models_registry.models import ModelVersion
from models_registry.selectors import model_may_drive
from models_registry.services.registry import (
    PromotionError,
    RollbackError,
    model_version_promote,
    model_version_rollback,
)
from models_registry.tests.factories import FAILED, model_row
from risk.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def serving() -> ModelVersion:
    mv = model_row(1)
    return model_version_promote(model_version=mv, actor="system:test")


@pytest.fixture
def failed() -> ModelVersion:
    return model_row(2, gates=FAILED)


def assert_not_promoted(failed: ModelVersion, serving: ModelVersion) -> None:
    failed.refresh_from_db()
    serving.refresh_from_db()
    assert not failed.is_active and failed.status == ModelVersion.Status.REJECTED
    assert serving.is_active
    assert not AuditEvent.objects.filter(action="model.promoted", object_id=str(failed.pk))


def test_the_admin_cannot_promote_a_model_that_failed_a_gate(  # type: ignore[no-untyped-def]
    alice, client_as, serving, failed
) -> None:
    from quantum.bootstrap import roles_ensure

    roles_ensure()  # the operator group's admin permissions
    response = client_as(alice).post(
        "/admin/models_registry/modelversion/",
        {"action": "promote", "_selected_action": [failed.pk]},
        follow=True,
    )
    assert [str(m) for m in response.context["messages"]] == [
        "model v2 failed its gates and cannot go live"
    ]
    assert_not_promoted(failed, serving)


def test_the_web_ui_cannot_promote_a_model_that_failed_a_gate(  # type: ignore[no-untyped-def]
    alice, client_as, serving, failed
) -> None:
    response = client_as(alice).post(f"/models/{failed.pk}/promote/", follow=True)
    assert response.status_code == 200
    assert "failed its gates" in response.content.decode()
    assert_not_promoted(failed, serving)


def test_the_api_cannot_promote_a_model_that_failed_a_gate(  # type: ignore[no-untyped-def]
    alice, client_as, serving, failed
) -> None:
    response = client_as(alice).post(f"/api/v1/models/{failed.pk}/promote/")
    assert response.status_code == 409
    assert response.json() == {"detail": "model v2 failed its gates and cannot go live"}
    assert_not_promoted(failed, serving)


def test_the_cli_cannot_promote_a_model_that_failed_a_gate(serving, failed) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CommandError, match="failed its gates"):
        call_command("qtctl", "promote", str(failed.pk))
    assert_not_promoted(failed, serving)


def test_each_surface_promotes_a_model_that_passed_and_audits_who(  # type: ignore[no-untyped-def]
    alice, client_as, serving, capsys
) -> None:
    via_api = model_row(2)
    via_web = model_row(3)
    via_cli = model_row(4)

    assert client_as(alice).post(f"/api/v1/models/{via_api.pk}/promote/").status_code == 200
    assert client_as(alice).post(f"/models/{via_web.pk}/promote/").status_code == 302
    call_command("qtctl", "promote", str(via_cli.pk))

    via_cli.refresh_from_db()
    assert via_cli.is_active and via_cli.status == ModelVersion.Status.ACTIVE
    actors = list(
        AuditEvent.objects.filter(action="model.promoted")
        .order_by("seq")
        .values_list("actor", flat=True)
    )
    assert actors[1:] == ["alice (api)", "alice (web)", actors[-1]]
    assert actors[-1].startswith("cli:")
    assert ModelVersion.objects.filter(is_active=True).count() == 1


def test_viewers_and_traders_cannot_promote(  # type: ignore[no-untyped-def]
    bob, carol, client_as, serving
) -> None:
    candidate = model_row(2)
    for user in (bob, carol):
        assert client_as(user).post(f"/api/v1/models/{candidate.pk}/promote/").status_code == 403
        assert client_as(user).post(f"/models/{candidate.pk}/promote/").status_code == 403
    candidate.refresh_from_db()
    assert not candidate.is_active


def test_critical_drift_blocks_promotion(serving) -> None:  # type: ignore[no-untyped-def]
    drifting = model_row(2, drift_status=ModelVersion.Drift.CRITICAL)
    with pytest.raises(PromotionError, match="critical feature drift"):
        model_version_promote(model_version=drifting, actor="alice")


def test_rollback_puts_back_the_replaced_model_and_is_audited(serving) -> None:  # type: ignore[no-untyped-def]
    newer = model_version_promote(model_version=model_row(2), actor="alice")

    back = model_version_rollback(market_group=newer.market_group, timeframe="1h", actor="alice")

    newer.refresh_from_db()
    assert back == serving and back.is_active and back.status == ModelVersion.Status.ACTIVE
    assert (newer.is_active, newer.status) == (False, ModelVersion.Status.RETIRED)
    event = AuditEvent.objects.get(action="model.rolled_back")
    assert event.payload == {"from": 2, "to": 1} and event.actor == "alice"


def test_rollback_never_goes_back_to_a_model_that_failed_its_gates() -> None:
    ungated = model_version_promote(
        model_version=model_row(1, gates=FAILED), actor="system", allow_ungated=True
    )
    model_version_promote(model_version=model_row(2), actor="alice")

    with pytest.raises(RollbackError, match="passed its gates"):
        model_version_rollback(market_group=ungated.market_group, timeframe="1h", actor="alice")


def test_rollback_from_the_cli_and_the_api(alice, client_as, serving, capsys) -> None:  # type: ignore[no-untyped-def]
    second = model_version_promote(model_version=model_row(2), actor="alice")
    call_command("qtctl", "rollback", "--market", "BTC/USDT", "--timeframe", "1h")
    assert "to model v1" in capsys.readouterr().out
    model_version_promote(model_version=second, actor="alice")

    response = client_as(alice).post(f"/api/v1/models/{second.pk}/rollback/")

    assert response.status_code == 200 and response.json()["version"] == 1


def test_an_ungated_model_drives_paper_accounts_only() -> None:
    ungated = model_version_promote(
        model_version=model_row(1, gates=FAILED), actor="system", allow_ungated=True
    )
    assert ungated.ungated and ungated.status == ModelVersion.Status.REJECTED
    assert model_may_drive(model_version=ungated, mode="paper")
    assert not model_may_drive(model_version=ungated, mode="testnet")
    assert not model_may_drive(model_version=ungated, mode="live")
    gated = model_version_promote(model_version=model_row(2), actor="alice")
    assert model_may_drive(model_version=gated, mode="live")


def test_the_ungated_mark_shows_in_the_api_and_the_cli_listing(  # type: ignore[no-untyped-def]
    carol, client_as, capsys
) -> None:
    model_version_promote(model_version=model_row(1, gates=FAILED), actor="s", allow_ungated=True)

    body = client_as(carol).get("/api/v1/models/").json()
    call_command("qtctl", "list")

    assert body["results"][0]["ungated"] is True
    assert body["results"][0]["gates"]["sharpe"]["passed"] is False
    assert "UNGATED" in capsys.readouterr().out


def test_list_json_prints_each_version_with_gates_and_metrics(capsys) -> None:  # type: ignore[no-untyped-def]
    model_row(1)
    model_row(2, gates=FAILED)

    call_command("qtctl", "list", "--json")

    listed = json.loads(capsys.readouterr().out)
    assert [v["version"] for v in listed] == [2, 1]
    for entry in listed:
        assert {"id", "version", "status", "is_active", "gates", "metrics"} <= set(entry)
        assert set(entry["gates"]["sharpe"]) == {"value", "threshold", "passed"}
    assert listed[0]["status"] == "rejected" and listed[1]["status"] == "approved"


def test_an_operator_forces_hold_and_lifts_it_from_the_cli(serving, capsys) -> None:  # type: ignore[no-untyped-def]
    call_command("qtctl", "hold", str(serving.pk), "on", "--reason", "exchange news")
    serving.refresh_from_db()
    assert serving.forced_hold and "HOLD" in str(serving)
    call_command("qtctl", "hold", str(serving.pk), "off")
    serving.refresh_from_db()
    assert not serving.forced_hold
    assert [
        e.payload["reason"] for e in AuditEvent.objects.filter(action__startswith="model.hold")
    ] == [
        "exchange news",
        "",
    ]
