from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from marketdata.models import Candle, Market
from models_registry.models import ModelVersion
from trading.models import ExchangeAccount, Fill, Order, Position, Signal

T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


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


def candle(market: Market, at: datetime, timeframe: str = "1h", close: str = "105") -> Candle:
    return Candle.objects.create(
        market=market,
        timeframe=timeframe,
        open_time=at,
        open=Decimal("100"),
        high=Decimal("110"),
        low=Decimal("90"),
        close=Decimal(close),
        volume=Decimal("12.5"),
    )


def signal(market: Market, mv: ModelVersion, at: datetime, action: str = "BUY") -> Signal:
    return Signal.objects.create(
        market=market,
        timeframe="1h",
        candle_time=at,
        action=action,
        prob_buy=0.6,
        prob_hold=0.3,
        prob_sell=0.1,
        price=Decimal("105"),
        model_version=mv,
        feature_set_hash="f" * 64,
    )


def fill(account: ExchangeAccount, s: Signal, *, side: str = "BUY") -> Fill:
    order = Order.objects.create(
        account=account,
        market=s.market,
        signal=s,
        client_order_id=f"qt-{s.pk}",
        side=side,
        quantity=Decimal("0.5"),
        filled_quantity=Decimal("0.5"),
        average_price=Decimal("105.05"),
        status=Order.Status.FILLED,
    )
    return Fill.objects.create(
        order=order,
        trade_id=f"t-{s.pk}",
        price=Decimal("105.05"),
        quantity=Decimal("0.5"),
        fee=Decimal("0.0525"),
        fee_currency="USDT",
        filled_at=s.candle_time + HOUR,
    )


def history(
    market: Market, account: ExchangeAccount, mv: ModelVersion, bars: int, *, first: int = 0
) -> None:
    """`bars` hourly candles, each with a BUY signal and its fill."""
    for i in range(first, first + bars):
        at = T0 + i * HOUR
        candle(market, at)
        fill(account, signal(market, mv, at))


def test_it_sends_anonymous_visitors_to_the_login_page(db) -> None:  # type: ignore[no-untyped-def]
    response = Client().get("/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/"


def test_it_forbids_the_dashboard_without_a_role(charlie, client_as) -> None:  # type: ignore[no-untyped-def]
    assert client_as(charlie).get("/").status_code == 403


def test_it_shows_a_viewer_the_signals_and_fills(  # type: ignore[no-untyped-def]
    carol, client_as, market, paper_account
) -> None:
    mv = model_version()
    candle(market, T0)
    buy = signal(market, mv, T0)
    sell = signal(market, mv, T0 + HOUR, action="SELL")
    bought = fill(paper_account, buy)
    Position.objects.create(
        account=paper_account,
        market=market,
        quantity=Decimal("0.5"),
        average_price=Decimal("105.05"),
        opened_at=T0,
    )
    response = client_as(carol).get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f'id="signal-{buy.pk}"' in html
    assert f'id="signal-{sell.pk}"' in html
    assert f'id="fill-{bought.pk}"' in html
    assert f'id="order-{bought.order_id}"' in html
    assert 'ws-connect="/ws/live/"' in html
    assert f'data-url="/markets/{market.pk}/chart.json"' in html
    assert "carol · viewer" in html
    # The position row: 0.5 BTC bought at 105.05, marked at the last close of 105.
    assert "105.05" in html
    assert "-0.03" in html


def test_it_shows_an_empty_dashboard_before_the_first_start(carol, client_as, db) -> None:  # type: ignore[no-untyped-def]
    response = client_as(carol).get("/")
    assert response.status_code == 200
    assert b"No markets yet" in response.content
    assert b"No signals yet." in response.content


def test_it_renders_the_dashboard_with_a_bounded_number_of_queries(  # type: ignore[no-untyped-def]
    carol, client_as, market, paper_account, django_assert_max_num_queries
) -> None:
    mv = model_version()
    client = client_as(carol)
    history(market, paper_account, mv, 3)
    with CaptureQueriesContext(connection) as few:
        assert client.get("/").status_code == 200
    history(market, paper_account, mv, 30, first=3)
    with django_assert_max_num_queries(len(few)):
        response = client.get("/")
    assert response.content.count(b'class="fill"') == 30


def test_it_forbids_chart_data_without_a_role(charlie, client_as, market) -> None:  # type: ignore[no-untyped-def]
    assert client_as(charlie).get(f"/markets/{market.pk}/chart.json").status_code == 403


def test_it_gives_chart_candles_in_unix_seconds_with_markers(  # type: ignore[no-untyped-def]
    carol, client_as, market, paper_account, settings
) -> None:
    settings.QT_TIMEFRAME = "1h"
    mv = model_version()
    for i in range(3):
        candle(market, T0 + i * HOUR, close=f"10{i}")
    buy = signal(market, mv, T0 + HOUR)
    signal(market, mv, T0 + 2 * HOUR, action="HOLD")
    fill(paper_account, buy)
    response = client_as(carol).get(f"/markets/{market.pk}/chart.json")
    assert response.status_code == 200
    data = response.json()
    assert data["market"] == "BTC/USDT"
    t0 = int(T0.timestamp())
    assert [c["time"] for c in data["candles"]] == [t0, t0 + 3600, t0 + 7200]
    assert data["candles"][0] == {
        "time": t0,
        "open": 100.0,
        "high": 110.0,
        "low": 90.0,
        "close": 100.0,
        "volume": 12.5,
    }
    # HOLD is not a marker; the fill sits on the bar of the signal that caused it.
    assert data["signals"] == [{"time": t0 + 3600, "action": "BUY"}]
    assert data["fills"] == [{"time": t0 + 3600, "side": "BUY", "price": 105.05}]


def test_it_charts_one_timeframe_only(carol, client_as, market, settings) -> None:  # type: ignore[no-untyped-def]
    settings.QT_TIMEFRAME = "1h"
    # Bars of another timeframe would give the chart duplicate times, which it refuses.
    for i in range(2):
        candle(market, T0 + i * HOUR)
    for i in range(6):
        candle(market, T0 + i * timedelta(minutes=5), timeframe="5m")
    data = client_as(carol).get(f"/markets/{market.pk}/chart.json").json()
    times = [c["time"] for c in data["candles"]]
    assert times == sorted(set(times))
    assert len(times) == 2


def test_it_answers_404_for_an_unknown_market_chart(carol, client_as, db) -> None:  # type: ignore[no-untyped-def]
    assert client_as(carol).get("/markets/999/chart.json").status_code == 404
