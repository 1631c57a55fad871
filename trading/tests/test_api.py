from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import yaml
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from marketdata.models import Candle, Market
from marketdata.services.sync import market_register
from models_registry.models import ModelVersion
from quantum.models import ApiToken
from quantum.tests.auth_helpers import bearer_client
from trading.models import ExchangeAccount, Fill, Order, Position, Signal

PASSWORD = "correct-horse-42"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
ENDPOINTS = ["markets", "candles", "signals", "orders", "fills", "positions", "models"]


def api_client(user) -> Client:  # type: ignore[no-untyped-def]
    return bearer_client(user, "read")


def model_version(version: int = 1, group: str = "binance:BTC/USDT") -> ModelVersion:
    return ModelVersion.objects.create(
        version=version,
        market_group=group,
        timeframe="1h",
        path=f"var/artifacts/v{version}.json",
        sha256="0" * 64,
        feature_set="test",
        feature_set_hash="f" * 64,
        trained_at=timezone.now(),
    )


def trade_rows(
    market: Market, account: ExchangeAccount, mv: ModelVersion, *, hour: int, action: str = "BUY"
) -> Fill:
    """A candle, a signal on it, the filled order it caused and its fill; one hour each."""
    at = T0 + hour * HOUR
    Candle.objects.create(
        market=market,
        timeframe="1h",
        open_time=at,
        open=Decimal("100"),
        high=Decimal("110"),
        low=Decimal("90"),
        close=Decimal("105.5"),
        volume=Decimal("12.5"),
    )
    signal = Signal.objects.create(
        market=market,
        timeframe="1h",
        candle_time=at,
        action=action,
        prob_buy=0.6,
        prob_hold=0.3,
        prob_sell=0.1,
        price=Decimal("105.5"),
        model_version=mv,
        feature_set_hash="f" * 64,
    )
    order = Order.objects.create(
        account=account,
        market=market,
        signal=signal,
        client_order_id=f"qt-{market.pk}-{hour}",
        side="BUY" if action == "BUY" else "SELL",
        quantity=Decimal("0.25"),
        filled_quantity=Decimal("0.25"),
        average_price=Decimal("105.6"),
        status="filled",
    )
    return Fill.objects.create(
        order=order,
        trade_id=f"t-{market.pk}-{hour}",
        price=Decimal("105.6"),
        quantity=Decimal("0.25"),
        fee=Decimal("0.0264"),
        fee_currency="USDT",
        filled_at=at + timedelta(minutes=1),
    )


def dataset(account: ExchangeAccount, count: int, *, first: int = 0) -> None:
    """`count` markets, each with a model, candle, signal, order, fill and position."""
    for i in range(first, first + count):
        market = market_register(exchange_code="binance", symbol=f"C{i}/USDT")
        mv = model_version(i + 1, group=f"binance:{market.symbol}")
        trade_rows(market, account, mv, hour=i)
        Position.objects.create(
            account=account,
            market=market,
            quantity=Decimal("0.25"),
            average_price=Decimal("105.6"),
            opened_at=T0,
        )


def test_it_gives_a_read_token_for_valid_credentials(carol) -> None:  # type: ignore[no-untyped-def]
    response = Client().post(
        "/api/v1/auth/token/",
        {"username": "carol", "password": PASSWORD},
        content_type="application/json",
    )
    assert response.status_code == 201
    body = response.json()
    token = ApiToken.objects.get(user=carol)
    assert body == {"token": body["token"], "prefix": token.prefix, "scope": "read"}
    assert body["token"].startswith(token.prefix)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {body['token']}"}
    assert Client(**headers).get("/api/v1/markets/").status_code == 200


def test_a_password_never_buys_an_operate_token(alice) -> None:  # type: ignore[no-untyped-def]
    response = Client().post(
        "/api/v1/auth/token/",
        {"username": "alice", "password": PASSWORD, "scope": "operate"},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "scope" in response.json()
    assert not ApiToken.objects.exists()


def test_it_refuses_a_token_for_a_wrong_password(carol) -> None:  # type: ignore[no-untyped-def]
    response = Client().post(
        "/api/v1/auth/token/",
        {"username": "carol", "password": "wrong"},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "token" not in response.json()
    assert not ApiToken.objects.filter(user=carol).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("name", ENDPOINTS)
def test_it_requires_authentication(name: str) -> None:
    response = Client().get(f"/api/v1/{name}/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("name", ENDPOINTS)
def test_it_rejects_a_bad_token(name: str, carol) -> None:  # type: ignore[no-untyped-def]
    response = Client(HTTP_AUTHORIZATION="Bearer qt_not-a-real-token").get(f"/api/v1/{name}/")
    assert response.status_code == 401


@pytest.mark.parametrize("name", ENDPOINTS)
def test_it_forbids_a_user_without_a_role(name: str, charlie) -> None:  # type: ignore[no-untyped-def]
    assert api_client(charlie).get(f"/api/v1/{name}/").status_code == 403


@pytest.mark.parametrize("name", ENDPOINTS)
def test_it_lists_paginated_results_for_a_viewer(  # type: ignore[no-untyped-def]
    name: str, carol, paper_account
) -> None:
    dataset(paper_account, 3)
    response = api_client(carol).get(f"/api/v1/{name}/")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert len(body["results"]) == 3
    assert body["next"] is None


def test_it_serializes_money_as_decimal_strings(carol, market, paper_account) -> None:  # type: ignore[no-untyped-def]
    trade_rows(market, paper_account, model_version(), hour=0)
    client = api_client(carol)
    fill = client.get("/api/v1/fills/").json()["results"][0]
    assert fill["price"] == "105.60000000"
    assert fill["quantity"] == "0.25000000"
    assert fill["fee"] == "0.02640000"
    assert fill["market"] == "BTC/USDT"
    assert fill["side"] == "BUY"
    signal = client.get("/api/v1/signals/").json()["results"][0]
    assert signal["price"] == "105.50000000"
    assert signal["model_version"] == 1
    order = client.get("/api/v1/orders/").json()["results"][0]
    assert order["quantity"] == "0.25000000"
    assert order["average_price"] == "105.60000000"
    candle = client.get("/api/v1/candles/").json()["results"][0]
    assert candle["close"] == "105.50000000"
    assert candle["open_time"] == "2024-01-01T00:00:00Z"


def test_it_filters_by_market_symbol(carol, market, paper_account) -> None:  # type: ignore[no-untyped-def]
    eth = market_register(exchange_code="binance", symbol="ETH/USDT")
    mv = model_version(group="binance:BTC/USDT,ETH/USDT")
    btc_fill = trade_rows(market, paper_account, mv, hour=0)
    trade_rows(eth, paper_account, mv, hour=1)
    client = api_client(carol)
    for name in ("candles", "signals", "orders", "fills"):
        results = client.get(f"/api/v1/{name}/", {"market": "BTC/USDT"}).json()["results"]
        assert [r["market"] for r in results] == ["BTC/USDT"], name
    by_id = client.get("/api/v1/fills/", {"market": str(market.pk)}).json()["results"]
    assert [r["id"] for r in by_id] == [btc_fill.pk]


def test_it_filters_signals_by_action(carol, market, paper_account) -> None:  # type: ignore[no-untyped-def]
    mv = model_version()
    trade_rows(market, paper_account, mv, hour=0, action="BUY")
    trade_rows(market, paper_account, mv, hour=1, action="SELL")
    trade_rows(market, paper_account, mv, hour=2, action="BUY")
    client = api_client(carol)
    buys = client.get("/api/v1/signals/", {"action": "BUY"}).json()["results"]
    assert [s["action"] for s in buys] == ["BUY", "BUY"]
    sells = client.get("/api/v1/signals/", {"action": "sell"}).json()["results"]
    assert [s["candle_time"] for s in sells] == ["2024-01-01T01:00:00Z"]


def test_it_filters_by_time_range(carol, market, paper_account) -> None:  # type: ignore[no-untyped-def]
    mv = model_version()
    for hour in range(4):
        trade_rows(market, paper_account, mv, hour=hour)
    client = api_client(carol)
    results = client.get(
        "/api/v1/signals/", {"since": "2024-01-01T01:00:00Z", "until": "2024-01-01T02:00:00Z"}
    ).json()["results"]
    assert [s["candle_time"] for s in results] == ["2024-01-01T02:00:00Z", "2024-01-01T01:00:00Z"]
    ms = int((T0 + 3 * HOUR).timestamp() * 1000)
    results = client.get("/api/v1/candles/", {"since": str(ms)}).json()["results"]
    assert [c["open_time"] for c in results] == ["2024-01-01T03:00:00Z"]


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01", "99999999999999999999999"])
def test_it_rejects_a_malformed_since_with_a_message(value: str, carol) -> None:  # type: ignore[no-untyped-def]
    response = api_client(carol).get("/api/v1/signals/", {"since": value})
    assert response.status_code == 400
    assert response.json()["since"].startswith("not an ISO-8601 time")


@pytest.mark.parametrize("name", ENDPOINTS)
def test_it_lists_with_a_bounded_number_of_queries(  # type: ignore[no-untyped-def]
    name: str, carol, paper_account, django_assert_max_num_queries
) -> None:
    client = api_client(carol)
    dataset(paper_account, 5)
    with CaptureQueriesContext(connection) as few:
        assert len(client.get(f"/api/v1/{name}/").json()["results"]) == 5
    assert len(few) <= 5
    dataset(paper_account, 45, first=5)
    with django_assert_max_num_queries(len(few)):
        assert len(client.get(f"/api/v1/{name}/").json()["results"]) == 50


def test_it_serves_the_openapi_schema(carol) -> None:  # type: ignore[no-untyped-def]
    response = api_client(carol).get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "Quantum Trader API"
    for name in ENDPOINTS:
        assert f"/api/v1/{name}/" in schema["paths"]
    assert "/api/v1/auth/token/" in schema["paths"]


def test_it_renders_the_api_docs(carol, client_as) -> None:  # type: ignore[no-untyped-def]
    response = client_as(carol).get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger-ui" in response.content
    assert b"/api/schema/" in response.content
