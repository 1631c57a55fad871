"""The live socket, through the real ASGI stack and the real Redis channel layer."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import transaction
from django.test import Client
from django.utils import timezone

from models_registry.models import ModelVersion
from quantum.asgi import application
from quantum.realtime import push_html
from trading.models import Fill, Order, Position, Signal
from trading.services.execution import signal_act

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 5


def session_headers(client: Client | None) -> list[tuple[bytes, bytes]]:
    headers = [(b"origin", b"http://testserver")]
    if client is not None:
        session = client.cookies[settings.SESSION_COOKIE_NAME].value
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={session}".encode()))
    return headers


def socket(client: Client | None) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, "/ws/live/", headers=session_headers(client))


@async_to_sync
async def connect_only(client: Client | None) -> tuple[bool, int | str | None]:
    communicator = socket(client)
    connected, code = await communicator.connect(timeout=TIMEOUT)
    if connected:
        await communicator.disconnect()
    return connected, code


@async_to_sync
async def connect_then(client: Client, action: Callable[[], Any]) -> tuple[Any, list[str]]:
    """Connect, run `action` (sync, in the test's thread), return what the socket got."""
    communicator = socket(client)
    connected, code = await communicator.connect(timeout=TIMEOUT)
    assert connected, code
    try:
        result = await sync_to_async(action)()
        received = []
        while not await communicator.receive_nothing(timeout=0.5):
            received.append(await communicator.receive_from(timeout=TIMEOUT))
    finally:
        await communicator.disconnect()
    return result, received


def model_version() -> ModelVersion:
    return ModelVersion.objects.create(
        version=1,
        market_group="binance:BTC/USDT",
        timeframe="1h",
        path="var/artifacts/v1.json",
        sha256="0" * 64,
        feature_set="test",
        feature_set_hash="f" * 64,
        trained_at=timezone.now(),
        is_active=True,
        status=ModelVersion.Status.ACTIVE,
    )


def buy_signal(market) -> Signal:  # type: ignore[no-untyped-def]
    return Signal.objects.create(
        market=market,
        timeframe="1h",
        candle_time=timezone.now().replace(minute=0, second=0, microsecond=0),
        action="BUY",
        prob_buy=0.7,
        prob_hold=0.2,
        prob_sell=0.1,
        price=Decimal("100"),
        model_version=model_version(),
        feature_set_hash="f" * 64,
    )


def test_it_lets_a_viewer_connect(carol, client_as) -> None:  # type: ignore[no-untyped-def]
    assert connect_only(client_as(carol)) == (True, None)


def test_it_refuses_a_user_without_a_role(charlie, client_as) -> None:  # type: ignore[no-untyped-def]
    assert connect_only(client_as(charlie)) == (False, 4403)


def test_it_refuses_an_anonymous_socket() -> None:
    assert connect_only(None) == (False, 4403)


def test_it_pushes_a_signal_row_after_the_transaction_commits(  # type: ignore[no-untyped-def]
    carol, client_as, market
) -> None:
    def commit_a_signal() -> Signal:
        with transaction.atomic():
            signal = buy_signal(market)
            push_html(template="trading/push/signal.html", context={"signal": signal})
        return signal

    signal, received = connect_then(client_as(carol), commit_a_signal)
    assert len(received) == 1
    html = received[0]
    assert f'id="signal-{signal.pk}"' in html
    assert 'hx-swap-oob="afterbegin:#signal-rows"' in html
    assert "BTC/USDT" in html


def test_it_pushes_nothing_when_the_transaction_rolls_back(  # type: ignore[no-untyped-def]
    carol, client_as, market
) -> None:
    class Abort(Exception):
        pass

    def roll_back_a_signal() -> None:
        with pytest.raises(Abort), transaction.atomic():
            signal = buy_signal(market)
            push_html(template="trading/push/signal.html", context={"signal": signal})
            raise Abort

    _, received = connect_then(client_as(carol), roll_back_a_signal)
    assert received == []
    assert not Signal.objects.exists()


def test_it_pushes_the_fill_of_a_paper_order(  # type: ignore[no-untyped-def]
    carol, client_as, market, paper_account
) -> None:
    signal = buy_signal(market)

    def act() -> Order | None:
        return signal_act(account=paper_account, signal=signal)

    order, received = connect_then(client_as(carol), act)
    assert order is not None
    assert order.status == Order.Status.FILLED
    fill = Fill.objects.get(order=order)
    position = Position.objects.get(account=paper_account, market=market)
    # Rows first, then the positions table in a message of its own (htmx parses each alone).
    rows, positions = received
    assert 'hx-swap-oob="afterbegin:#fill-rows"' in rows
    assert f'id="fill-{fill.pk}"' in rows
    assert f'id="order-{order.pk}"' in rows
    assert 'data-kind="fill"' in rows
    assert 'id="positions" hx-swap-oob="true"' in positions
    assert f'id="position-{position.pk}"' in positions
