"""The operator's accounts page: keys in, masked out, and the guarded mode switch."""

from __future__ import annotations

import pytest

from quantum.bootstrap import trading_defaults_ensure
from trading.models import ExchangeAccount


@pytest.fixture
def account(db) -> ExchangeAccount:
    return trading_defaults_ensure()


def test_only_operators_see_the_accounts_page(account, client_as, alice, bob, carol) -> None:
    assert client_as(alice).get("/settings/accounts/").status_code == 200
    assert client_as(bob).get("/settings/accounts/").status_code == 403
    assert client_as(carol).get("/settings/accounts/").status_code == 403


def test_keys_are_saved_encrypted_and_never_shown(account, client_as, alice) -> None:
    client = client_as(alice)
    response = client.post(
        f"/settings/accounts/{account.pk}/keys",
        {
            "api_key": "KEY-abcdef-7777",
            "api_secret": "SECRET-zyx-0000",
            "api_url_override": "http://127.0.0.1:9100",
        },
        follow=True,
    )
    page = response.content.decode()
    assert "…7777" in page
    assert "KEY-abcdef-7777" not in page and "SECRET-zyx-0000" not in page
    account.refresh_from_db()
    assert account.api_url_override == "http://127.0.0.1:9100"
    assert "KEY-abcdef" not in account.api_key_enc


def test_switching_to_testnet_goes_through_the_guarded_service(account, client_as, alice) -> None:
    client = client_as(alice)
    denied = client.post(
        f"/settings/accounts/{account.pk}/mode", {"mode": "testnet", "reason": "try"}, follow=True
    )
    assert "needs API keys" in denied.content.decode()
    client.post(
        f"/settings/accounts/{account.pk}/keys", {"api_key": "KEY-1-2222", "api_secret": "S"}
    )
    client.post(f"/settings/accounts/{account.pk}/mode", {"mode": "testnet", "reason": "go"})
    account.refresh_from_db()
    assert account.mode == "testnet"


def test_live_is_refused_to_a_session_without_a_second_factor(account, client_as, alice) -> None:
    client_as(alice).post(
        f"/settings/accounts/{account.pk}/keys", {"api_key": "KEY-1-2222", "api_secret": "S"}
    )
    # Alice has an authenticator but this session did not pass it: asked for a code first.
    response = client_as(alice, mfa=False).post(
        f"/settings/accounts/{account.pk}/mode", {"mode": "live", "reason": "go"}
    )
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/2fa/reauthenticate/")
    account.refresh_from_db()
    assert account.mode == "paper"


def test_an_operator_points_the_paper_account_at_an_exchange_and_it_trades_there(
    account, client_as, alice, market, settings
) -> None:
    from decimal import Decimal

    from trading.adapters.ccxt_adapter import _clients
    from trading.models import Order, Signal
    from trading.services.execution import signal_act
    from trading.services.reconcile import accounts_reconcile
    from trading.tests.factories import SignalFactory, gated_model
    from venues.binance import LoopbackExchange

    settings.QT_EXCHANGE_TIMEOUT_MS = 1500
    _clients.clear()
    with LoopbackExchange(
        port=0, api_key="UI-KEY-0042", api_secret="UI-SECRET", balances={"USDT": "10000"}
    ) as exchange:
        client = client_as(alice)
        client.post(
            f"/settings/accounts/{account.pk}/keys",
            {"api_key": "UI-KEY-0042", "api_secret": "UI-SECRET", "api_url_override": exchange.url},
        )
        client.post(
            f"/settings/accounts/{account.pk}/mode",
            {"mode": "testnet", "reason": "try the exchange"},
        )
        account.refresh_from_db()
        assert account.mode == "testnet" and account.needs_reconcile

        # What beat's reconcile-accounts job does every minute.
        assert [r.ok for r in accounts_reconcile()] == [True]
        account.refresh_from_db()
        signal = SignalFactory(
            market=market,
            action=Signal.Action.BUY,
            price=Decimal("40000"),
            model_version=gated_model(),
        )
        order = signal_act(account=account, signal=signal)

        assert order is not None and order.status == Order.Status.FILLED
        assert [o["clientOrderId"] for o in exchange.orders()] == [order.client_order_id]
    _clients.clear()
