from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from django.conf import settings
from django.core.management import call_command

from marketdata.lib.news import NewsRecord, records_from_csv
from marketdata.lib.sentiment import assets_mentioned, sentiment_score
from marketdata.models import NewsItem
from marketdata.news import CryptoPanicSource, RssSource, news_frame, news_sources_configured
from marketdata.services.news import news_ingest, news_sync
from marketdata.services.sync import market_register
from marketdata.tests.news_loopback import NewsLoopback

pytestmark = pytest.mark.django_db

HEADLINES = Path(settings.QT_DATA_DIR) / "crypto_news_headlines.csv"


def test_it_fetches_every_page_of_cryptopanic_and_stores_scored_headlines() -> None:
    btc = market_register(exchange_code="binance", symbol="BTC/USDT")
    with NewsLoopback() as server:
        source = CryptoPanicSource(token="test-token", base_url=f"{server.url}/api/v1")
        report = news_sync(sources=[source])["cryptopanic"]

    assert report.inserted == 4 and report.rejected == 0
    assert [q.get("page") for path, q in server.requests] == [None, "2"]
    item = NewsItem.objects.get(title="Bitcoin and Ethereum Trim Gains, RUNE and WAVES Rally")
    assert item.origin == NewsItem.Origin.CRYPTOPANIC
    assert item.source == "CryptoNews"
    assert item.external_id == "14523544"
    assert item.published_at == datetime(2022, 3, 10, 4, 40, tzinfo=UTC)
    assert item.asset_codes == ["BTC", "ETH", "RUNE"]
    assert item.sentiment == pytest.approx(sentiment_score(item.title))
    assert item.sentiment_model.startswith("vader")
    assert btc in item.markets.all()


def test_a_second_fetch_stores_nothing_twice() -> None:
    with NewsLoopback() as server:
        source = CryptoPanicSource(token="test-token", base_url=f"{server.url}/api/v1")
        news_sync(sources=[source])
        again = news_sync(sources=[source])["cryptopanic"]

    assert (again.inserted, again.duplicates) == (0, 4)
    assert NewsItem.objects.count() == 4


def test_it_reads_an_rss_feed_with_feedparser_and_strips_the_html() -> None:
    with NewsLoopback() as server:
        report = news_sync(sources=[RssSource(url=f"{server.url}/rss")])[f"{server.url}/rss"]

    assert report.inserted == 4
    item = NewsItem.objects.get(title__startswith="Crypto-related stocks jump")
    assert item.origin == NewsItem.Origin.RSS
    assert item.source == "Cointelegraph.com News"
    assert item.published_at == datetime(2022, 3, 10, 4, 34, tzinfo=UTC)
    assert item.summary.startswith("Crypto and blockchain-related companies")
    assert "<" not in item.summary and "’" in item.summary
    assert item.subject == "Blockchain"
    assert item.sentiment > 0  # "enjoyed a surge ... positive reaction"


def test_the_same_headline_from_an_aggregator_and_a_feed_is_stored_once() -> None:
    with NewsLoopback() as server:
        news_sync(sources=[CryptoPanicSource(token="test-token", base_url=f"{server.url}/api/v1")])
        report = news_sync(sources=[RssSource(url=f"{server.url}/rss")])[f"{server.url}/rss"]

    # "Ethereum gas fees drop ..." came through CryptoPanic first.
    assert (report.inserted, report.duplicates) == (3, 1)
    assert NewsItem.objects.filter(title__startswith="Ethereum gas fees").count() == 1


def test_a_failing_source_is_reported_and_the_others_still_land() -> None:
    with NewsLoopback() as server:
        server.failing.add("/rss")
        results = news_sync(
            sources=[
                RssSource(url=f"{server.url}/rss"),
                CryptoPanicSource(token="wrong-token", base_url=f"{server.url}/api/v1"),
                CryptoPanicSource(token="test-token", base_url=f"{server.url}/api/v1"),
            ]
        )

    assert str(results[f"{server.url}/rss"]).startswith("failed: 500")
    assert NewsItem.objects.count() == 4


def test_the_real_headlines_file_loads_through_the_same_service() -> None:
    records = list(records_from_csv(HEADLINES))
    raw = pd.read_csv(HEADLINES)
    assert len(records) == len(raw) == 7494

    report = news_ingest(records=records)

    unique = {r.key for r in records}
    assert report.inserted + report.duplicates == len(records)
    assert NewsItem.objects.count() == report.inserted <= len(unique)
    assert NewsItem.objects.filter(sentiment__isnull=True).count() == 0
    about_btc = NewsItem.objects.filter(assets__contains=",BTC,").count()
    assert about_btc > 3000
    again = news_ingest(records=records_from_csv(HEADLINES))
    assert again.inserted == 0


def test_load_news_command_reports_what_it_stored(capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sample = tmp_path / "headlines.csv"
    pd.read_csv(HEADLINES).iloc[2580:2600].to_csv(sample, index=False)

    call_command("load_news", "--csv", str(sample))

    assert capsys.readouterr().out.strip() == (
        "headlines.csv: 20 stored, 0 already stored, 0 rejected"
    )
    assert NewsItem.objects.count() == 20


def test_it_rejects_headlines_without_a_title_or_from_the_future() -> None:
    now = datetime.now(UTC)
    report = news_ingest(
        records=[
            NewsRecord(title=" ", published_at=now, source="x", origin="file"),
            NewsRecord(
                title="Bitcoin tomorrow",
                published_at=now.replace(year=now.year + 1),
                source="x",
                origin="file",
            ),
        ]
    )
    assert report.rejected == 2 and report.reasons == {"empty_title": 1, "future_time": 1}


def test_news_frame_reads_only_the_assets_headlines_before_the_time() -> None:
    until = datetime(2022, 3, 10, 5, tzinfo=UTC)
    news_ingest(
        records=[
            r
            for r in records_from_csv(HEADLINES)
            if until - pd.Timedelta(days=5) <= r.published_at <= until + pd.Timedelta(days=1)
        ]
    )

    frame = news_frame(asset="ETH", until=until)

    assert len(frame) > 0
    assert frame["published_at"].max() < until
    assert frame["published_at"].min() >= until - pd.Timedelta(hours=72)
    window = NewsItem.objects.filter(
        published_at__gte=until - pd.Timedelta(hours=72), published_at__lt=until
    )
    about_eth = [i for i in window if "ETH" in i.asset_codes]
    assert len(frame) == len(about_eth) < window.count()
    assert sorted(frame["sentiment"]) == sorted(i.sentiment or 0.0 for i in about_eth)


def test_sources_come_from_the_settings(settings) -> None:  # type: ignore[no-untyped-def]
    settings.QT_CRYPTOPANIC_TOKEN = ""
    settings.QT_NEWS_RSS_FEEDS = ""
    assert news_sources_configured() == []
    settings.QT_CRYPTOPANIC_TOKEN = "abc"
    settings.QT_NEWS_RSS_FEEDS = "https://a.example/rss, https://b.example/feed"
    sources = news_sources_configured()
    assert [s.name for s in sources] == ["cryptopanic", "rss", "rss"]


def test_it_maps_headlines_to_assets_by_name_ticker_and_subject() -> None:
    assert assets_mentioned("Bitcoin and Ether rally as SOL jumps") == ["BTC", "ETH", "SOL"]
    assert assets_mentioned("The sol is setting on this market") == []
    assert assets_mentioned("Fed holds rates", subject="bitcoin") == ["BTC"]
    assert assets_mentioned("Whether it rains", codes=("doge",)) == ["DOGE"]
