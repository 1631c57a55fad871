"""The terminal's pages: login and roles, filters, pages, CSV exports, live partials, no secrets."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.template.loader import render_to_string
from django.test import Client
from django.test.utils import CaptureQueriesContext

from marketdata.models import Market, NewsItem
from marketdata.services.sync import market_register
from risk.models import EquitySnapshot
from trading.models import ExchangeAccount, Order, Position, Trade
from trading.services.accounts import account_keys_set
from trading.tests.factories import CandleFactory, ModelVersionFactory, SignalFactory

T0 = datetime(2024, 3, 1, tzinfo=UTC)
VIEWER_PAGES = [
    "/",
    "/signals/",
    "/orders/",
    "/trades/",
    "/positions/",
    "/news/",
    "/settings/",
    "/system/",
]
OPERATOR_PAGES = ["/settings/accounts/", "/flower/", "/risk/"]


def _order(account: ExchangeAccount, market: Market, n: int, **kw: object) -> Order:
    fields: dict = {
        "account": account,
        "market": market,
        "client_order_id": f"qt-test-{market.pk}-{n}",
        "side": "BUY",
        "quantity": Decimal("0.5"),
        "status": Order.Status.FILLED,
    }
    fields.update(kw)
    order = Order.objects.create(**fields)
    # created_at is auto_now_add: set it afterwards so the date filters have something to cut.
    Order.objects.filter(pk=order.pk).update(created_at=T0 + timedelta(hours=n))
    return order


def _csv(response) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


@pytest.mark.parametrize("url", VIEWER_PAGES + OPERATOR_PAGES)
def test_every_page_sends_anonymous_visitors_to_the_login_page(db, url: str) -> None:
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("url", VIEWER_PAGES)
def test_a_user_without_a_role_gets_403_on_every_page(charlie, client_as, url: str) -> None:
    assert client_as(charlie).get(url).status_code == 403


@pytest.mark.parametrize("url", VIEWER_PAGES)
def test_a_viewer_can_open_every_terminal_page(carol, client_as, paper_account, url: str) -> None:
    market_register(exchange_code="binance", symbol="BTC/USDT")
    assert client_as(carol).get(url).status_code == 200


def test_a_viewer_sees_no_operator_links_and_gets_403_on_operator_pages(
    carol, alice, client_as, paper_account
) -> None:
    viewer = client_as(carol)
    nav = viewer.get("/").content.decode()
    for url in OPERATOR_PAGES:
        assert f'href="{url}"' not in nav
        assert viewer.get(url).status_code == 403
    operator_nav = client_as(alice).get("/").content.decode()
    for url in OPERATOR_PAGES:
        assert f'href="{url}"' in operator_nav
    for url in VIEWER_PAGES[1:]:
        assert f'href="{url}"' in nav


def test_the_orders_log_filters_by_market_side_status_and_day(
    carol, client_as, market, paper_account
) -> None:
    eth = market_register(exchange_code="binance", symbol="ETH/USDT")
    btc_buy = _order(paper_account, market, 1)
    btc_sell = _order(paper_account, market, 2, side="SELL", status=Order.Status.REJECTED)
    eth_buy = _order(paper_account, eth, 30)
    client = client_as(carol)

    def shown(query: str) -> set[int]:
        html = client.get(f"/orders/?{query}").content.decode()
        return {o.pk for o in (btc_buy, btc_sell, eth_buy) if f'id="log-order-{o.pk}"' in html}

    assert shown("") == {btc_buy.pk, btc_sell.pk, eth_buy.pk}
    assert shown(f"market={market.pk}") == {btc_buy.pk, btc_sell.pk}
    assert shown("side=SELL") == {btc_sell.pk}
    assert shown("status=filled") == {btc_buy.pk, eth_buy.pk}
    # eth_buy was created 30 hours after T0: on the next day.
    assert shown("since=2024-03-02") == {eth_buy.pk}
    assert shown("until=2024-03-01") == {btc_buy.pk, btc_sell.pk}


def test_a_bad_filter_is_a_400_naming_the_field(carol, client_as, market, paper_account) -> None:
    _order(paper_account, market, 1)
    client = client_as(carol)
    response = client.get("/orders/?status=exploded")
    assert response.status_code == 400
    assert "status" in response.content.decode()
    assert "Select a valid choice" in response.content.decode()
    backwards = client.get("/orders/?since=2024-03-05&until=2024-03-01")
    assert backwards.status_code == 400
    assert "&#x27;since&#x27; is after &#x27;until&#x27;" in backwards.content.decode()
    assert client.get("/orders/?since=yesterday&format=csv").status_code == 400
    assert Order.objects.count() == 1


def test_the_orders_log_pages_by_50_with_a_bounded_number_of_queries(
    carol, client_as, market, paper_account
) -> None:
    client = client_as(carol)
    for n in range(3):
        _order(paper_account, market, n)
    with CaptureQueriesContext(connection) as few:
        assert client.get("/orders/").status_code == 200
    Order.objects.bulk_create(
        Order(
            account=paper_account,
            market=market,
            client_order_id=f"bulk-{n}",
            side="BUY",
            quantity=Decimal("1"),
        )
        for n in range(117)
    )
    with CaptureQueriesContext(connection) as many:
        first = client.get("/orders/").content.decode()
    assert len(many) <= len(few)
    assert first.count('class="order"') == 50
    assert "120 rows · page 1 of 3" in first
    last = client.get("/orders/?page=3").content.decode()
    assert last.count('class="order"') == 20


def test_the_orders_csv_holds_exactly_the_filtered_rows_of_every_page(
    carol, client_as, market, paper_account
) -> None:
    eth = market_register(exchange_code="binance", symbol="ETH/USDT")
    for n in range(60):
        _order(paper_account, market, n, side="SELL" if n % 3 == 0 else "BUY")
    _order(paper_account, eth, 100, side="SELL")
    response = client_as(carol).get(f"/orders/?market={market.pk}&side=SELL&format=csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="orders.csv"' in response["Content-Disposition"]
    rows = _csv(response)
    assert len(rows) == 20  # n = 0, 3, ..., 57: more than one page's worth of filters applied
    assert {r["market"] for r in rows} == {"BTC/USDT"}
    assert {r["side"] for r in rows} == {"SELL"}
    assert rows[0]["account"] == "paper"
    assert rows[0]["quantity"] == "0.50000000"
    # Newest first, times in ISO UTC.
    assert rows[0]["created_at"] == (T0 + timedelta(hours=57)).isoformat()


def test_the_signals_feed_shows_model_version_probabilities_and_filters_by_action(
    carol, client_as, market
) -> None:
    mv = ModelVersionFactory(version=7)
    buy = SignalFactory(market=market, model_version=mv, action="BUY")
    sell = SignalFactory(market=market, model_version=mv, action="SELL")
    client = client_as(carol)
    html = client.get("/signals/").content.decode()
    assert f'id="signal-{buy.pk}"' in html and f'id="signal-{sell.pk}"' in html
    assert "v7" in html
    assert "0.70 / 0.15 / 0.15" in html
    # The unfiltered first page takes live rows; a filtered one does not.
    assert 'id="signal-rows"' in html
    filtered = client.get("/signals/?action=SELL").content.decode()
    assert f'id="signal-{sell.pk}"' in filtered and f'id="signal-{buy.pk}"' not in filtered
    assert 'id="signal-rows"' not in filtered
    rows = _csv(client.get("/signals/?action=BUY&format=csv"))
    assert [(r["action"], r["model_version"], r["prob_buy"]) for r in rows] == [("BUY", "7", "0.7")]


def test_an_htmx_filter_gets_only_the_table(carol, client_as, market, paper_account) -> None:
    _order(paper_account, market, 1)
    response = client_as(carol).get("/orders/?side=BUY", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="log-table">')
    assert "<html" not in html


def test_the_trades_log_totals_the_net_pnl_and_exports_it(
    carol, client_as, market, paper_account
) -> None:
    for pnl in ("12.5", "-2.25"):
        Trade.objects.create(
            account=paper_account,
            market=market,
            quantity=Decimal("1"),
            entry_time=T0,
            exit_time=T0 + timedelta(hours=1),
            entry_price=Decimal("100"),
            exit_price=Decimal("110"),
            fees=Decimal("0.1"),
            pnl=Decimal(pnl),
        )
    client = client_as(carol)
    html = client.get("/trades/").content.decode()
    assert html.count('class="trade"') == 2
    assert "10.25" in html  # net PnL
    rows = _csv(client.get(f"/trades/?account={paper_account.pk}&format=csv"))
    assert sorted(Decimal(r["pnl"]) for r in rows) == [Decimal("-2.25"), Decimal("12.5")]


def test_the_positions_page_draws_the_equity_curve_from_the_snapshots(
    carol, client_as, market, paper_account
) -> None:
    for i, equity in enumerate(("10000", "10050.5", "9990")):
        EquitySnapshot.objects.create(
            account=paper_account,
            taken_at=T0 + timedelta(seconds=15 * i),
            equity=Decimal(equity),
            peak=Decimal("10050.5"),
        )
    Position.objects.create(
        account=paper_account, market=market, quantity=Decimal("0.25"), average_price=Decimal("99")
    )
    CandleFactory(market=market, close=Decimal("101"))
    response = client_as(carol).get("/positions/")
    curve = response.context["curve"]
    assert [p["value"] for p in curve] == [10000.0, 10050.5, 9990.0]
    assert [p["time"] for p in curve] == [int(T0.timestamp()) + 15 * i for i in range(3)]
    html = response.content.decode()
    assert 'id="equity-data"' in html
    assert "0.5" in html  # unrealized: (101 - 99) * 0.25


def test_the_dashboard_shows_the_position_and_pnl_of_the_chosen_market(
    carol, client_as, market, paper_account
) -> None:
    eth = market_register(exchange_code="binance", symbol="ETH/USDT")
    Position.objects.create(
        account=paper_account,
        market=eth,
        quantity=Decimal("2"),
        average_price=Decimal("100"),
        realized_pnl=Decimal("7.5"),
    )
    CandleFactory(market=eth, close=Decimal("103"))
    response = client_as(carol).get(f"/?market={eth.pk}")
    assert response.context["market_position"].market == eth
    block = response.content.decode().split('id="market-position"')[1].split("</section>")[0]
    assert "6.00" in block  # unrealized (103 - 100) * 2
    assert "7.50" in block


def test_chart_data_carries_an_ema_overlay_and_a_sentiment_strip(
    carol, client_as, market, settings
) -> None:
    settings.QT_TIMEFRAME = "1h"
    for i in range(25):
        CandleFactory(market=market, open_time=T0 + timedelta(hours=i), close=Decimal(100 + i))
    for minutes, score in ((10, 0.5), (40, -0.1), (130, -0.8)):
        NewsItem.objects.create(
            key=f"k{minutes}",
            source="test",
            title=f"headline {minutes}",
            published_at=T0 + timedelta(minutes=minutes),
            sentiment=score,
            assets=",BTC,",
        )
    NewsItem.objects.create(
        key="eth", source="t", title="eth", published_at=T0, sentiment=0.9, assets=",ETH,"
    )
    data = client_as(carol).get(f"/markets/{market.pk}/chart.json").json()
    t0 = int(T0.timestamp())
    # EMA(20) starts at the 20th bar with the SMA of the first 20 closes (TA-Lib's seed).
    assert data["ema_period"] == 20
    assert data["ema"][0] == {"time": t0 + 19 * 3600, "value": pytest.approx(109.5)}
    assert len(data["ema"]) == 6
    assert data["sentiment"] == [
        {"time": t0, "value": 0.2, "count": 2},
        {"time": t0 + 7200, "value": -0.8, "count": 1},
    ]


def test_no_exchange_key_or_secret_is_ever_rendered(
    alice, client_as, market, paper_account
) -> None:
    account_keys_set(
        account=paper_account,
        api_key="PUBKEY-do-not-show-9876",
        api_secret="SECRET-never-shown-5432",
        api_password="PASS-never-1111",
        actor="alice",
    )
    _order(paper_account, market, 1)
    client = client_as(alice)
    for url in [*VIEWER_PAGES, "/settings/accounts/", "/orders/?format=csv"]:
        response = client.get(url)
        body = (
            b"".join(response.streaming_content) if response.streaming else response.content
        ).decode()
        for secret in ("PUBKEY-do-not-show", "SECRET-never-shown", "PASS-never"):
            assert secret not in body, f"{url} shows a secret"
        assert paper_account.api_key_enc not in body
    assert "…9876" in client.get("/settings/").content.decode()


def test_a_saved_or_failed_action_comes_back_as_a_toast(alice, client_as, paper_account) -> None:
    client = client_as(alice)
    denied = client.post(
        f"/settings/accounts/{paper_account.pk}/mode",
        {"mode": "testnet", "reason": "try"},
        follow=True,
    )
    html = denied.content.decode()
    toasts = html.split('id="toasts"')[1]
    assert 'class="toast error"' in toasts
    assert "Mode not changed" in toasts and "needs API keys" in toasts


def test_a_pushed_fill_carries_its_rows_chart_event_and_an_executed_toast(
    market, paper_account
) -> None:
    order = _order(paper_account, market, 1)
    fill = order.fills.create(
        trade_id="t1",
        price=Decimal("105.05"),
        quantity=Decimal("0.5"),
        fee=Decimal("0.05"),
        fee_currency="USDT",
        filled_at=T0,
    )
    html = render_to_string("trading/push/fill.html", {"fill": fill})
    assert 'hx-swap-oob="afterbegin:#fill-rows"' in html
    assert f'id="log-order-{order.pk}"' in html
    assert 'hx-swap-oob="beforeend:#toasts"' in html
    assert "Order executed: BUY 0.50000000 BTC/USDT @ 105.05 (paper)" in html
