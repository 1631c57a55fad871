"""The live socket sends each user only what their role may see: operator cues (incidents,
risk controls) reach operators whose session passed TOTP, never viewers or traders."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.test import Client

from quantum.asgi import application
from quantum.realtime import push_html
from risk.models import Incident
from risk.services.incidents import incident_open
from trading.tests.test_consumers import session_headers

pytestmark = pytest.mark.django_db(transaction=True)


@async_to_sync
async def received_by(clients: list[Client], action) -> list[list[str]]:  # type: ignore[no-untyped-def]
    """Connect every client, run `action` once, return what each socket got."""
    from asgiref.sync import sync_to_async

    sockets = [
        WebsocketCommunicator(application, "/ws/live/", headers=session_headers(c)) for c in clients
    ]
    for socket in sockets:
        connected, code = await socket.connect(timeout=5)
        assert connected, code
    try:
        await sync_to_async(action)()
        received: list[list[str]] = []
        for socket in sockets:
            got = []
            while not await socket.receive_nothing(timeout=0.5):
                got.append(await socket.receive_from(timeout=5))
            received.append(got)
    finally:
        for socket in sockets:
            await socket.disconnect()
    return received


def test_an_incident_cue_reaches_only_operators_who_passed_mfa(  # type: ignore[no-untyped-def]
    alice, bob, carol, client_as
) -> None:
    def open_an_incident() -> None:
        with transaction.atomic():
            incident_open(
                severity=Incident.Severity.CRITICAL,
                code="EXCHANGE_DOWN",
                title="exchange unreachable",
                detail="secret detail",
            )

    operator, operator_no_mfa, trader, viewer = received_by(
        [client_as(alice), client_as(alice, mfa=False), client_as(bob), client_as(carol)],
        open_an_incident,
    )
    assert len(operator) == 1 and 'id="incidents-refresh"' in operator[0]
    assert operator_no_mfa == [] and trader == [] and viewer == []


def test_everyone_with_a_role_gets_the_viewer_pushes(alice, carol, client_as) -> None:  # type: ignore[no-untyped-def]
    def push() -> None:
        with transaction.atomic():
            push_html(template="risk/push/state.html", context={"state": None})
            push_html(template="risk/push/controls.html", context={}, role="operator")

    operator, viewer = received_by([client_as(alice), client_as(carol)], push)
    assert len(operator) == 2 and 'id="risk-refresh"' in operator[1]
    assert len(viewer) == 1 and 'id="trading-state"' in viewer[0]
