"""The news and sentiment page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from marketdata.models import NewsItem
from marketdata.services.sync import market_register

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def _news(key: str, assets: str, sentiment: float | None, hours: int = 0) -> NewsItem:
    return NewsItem.objects.create(
        key=key,
        source="test",
        title=f"headline {key}",
        url=f"https://news.example/{key}",
        published_at=T0 + timedelta(hours=hours),
        sentiment=sentiment,
        assets=assets,
    )


def test_it_needs_a_login_and_a_role(db, charlie, client_as) -> None:  # type: ignore[no-untyped-def]
    assert Client().get("/news/").status_code == 302
    assert client_as(charlie).get("/news/").status_code == 403


def test_it_shows_one_markets_headlines_with_their_mean_sentiment(  # type: ignore[no-untyped-def]
    carol, client_as, market
) -> None:
    eth = market_register(exchange_code="binance", symbol="ETH/USDT")
    btc_up = _news("a", ",BTC,", 0.6, hours=2)
    btc_down = _news("b", ",BTC,ETH,", -0.2, hours=1)
    eth_only = _news("c", ",ETH,", 0.9)
    client = client_as(carol)
    response = client.get(f"/news/?market={market.pk}")
    html = response.content.decode()
    assert f'id="news-{btc_up.pk}"' in html and f'id="news-{btc_down.pk}"' in html
    assert f'id="news-{eth_only.pk}"' not in html
    assert html.index(f'id="news-{btc_up.pk}"') < html.index(f'id="news-{btc_down.pk}"')
    assert response.context["summary"] == {"mean": pytest.approx(0.2), "n": 2}
    eth_page = client.get(f"/news/?market={eth.pk}").context["summary"]
    assert eth_page["n"] == 2


def test_it_filters_by_tone(carol, client_as, market) -> None:  # type: ignore[no-untyped-def]
    up, flat, down = _news("u", ",BTC,", 0.5), _news("f", ",BTC,", 0.0), _news("d", ",BTC,", -0.5)
    client = client_as(carol)

    def shown(tone: str) -> set[int]:
        page = client.get(f"/news/?market={market.pk}&tone={tone}").context["page"]
        return {n.pk for n in page}

    assert shown("positive") == {up.pk}
    assert shown("neutral") == {flat.pk}
    assert shown("negative") == {down.pk}
    assert shown("") == {up.pk, flat.pk, down.pk}


def test_an_unknown_market_is_a_404(carol, client_as, market) -> None:  # type: ignore[no-untyped-def]
    assert client_as(carol).get("/news/?market=999999").status_code == 404
