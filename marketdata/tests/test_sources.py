from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from marketdata.lib.candles import parse_time
from marketdata.models import Candle, CandleGap, Market
from marketdata.services.sync import market_backfill, market_register, market_sync
from marketdata.sources import ReplaySource

pytestmark = pytest.mark.django_db

HOUR = timedelta(hours=1)
# The last bar of binance_BTCUSDT_1h.csv.
FILE_END = datetime(2024, 12, 31, 23, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _default_replay_start(settings) -> None:  # type: ignore[no-untyped-def]
    # The environment of a developer or CI job may set one; these tests state their own.
    settings.QT_REPLAY_START = ""


def stored_times(market: Market) -> list[datetime]:
    return list(
        Candle.objects.filter(market=market, timeframe="1h")
        .order_by("open_time")
        .values_list("open_time", flat=True)
    )


def test_it_starts_the_replay_30_days_before_the_end_of_the_file(market: Market) -> None:
    source = ReplaySource()

    assert source.replay_start(market, "1h") == FILE_END - timedelta(days=30)


def test_it_reads_the_files_of_the_configured_data_dir(market: Market, settings, data_dir) -> None:  # type: ignore[no-untyped-def]
    assert ReplaySource().path(market, "1h") == data_dir / "binance_BTCUSDT_1h.csv"

    settings.QT_DATA_DIR = data_dir / "elsewhere"
    with pytest.raises(FileNotFoundError, match="no replay file for BTC/USDT 1h"):
        ReplaySource().history(market, "1h", days=1)


def test_it_gives_as_history_only_the_bars_before_the_replay_start(market: Market) -> None:
    source = ReplaySource()
    start = source.replay_start(market, "1h")

    history = source.history(market, "1h", days=3)

    times = [parse_time(r["open_time"]) for r in history]
    # December 2024 has no outage, so 3 days are exactly 72 hourly bars.
    assert times == [start - timedelta(days=3) + i * HOUR for i in range(72)]
    assert all(t < start for t in times)


def test_it_releases_one_new_bar_per_sync_in_order_after_the_backfill(market: Market) -> None:
    source = ReplaySource()
    start = source.replay_start(market, "1h")
    backfill = market_backfill(market=market, timeframe="1h", source=source, days=2)
    assert backfill.inserted == 48

    released = []
    for _ in range(5):
        report = market_sync(market=market, timeframe="1h", source=source)
        assert report.inserted == 1
        released += report.new_times

    assert released == [start + i * HOUR for i in range(5)]
    assert stored_times(market) == [start - timedelta(days=2) + i * HOUR for i in range(48 + 5)]


def test_it_releases_the_bar_exactly_as_the_file_has_it(market: Market) -> None:
    source = ReplaySource()
    start = source.replay_start(market, "1h")
    row = next(r for r in source.rows(market, "1h") if parse_time(r["open_time"]) == start)

    market_sync(market=market, timeframe="1h", source=source)

    candle = Candle.objects.get(market=market, timeframe="1h")
    assert candle.open_time == start
    assert [candle.open, candle.high, candle.low, candle.close, candle.volume] == [
        Decimal(str(row[k])) for k in ("open", "high", "low", "close", "volume")
    ]


def test_it_respects_a_configured_replay_start(market: Market, settings) -> None:  # type: ignore[no-untyped-def]
    settings.QT_REPLAY_START = "2022-06-01T00:00:00Z"
    start = datetime(2022, 6, 1, tzinfo=UTC)
    source = ReplaySource()

    assert source.replay_start(market, "1h") == start
    market_backfill(market=market, timeframe="1h", source=source, days=1)
    assert stored_times(market)[-1] == start - HOUR
    report = market_sync(market=market, timeframe="1h", source=source)
    assert report.new_times == [start]


def test_it_replays_across_a_real_outage_without_inventing_bars(market: Market, settings) -> None:  # type: ignore[no-untyped-def]
    # Binance has no bars for 2020-12-21 14:00..17:00 (a real outage).
    settings.QT_REPLAY_START = "2020-12-21T12:00:00Z"
    source = ReplaySource()
    market_backfill(market=market, timeframe="1h", source=source, days=1)

    released = [
        market_sync(market=market, timeframe="1h", source=source).new_times for _ in range(3)
    ]

    day = datetime(2020, 12, 21, tzinfo=UTC)
    assert released == [[day + 12 * HOUR], [day + 13 * HOUR], [day + 18 * HOUR]]
    gap = CandleGap.objects.get(market=market)
    assert (gap.start, gap.end, gap.bars_missing) == (day + 14 * HOUR, day + 17 * HOUR, 4)


def test_it_releases_nothing_more_once_the_file_is_played_out(market: Market, settings) -> None:  # type: ignore[no-untyped-def]
    settings.QT_REPLAY_START = "2024-12-31T22:00:00Z"
    source = ReplaySource()

    reports = [market_sync(market=market, timeframe="1h", source=source) for _ in range(4)]

    assert [r.inserted for r in reports] == [1, 1, 0, 0]
    assert stored_times(market) == [FILE_END - HOUR, FILE_END]


def test_it_refuses_to_replay_a_market_without_a_file(db) -> None:  # type: ignore[no-untyped-def]
    doge = market_register(exchange_code="binance", symbol="DOGE/USDT")

    with pytest.raises(FileNotFoundError, match="no replay file for DOGE/USDT 1h"):
        market_sync(market=doge, timeframe="1h", source=ReplaySource())
