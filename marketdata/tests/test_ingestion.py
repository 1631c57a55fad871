from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings

from marketdata.lib.candles import parse_time
from marketdata.models import Candle, CandleGap, Market
from marketdata.services.ingestion import IngestReport, candles_ingest
from marketdata.sources import read_candle_csv

pytestmark = pytest.mark.django_db

HOUR = timedelta(hours=1)
# Rows 1700..1849 of binance_BTCUSDT_1h.csv hold a real outage: after 2020-12-21 13:00
# the next bar is 18:00, so 14:00..17:00 (4 bars) are missing.
GAP_SLICE = {"start": 1700, "count": 150}
GAP_FIRST = datetime(2020, 12, 21, 14, tzinfo=UTC)
GAP_LAST = datetime(2020, 12, 21, 17, tzinfo=UTC)


@functools.cache
def _btc_1h() -> tuple[dict[str, object], ...]:
    return tuple(read_candle_csv(Path(settings.QT_DATA_DIR) / "binance_BTCUSDT_1h.csv"))


def real_rows(start: int = 0, count: int = 600) -> list[dict[str, object]]:
    """Real BTC/USDT 1h rows (copies: tests may alter them), read from the file once."""
    return [dict(r) for r in _btc_1h()[start : start + count]]


def load_real(market: Market, *, start: int = 0, count: int = 600) -> IngestReport:
    rows = real_rows(start, count)
    return candles_ingest(market=market, timeframe="1h", rows=rows, source="test")


def stored(market: Market) -> list[tuple[datetime, Decimal, Decimal, Decimal, Decimal, Decimal]]:
    return list(
        Candle.objects.filter(market=market, timeframe="1h")
        .order_by("open_time")
        .values_list("open_time", "open", "high", "low", "close", "volume")
    )


def as_stored(
    row: dict[str, object],
) -> tuple[datetime, Decimal, Decimal, Decimal, Decimal, Decimal]:
    """What a CSV row must look like once stored: the same instant and exact decimals."""
    prices = (Decimal(str(row[k])) for k in ("open", "high", "low", "close", "volume"))
    return (parse_time(row["open_time"]), *prices)  # type: ignore[return-value]


def gaps(market: Market) -> list[tuple[datetime, datetime, int, bool]]:
    return list(
        CandleGap.objects.filter(market=market, timeframe="1h")
        .order_by("start")
        .values_list("start", "end", "bars_missing", "backfilled")
    )


def test_it_stores_real_candles_with_exact_decimal_values(market: Market) -> None:
    report = load_real(market, count=600)

    assert (report.inserted, report.duplicates, report.rejected, report.gaps) == (600, 0, [], 0)
    assert stored(market) == [as_stored(r) for r in real_rows(count=600)]
    assert report.new_times == [parse_time(r["open_time"]) for r in real_rows(count=600)]


def test_it_ingests_the_same_rows_again_without_inserting_or_changing_anything(
    market: Market,
) -> None:
    load_real(market, count=600)
    before = stored(market)

    again = load_real(market, count=600)

    assert (again.inserted, again.duplicates, again.rejected) == (0, 600, [])
    assert again.new_times == []
    assert stored(market) == before


def test_it_inserts_the_good_rows_of_a_mixed_batch_and_rejects_the_rest_saying_why(
    market: Market,
) -> None:
    load_real(market, count=50)
    real = real_rows(count=60)
    resent = {**real[5], "open": "1.5", "high": "2", "low": "1", "close": "1.75"}
    batch = [
        resent,  # same time as a stored bar, other prices
        real[50],
        real[51],
        {**real[52], "close": "NaN"},
        {**real[53], "low": "0"},
        {**real[54], "high": "1", "low": "2"},
        real[55],
        real[55],
        real[40],
        real[56],
    ]
    stored_before = stored(market)

    report = candles_ingest(market=market, timeframe="1h", rows=batch, source="test")

    assert report.inserted == 4
    assert report.duplicates == 1
    assert [(r.row, r.open_time, r.reason) for r in report.rejected] == [
        (4, real[52]["open_time"], "close is not finite: 'NaN'"),
        (5, real[53]["open_time"], "non-positive price"),
        (6, real[54]["open_time"], "high below low"),
        (8, real[55]["open_time"], "duplicate timestamp in batch"),
        (9, real[40]["open_time"], "out-of-order timestamp"),
    ]
    assert stored(market) == stored_before + [as_stored(real[i]) for i in (50, 51, 55, 56)]
    assert stored(market)[5] == as_stored(real[5]) == stored_before[5]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        pytest.param({"high": "1e30"}, "high is out of range: '1e30'", id="too large to store"),
        pytest.param(
            {"open": "1e-9", "high": "1e-9", "low": "1e-9", "close": "1e-9"},
            "price below 0.00000001",
            id="rounds to zero when stored",
        ),
    ],
)
def test_it_rejects_a_price_the_candle_columns_cannot_hold(
    market: Market, overrides: dict[str, str], reason: str
) -> None:
    real = real_rows(count=3)
    batch = [real[0], {**real[1], **overrides}, real[2]]

    report = candles_ingest(market=market, timeframe="1h", rows=batch, source="test")

    assert [(r.row, r.reason) for r in report.rejected] == [(2, reason)]
    assert stored(market) == [as_stored(real[0]), as_stored(real[2])]


def test_it_records_the_hole_left_by_rejected_rows_instead_of_inventing_bars(
    market: Market,
) -> None:
    real = real_rows(count=10)
    batch = [real[0], real[1], {**real[2], "high": "-1"}, {**real[3], "volume": "x"}, real[4]]

    report = candles_ingest(market=market, timeframe="1h", rows=batch, source="test")

    assert (report.inserted, len(report.rejected), report.gaps) == (3, 2, 1)
    t2, t3 = parse_time(real[2]["open_time"]), parse_time(real[3]["open_time"])
    assert gaps(market) == [(t2, t3, 2, False)]


def test_it_records_a_real_exchange_outage_as_a_gap(market: Market) -> None:
    report = load_real(market, **GAP_SLICE)

    assert (report.inserted, report.gaps) == (150, 1)
    assert gaps(market) == [(GAP_FIRST, GAP_LAST, 4, False)]
    times = [t for t, *_ in stored(market)]
    assert GAP_FIRST - HOUR in times
    assert GAP_LAST + HOUR in times
    assert not any(GAP_FIRST <= t <= GAP_LAST for t in times)


def test_it_finds_every_real_outage_in_the_whole_btc_file(market: Market) -> None:
    report = load_real(market, count=len(_btc_1h()))

    assert (report.inserted, report.gaps) == (37_090, 10)
    recorded = gaps(market)
    # The data README: 10 gaps, 20 missing bars, from real exchange outages.
    assert len(recorded) == 10
    assert sum(missing for _, _, missing, _ in recorded) == 20
    assert (GAP_FIRST, GAP_LAST, 4, False) in recorded


def test_it_records_a_gap_that_falls_between_two_batches(market: Market) -> None:
    rows = real_rows(**GAP_SLICE)
    split = next(i for i, r in enumerate(rows) if parse_time(r["open_time"]) > GAP_LAST)

    first = candles_ingest(market=market, timeframe="1h", rows=rows[:split], source="test")
    second = candles_ingest(market=market, timeframe="1h", rows=rows[split:], source="test")

    assert (first.gaps, second.gaps) == (0, 1)
    assert gaps(market) == [(GAP_FIRST, GAP_LAST, 4, False)]


def _filler(start: datetime, hours: int, price: str) -> list[dict[str, object]]:
    # The real bars of the outage do not exist; these stand in for an exchange re-send.
    return [
        {
            "open_time": (start + i * HOUR).isoformat(),
            "open": price,
            "high": price,
            "low": price,
            "close": price,
            "volume": "0",
        }
        for i in range(hours)
    ]


def test_it_marks_a_gap_backfilled_once_its_missing_bars_arrive(market: Market) -> None:
    load_real(market, **GAP_SLICE)
    price = str(stored(market)[0][4])

    report = candles_ingest(
        market=market, timeframe="1h", rows=_filler(GAP_FIRST, 4, price), source="backfill"
    )

    assert (report.inserted, report.gaps) == (4, 0)
    assert gaps(market) == [(GAP_FIRST, GAP_LAST, 4, True)]
    times = [t for t, *_ in stored(market)]
    assert times == [times[0] + i * HOUR for i in range(154)]


def test_it_keeps_the_rest_of_a_gap_recorded_when_only_part_of_it_arrives(
    market: Market,
) -> None:
    load_real(market, **GAP_SLICE)
    price = str(stored(market)[0][4])

    report = candles_ingest(
        market=market, timeframe="1h", rows=_filler(GAP_FIRST, 2, price), source="backfill"
    )

    assert (report.inserted, report.gaps) == (2, 1)
    still_missing = [g for g in gaps(market) if not g[3]]
    assert still_missing == [(GAP_FIRST + 2 * HOUR, GAP_LAST, 2, False)]


def test_it_requests_a_signal_after_commit_when_live_ingest_adds_the_newest_bar(
    market: Market, django_capture_on_commit_callbacks
) -> None:
    load_real(market, count=50)

    with django_capture_on_commit_callbacks() as callbacks:
        report = candles_ingest(
            market=market,
            timeframe="1h",
            rows=real_rows(start=50, count=1),
            source="test",
            live=True,
        )

    assert report.inserted == 1
    assert len(callbacks) == 1


@pytest.mark.parametrize(
    ("stored_slice", "live_slice"),
    [
        pytest.param((0, 50), (49, 1), id="a bar already stored"),
        pytest.param((0, 50), (50, 0), id="nothing at all"),
    ],
)
def test_it_requests_no_signal_when_live_ingest_adds_nothing(
    market: Market, django_capture_on_commit_callbacks, stored_slice, live_slice
) -> None:
    load_real(market, start=stored_slice[0], count=stored_slice[1])
    rows = real_rows(start=live_slice[0], count=live_slice[1])

    with django_capture_on_commit_callbacks() as callbacks:
        report = candles_ingest(market=market, timeframe="1h", rows=rows, source="test", live=True)

    assert report.inserted == 0
    assert callbacks == []


def test_it_requests_no_signal_when_live_ingest_only_fills_an_older_hole(
    market: Market, django_capture_on_commit_callbacks
) -> None:
    real = real_rows(count=20)
    candles_ingest(market=market, timeframe="1h", rows=real[:10] + real[11:], source="test")

    with django_capture_on_commit_callbacks() as callbacks:
        report = candles_ingest(
            market=market, timeframe="1h", rows=[real[10]], source="test", live=True
        )

    assert report.inserted == 1
    assert callbacks == []


def test_it_requests_no_signal_for_a_batch_that_is_not_live(
    market: Market, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        report = load_real(market, count=5)

    assert report.inserted == 5
    assert callbacks == []


def test_it_stamps_the_market_with_the_time_a_source_last_answered(market: Market) -> None:
    before = datetime.now(UTC)

    candles_ingest(market=market, timeframe="1h", rows=[], source="test")

    market.refresh_from_db()
    assert market.last_ingest_at is not None
    assert market.last_ingest_at >= before
