"""The real ccxt binance client against a loopback server that speaks Binance's REST API."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import ccxt
import pytest
from django.conf import settings

from marketdata.lib.candles import parse_time
from marketdata.models import Candle, CandleGap, Market
from marketdata.services.sync import market_backfill, market_sync
from marketdata.sources import CcxtSource, read_candle_csv
from venues.binance_klines import BinanceLoopback

pytestmark = pytest.mark.django_db

HOUR = timedelta(hours=1)
SERVED_FROM = datetime(2024, 10, 1, tzinfo=UTC)
BACKFILL_FROM = datetime(2024, 11, 1, tzinfo=UTC)


@functools.cache
def served_rows() -> tuple[dict[str, object], ...]:
    """The last three months of real BTC/USDT 1h bars (2024-10-01 .. 2024-12-31 23:00)."""
    rows = read_candle_csv(Path(settings.QT_DATA_DIR) / "binance_BTCUSDT_1h.csv")
    return tuple(r for r in rows if parse_time(r["open_time"]) >= SERVED_FROM)


@pytest.fixture
def exchange(settings) -> Iterator[BinanceLoopback]:  # type: ignore[no-untyped-def]
    with BinanceLoopback(served_rows()) as server:
        settings.QT_CCXT_URL_OVERRIDE = server.url
        yield server
    assert not server.running


def days_back_to(when: datetime) -> int:
    """Whole days for market_backfill (which counts back from the wall clock) to reach `when`.

    Its `since` then falls in the 24 hours up to `when`; tests read the exact value from the
    first request the exchange saw (`since_of`).
    """
    return math.ceil((datetime.now(UTC) - when) / timedelta(days=1))


def since_of(exchange: BinanceLoopback) -> datetime:
    return datetime.fromtimestamp(int(exchange.kline_requests()[0]["startTime"]) / 1000, UTC)


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def stored(market: Market) -> list[tuple[datetime, Decimal, Decimal, Decimal, Decimal, Decimal]]:
    return list(
        Candle.objects.filter(market=market, timeframe="1h")
        .order_by("open_time")
        .values_list("open_time", "open", "high", "low", "close", "volume")
    )


def as_stored(
    row: dict[str, object],
) -> tuple[datetime, Decimal, Decimal, Decimal, Decimal, Decimal]:
    prices = (Decimal(str(row[k])) for k in ("open", "high", "low", "close", "volume"))
    return (parse_time(row["open_time"]), *prices)  # type: ignore[return-value]


def test_it_points_every_binance_api_at_the_override_keeping_the_paths(
    exchange: BinanceLoopback,
) -> None:
    urls = CcxtSource("binance").client.urls["api"]

    assert urls["public"] == f"{exchange.url}/api/v3"
    assert urls["fapiPublic"] == f"{exchange.url}/fapi/v1"
    assert all(url.startswith(exchange.url + "/") for url in urls.values())


def test_it_backfills_through_the_exchange_page_by_page_with_exact_decimals(
    market: Market, exchange: BinanceLoopback
) -> None:
    report = market_backfill(
        market=market,
        timeframe="1h",
        source=CcxtSource("binance"),
        days=days_back_to(BACKFILL_FROM),
    )

    pages = exchange.kline_requests()
    since = since_of(exchange)
    assert BACKFILL_FROM - timedelta(days=1) < since <= BACKFILL_FROM
    expected = [as_stored(r) for r in served_rows() if parse_time(r["open_time"]) >= since]
    assert len(expected) > 1000  # more than one page of 1000 bars
    assert stored(market) == expected
    assert (report.inserted, report.duplicates, report.rejected) == (len(expected), 0, [])
    # Page two starts right after the last bar of page one.
    assert [(p["symbol"], p["interval"], p["limit"]) for p in pages] == [
        ("BTCUSDT", "1h", "1000")
    ] * 2
    assert int(pages[1]["startTime"]) == ms(expected[999][0] + HOUR)
    # Only spot endpoints: load_markets does not reach for the futures APIs.
    assert exchange.paths() == ["/api/v3/exchangeInfo", "/api/v3/klines", "/api/v3/klines"]


def test_it_resumes_a_backfill_after_the_newest_stored_bar(
    market: Market, exchange: BinanceLoopback
) -> None:
    source = CcxtSource("binance")
    days = days_back_to(BACKFILL_FROM)
    market_backfill(market=market, timeframe="1h", source=source, days=days)
    newest = stored(market)[-1][0]

    again = market_backfill(market=market, timeframe="1h", source=source, days=days)

    assert (again.inserted, again.rejected) == (0, [])
    assert int(exchange.kline_requests()[-1]["startTime"]) == ms(newest + HOUR)


def test_it_rejects_malformed_klines_from_the_exchange_and_stores_the_rest(
    market: Market, exchange: BinanceLoopback
) -> None:
    day = datetime(2024, 12, 30, tzinfo=UTC)
    nan_at, inverted_at = day + 5 * HOUR, day + 9 * HOUR

    def nan_close(k: list[object]) -> list[object]:
        return [*k[:4], "NaN", *k[5:]]

    def high_below_low(k: list[object]) -> list[object]:
        return [k[0], k[1], k[3], k[2], *k[4:]]  # high and low swapped

    exchange.mangled = {ms(nan_at): nan_close, ms(inverted_at): high_below_low}

    report = market_backfill(
        market=market, timeframe="1h", source=CcxtSource("binance"), days=days_back_to(day)
    )

    assert [(parse_time(r.open_time), r.reason) for r in report.rejected] == [
        (nan_at, "close is not finite: nan"),
        (inverted_at, "high below low"),
    ]
    since = since_of(exchange)
    expected = [
        as_stored(r)
        for r in served_rows()
        if parse_time(r["open_time"]) >= since
        and parse_time(r["open_time"]) not in (nan_at, inverted_at)
    ]
    assert stored(market) == expected
    assert report.inserted == len(expected) >= 48 - 2


def test_it_never_stores_the_bar_that_is_still_forming(
    market: Market, exchange: BinanceLoopback
) -> None:
    day = datetime(2024, 12, 31, tzinfo=UTC)
    this_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    # Binance's newest kline is the current hour, its close still moving.
    exchange.klines.append([ms(this_hour), *exchange.klines[-1][1:]])

    report = market_backfill(
        market=market, timeframe="1h", source=CcxtSource("binance"), days=days_back_to(day)
    )

    assert report.rejected == []
    assert stored(market)[-1][0] == datetime(2024, 12, 31, 23, tzinfo=UTC)
    assert not Candle.objects.filter(open_time=this_hour).exists()


@pytest.mark.parametrize(
    ("status", "error"),
    [
        pytest.param(500, ccxt.ExchangeNotAvailable, id="500"),
        pytest.param(429, ccxt.DDoSProtection, id="429"),
    ],
)
def test_it_surfaces_an_exchange_error_and_stores_nothing(
    market: Market, exchange: BinanceLoopback, status: int, error: type[Exception]
) -> None:
    exchange.klines_status = status

    with pytest.raises(error, match=str(status)):
        market_backfill(
            market=market,
            timeframe="1h",
            source=CcxtSource("binance"),
            days=days_back_to(BACKFILL_FROM),
        )

    assert exchange.paths()[-1] == "/api/v3/klines"
    assert Candle.objects.count() == 0


def test_it_backfills_a_recorded_gap_once_the_exchange_has_the_bars(
    market: Market, exchange: BinanceLoopback
) -> None:
    day = datetime(2024, 12, 30, tzinfo=UTC)
    withheld = {ms(day + h * HOUR) for h in (10, 11, 12)}
    exchange.hidden = set(withheld)
    source = CcxtSource("binance")
    market_backfill(market=market, timeframe="1h", source=source, days=days_back_to(day))
    gap = CandleGap.objects.get(market=market)
    assert (gap.start, gap.end, gap.bars_missing, gap.backfilled) == (
        day + 10 * HOUR,
        day + 12 * HOUR,
        3,
        False,
    )

    exchange.hidden.clear()
    report = market_sync(market=market, timeframe="1h", source=source)

    assert report.inserted == 3
    assert sorted(report.new_times) == [day + h * HOUR for h in (10, 11, 12)]
    gap.refresh_from_db()
    assert gap.backfilled is True
    assert stored(market) == [
        as_stored(r) for r in served_rows() if parse_time(r["open_time"]) >= since_of(exchange)
    ]
    # The gap was asked for by its first missing bar and its size.
    ask = exchange.kline_requests()[-1]
    assert (int(ask["startTime"]), ask["limit"]) == (min(withheld), "3")


def test_it_keeps_a_gap_recorded_while_the_exchange_still_lacks_the_bars(
    market: Market, exchange: BinanceLoopback
) -> None:
    day = datetime(2024, 12, 30, tzinfo=UTC)
    exchange.hidden = {ms(day + 10 * HOUR)}
    source = CcxtSource("binance")
    market_backfill(market=market, timeframe="1h", source=source, days=days_back_to(day))

    report = market_sync(market=market, timeframe="1h", source=source)

    assert report.inserted == 0
    gap = CandleGap.objects.get(market=market)
    assert (gap.start, gap.bars_missing, gap.backfilled) == (day + 10 * HOUR, 1, False)
    assert (gap.backfill_attempts, gap.last_attempt_at is not None) == (1, True)


def test_it_asks_for_a_permanent_gap_at_most_once_an_hour(
    market: Market, exchange: BinanceLoopback
) -> None:
    day = datetime(2024, 12, 30, tzinfo=UTC)
    exchange.hidden = {ms(day + 10 * HOUR)}
    source = CcxtSource("binance")
    market_backfill(market=market, timeframe="1h", source=source, days=days_back_to(day))
    market_sync(market=market, timeframe="1h", source=source)
    asked = len(exchange.kline_requests())

    market_sync(market=market, timeframe="1h", source=source)

    # Only the tail is polled again; the hole waits for its hour.
    new = exchange.kline_requests()[asked:]
    assert [int(r["startTime"]) for r in new] != [] and ms(day + 10 * HOUR) not in [
        int(r["startTime"]) for r in new
    ]
    CandleGap.objects.update(last_attempt_at=datetime.now(UTC) - 2 * HOUR)
    asked = len(exchange.kline_requests())
    market_sync(market=market, timeframe="1h", source=source)
    later = exchange.kline_requests()[asked:]
    assert ms(day + 10 * HOUR) in [int(r["startTime"]) for r in later]
    assert CandleGap.objects.get().backfill_attempts == 2
