"""API mutations: manual orders through the real engine, cancel, the strategy switch, and
who may do them (role × token scope × MFA). Personas: alice operator, bob trader, carol
viewer, charlie no role."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from marketdata.models import Candle
from quantum.tests.auth_helpers import bearer_client
from risk.models import AuditEvent, RiskDecision, TradingState
from risk.services.state import kill_switch_set
from trading.models import BacktestRun, ExchangeAccount, Order
from trading.services.orders import order_intent_create

ORDER = {"account": "paper", "market": "BTC/USDT", "side": "BUY", "quantity": "0.01000"}


@pytest.fixture
def priced(market, paper_account) -> ExchangeAccount:  # type: ignore[no-untyped-def]
    """The paper account and a just-closed BTC/USDT bar at 20,000 to trade against."""
    hour = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    Candle.objects.create(
        market=market,
        timeframe="1h",
        open_time=hour,
        open=Decimal("20000"),
        high=Decimal("20100"),
        low=Decimal("19900"),
        close=Decimal("20000"),
        volume=Decimal("50"),
    )
    return paper_account


def post(client: Client, url: str, body: dict | None = None, **headers: str):  # type: ignore[no-untyped-def]
    return client.post(url, body or {}, content_type="application/json", **headers)


def test_a_trader_places_a_manual_order_that_fills_on_paper(bob, priced) -> None:  # type: ignore[no-untyped-def]
    response = post(
        bearer_client(bob, "trade"), "/api/v1/orders/", ORDER | {"idempotency_key": "k1"}
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    order = Order.objects.get()
    assert body["id"] == order.pk
    assert (order.side, order.quantity, order.strategy) == ("BUY", Decimal("0.01"), "manual")
    assert order.status == Order.Status.FILLED
    assert order.average_price is not None and order.average_price > Decimal("20000")  # slippage
    assert "bob" in order.reason
    assert RiskDecision.objects.get().approved is True  # the real pre-trade checks ran


def test_a_retry_with_the_same_key_returns_the_same_order(bob, priced) -> None:  # type: ignore[no-untyped-def]
    client = bearer_client(bob, "trade")
    first = post(client, "/api/v1/orders/", ORDER, HTTP_IDEMPOTENCY_KEY="rebalance-7")
    again = post(client, "/api/v1/orders/", ORDER, HTTP_IDEMPOTENCY_KEY="rebalance-7")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert Order.objects.count() == 1
    assert RiskDecision.objects.count() == 1


def test_a_new_key_places_a_new_order(bob, priced) -> None:  # type: ignore[no-untyped-def]
    client = bearer_client(bob, "trade")
    post(client, "/api/v1/orders/", ORDER | {"idempotency_key": "a"})
    post(client, "/api/v1/orders/", ORDER | {"idempotency_key": "b"})
    assert Order.objects.count() == 2


def test_a_key_reused_for_another_order_is_refused(bob, priced) -> None:  # type: ignore[no-untyped-def]
    client = bearer_client(bob, "trade")
    post(client, "/api/v1/orders/", ORDER | {"idempotency_key": "same"})
    response = post(
        client, "/api/v1/orders/", ORDER | {"idempotency_key": "same", "quantity": "0.02"}
    )
    assert response.status_code == 409
    assert response.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert Order.objects.count() == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"idempotency_key": None}, "idempotency_key"),
        ({"idempotency_key": "has spaces"}, "idempotency_key"),
        ({"market": "DOGE/USDT"}, "market"),
        ({"quantity": "0.000001"}, "quantity"),  # below BTC/USDT's 5-decimal step
        ({"quantity": "-1"}, "quantity"),
        ({"side": "HOLD"}, "side"),
        ({"account": "nope"}, "account"),
    ],
)
def test_a_bad_order_is_refused_naming_the_field(bob, priced, change, field) -> None:  # type: ignore[no-untyped-def]
    body = {k: v for k, v in (ORDER | {"idempotency_key": "k"} | change).items() if v is not None}
    response = post(bearer_client(bob, "trade"), "/api/v1/orders/", body)
    assert response.status_code == 400
    assert field in response.json()
    assert not Order.objects.exists()


def test_a_risk_denial_comes_back_with_its_code(bob, alice, priced) -> None:  # type: ignore[no-untyped-def]
    kill_switch_set(on=True, reason="outage", actor="alice")
    response = post(
        bearer_client(bob, "trade"), "/api/v1/orders/", ORDER | {"idempotency_key": "x"}
    )
    assert response.status_code == 422
    assert response.json()["code"] == "TRADING_HALTED"
    assert not Order.objects.exists()


def test_a_read_token_cannot_order(bob, priced) -> None:  # type: ignore[no-untyped-def]
    response = post(bearer_client(bob, "read"), "/api/v1/orders/", ORDER | {"idempotency_key": "k"})
    assert response.status_code == 403
    assert "scope" in response.json()["detail"]
    assert not Order.objects.exists()


def test_a_viewer_cannot_order_whatever_the_token(carol, priced) -> None:  # type: ignore[no-untyped-def]
    response = post(bearer_client(carol), "/api/v1/orders/", ORDER | {"idempotency_key": "k"})
    assert response.status_code == 403
    assert not Order.objects.exists()


def test_a_trader_cancels_an_open_order(bob, priced, market) -> None:  # type: ignore[no-untyped-def]
    order = order_intent_create(
        account_id=priced.pk,
        market_id=market.pk,
        signal_id=None,
        side="BUY",
        quantity=Decimal("0.01"),
        client_order_id="qt-open-1",
        strategy="manual",
        reason="test",
    )
    client = bearer_client(bob, "trade")
    response = post(client, f"/api/v1/orders/{order.pk}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "canceled"
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELED
    assert "bob" in order.events.last().cause

    again = post(client, f"/api/v1/orders/{order.pk}/cancel/")
    assert again.status_code == 409
    assert again.json()["code"] == "NOT_OPEN"


def test_a_trader_switches_the_strategy_off_and_on(bob, priced) -> None:  # type: ignore[no-untyped-def]
    client = bearer_client(bob, "trade")
    off = post(client, f"/api/v1/accounts/{priced.pk}/strategy/", {"enabled": False})
    assert off.status_code == 200 and off.json()["strategy_enabled"] is False
    priced.refresh_from_db()
    assert priced.strategy_enabled is False
    post(client, f"/api/v1/accounts/{priced.pk}/strategy/", {"enabled": True})
    priced.refresh_from_db()
    assert priced.strategy_enabled is True
    assert list(
        AuditEvent.objects.filter(action__startswith="account.strategy").values_list(
            "action", flat=True
        )
    ) == ["account.strategy_disabled", "account.strategy_enabled"]


def test_a_live_account_needs_an_operator_for_the_strategy_switch(bob, alice, priced) -> None:  # type: ignore[no-untyped-def]
    ExchangeAccount.objects.filter(pk=priced.pk).update(mode="live")
    url = f"/api/v1/accounts/{priced.pk}/strategy/"
    refused = post(bearer_client(bob, "trade"), url, {"enabled": False})
    assert refused.status_code == 403
    assert "live" in refused.json()["detail"]
    priced.refresh_from_db()
    assert priced.strategy_enabled is True
    assert post(bearer_client(alice, "operate"), url, {"enabled": False}).status_code == 200


def test_a_trade_token_cannot_use_the_kill_switch(alice, priced) -> None:  # type: ignore[no-untyped-def]
    response = post(
        bearer_client(alice, "trade"), "/api/v1/risk/killswitch/", {"on": True, "reason": "x"}
    )
    assert response.status_code == 403
    assert TradingState.objects.get(account=None).kill_switch is False


def test_an_operate_token_of_a_user_no_longer_operator_cannot_operate(alice, priced) -> None:  # type: ignore[no-untyped-def]
    client = bearer_client(alice, "operate")
    from django.contrib.auth.models import Group

    alice.groups.set([Group.objects.get_or_create(name="trader")[0]])
    response = post(client, "/api/v1/risk/killswitch/", {"on": True, "reason": "x"})
    assert response.status_code == 403
    assert TradingState.objects.get(account=None).kill_switch is False


def test_an_operate_token_stops_operating_when_its_owner_drops_totp(alice, priced) -> None:  # type: ignore[no-untyped-def]
    from allauth.mfa.models import Authenticator

    client = bearer_client(alice, "operate")
    Authenticator.objects.filter(user=alice).delete()
    response = post(client, "/api/v1/risk/killswitch/", {"on": True, "reason": "x"})
    assert response.status_code == 403
    assert "TOTP" in response.json()["detail"]
    assert TradingState.objects.get(account=None).kill_switch is False


def test_an_operate_token_uses_the_kill_switch(alice, priced) -> None:  # type: ignore[no-untyped-def]
    response = post(
        bearer_client(alice, "operate"), "/api/v1/risk/killswitch/", {"on": True, "reason": "x"}
    )
    assert response.status_code == 200
    assert TradingState.objects.get(account=None).kill_switch is True


MUTATIONS = [
    ("/api/v1/orders/", ORDER | {"idempotency_key": "walk"}),
    ("/api/v1/orders/{order}/cancel/", {}),
    ("/api/v1/accounts/{account}/strategy/", {"enabled": False}),
    ("/api/v1/risk/killswitch/", {"on": True, "reason": "walk"}),
    ("/api/v1/models/{model}/promote/", {}),
    ("/api/v1/models/{model}/rollback/", {}),
    ("/api/v1/models/{model}/shadow/", {"enabled": True}),
    ("/api/v1/models/retrain/", {}),
    ("/api/v1/backtests/", {"strategy": "ema_cross", "market": "BTC/USDT"}),
]


def test_the_walk_below_covers_every_mutating_route_of_the_openapi_schema(db) -> None:
    """The list of mutations is checked against the schema itself: a new POST/PUT/PATCH/DELETE
    route that nobody added to MUTATIONS (or to PUBLIC) fails here."""
    from quantum.tests.test_api_fuzz import openapi_schema

    in_schema = {
        path.replace("{id}", "{x}")
        for path, methods in openapi_schema()["paths"].items()
        for method in methods
        if method in ("post", "put", "patch", "delete")
    }
    walked = {
        template.replace("{order}", "{x}").replace("{account}", "{x}").replace("{model}", "{x}")
        for template, _ in MUTATIONS
    }
    assert in_schema - PUBLIC == walked


# The password exchange is open by design (it is how a caller gets a token): it never
# mutates trading state and is refused without valid credentials (quantum/tests/test_api_tokens.py).
PUBLIC = {"/api/v1/auth/token/"}


def _state() -> tuple:
    from models_registry.models import ModelVersion, TrainingRun

    return (
        list(Order.objects.values_list("id", "status")),
        list(ExchangeAccount.objects.values_list("id", "strategy_enabled")),
        list(TradingState.objects.values_list("id", "kill_switch")),
        list(ModelVersion.objects.values_list("id", "is_active", "shadow")),
        TrainingRun.objects.count(),
        BacktestRun.objects.count(),
    )


@pytest.mark.parametrize("who", ["anonymous", "charlie", "carol-read", "bob-trade", "alice-read"])
def test_every_mutation_refuses_callers_without_the_role_or_scope(  # type: ignore[no-untyped-def]
    request, who, priced, market
) -> None:
    from models_registry.models import ModelVersion

    model = ModelVersion.objects.create(
        version=1,
        market_group="binance:BTC/USDT",
        timeframe="1h",
        path="var/artifacts/v1.json",
        sha256="0" * 64,
        feature_set="test",
        feature_set_hash="f" * 64,
        trained_at=timezone.now(),
    )
    order = order_intent_create(
        account_id=priced.pk,
        market_id=market.pk,
        signal_id=None,
        side="BUY",
        quantity=Decimal("0.01"),
        client_order_id="qt-walk",
        strategy="manual",
        reason="walk",
    )
    if who == "anonymous":
        client = Client()
    else:
        name, _, scope = who.partition("-")
        client = bearer_client(request.getfixturevalue(name), scope or "read")
    before = _state()
    for template, body in MUTATIONS:
        url = template.format(order=order.pk, account=priced.pk, model=model.pk)
        response = post(client, url, body)
        # bob (trader) may do the trader mutations; everything else must be refused.
        if who == "bob-trade" and "/models/" not in url and "killswitch" not in url:
            continue
        expected = 401 if who == "anonymous" else 403
        assert response.status_code == expected, (who, url, response.content)
    if who != "bob-trade":
        assert _state() == before


def test_a_trader_starts_a_backtest_and_reads_it_back(bob, market) -> None:  # type: ignore[no-untyped-def]
    client = bearer_client(bob, "trade")
    response = post(
        client,
        "/api/v1/backtests/",
        {"strategy": "ema_cross", "market": "BTC/USDT", "params": {"fast": 5, "slow": 20}},
    )
    assert response.status_code == 202, response.json()
    run = BacktestRun.objects.get()
    assert response.json()["id"] == run.pk and run.status == "queued"
    assert run.created_by == bob and run.config["params"] == {"fast": 5, "slow": 20}
    listed = client.get("/api/v1/backtests/").json()
    assert [r["id"] for r in listed["results"]] == [run.pk]
    assert "results" in client.get(f"/api/v1/backtests/{run.pk}/").json()


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"strategy": "ema_cross", "market": "DOGE/USDT"}, "market"),
        ({"strategy": "astrology", "market": "BTC/USDT"}, "strategy"),
        ({"market": "BTC/USDT", "fee_bps": "lots"}, "fee_bps"),
        ({"market": "BTC/USDT", "data": "/etc/passwd"}, "data"),
    ],
)
def test_a_bad_backtest_config_is_refused_naming_the_field(bob, market, body, named) -> None:  # type: ignore[no-untyped-def]
    response = post(bearer_client(bob, "trade"), "/api/v1/backtests/", body)
    assert response.status_code == 400
    assert response.json()["detail"].startswith(named)
    assert not BacktestRun.objects.exists()
