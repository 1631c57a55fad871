from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from marketdata.lib.candles import find_gaps, validate_bar, validate_bars
from marketdata.tests.factories import bar

HOUR = timedelta(hours=1)


def test_it_accepts_a_valid_bar_as_exact_decimals() -> None:
    accepted = validate_bar(bar(0, close="105.12345678"), HOUR)
    assert str(accepted.close) == "105.12345678"
    assert accepted.open_time == datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"close": "NaN"}, "close is not finite"),
        ({"high": "inf"}, "high is not finite"),
        ({"open": "abc"}, "open is not a number"),
        ({"low": ""}, "low is missing"),
        ({"low": "0"}, "non-positive price"),
        ({"open": "-5"}, "non-positive price"),
        ({"high": "80"}, "high below low"),
        ({"high": "104"}, "high below open/close"),
        ({"low": "101"}, "low above open/close"),
        ({"volume": "-1"}, "negative volume"),
        ({"open_time": "2024-01-01T00:30:00Z"}, "not aligned"),
        ({"open_time": "yesterday"}, "Invalid isoformat"),
    ],
)
def test_it_rejects_a_malformed_bar_saying_why(overrides: dict, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        validate_bar(bar(0, **overrides), HOUR)


def test_it_rejects_duplicate_and_out_of_order_timestamps_in_a_batch() -> None:
    accepted, rejected = validate_bars([bar(0), bar(1), bar(1), bar(0), bar(2)], HOUR)
    assert [b.open_time.hour for b in accepted] == [0, 1, 2]
    assert [(r.row, r.reason) for r in rejected] == [
        (3, "duplicate timestamp in batch"),
        (4, "out-of-order timestamp"),
    ]


def test_it_reads_epoch_milliseconds_as_utc() -> None:
    ms = int(datetime(2024, 1, 1, 5, tzinfo=UTC).timestamp() * 1000)
    assert validate_bar(bar(0, open_time=ms), HOUR).open_time.hour == 5


def test_it_finds_each_hole_between_bars() -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    times = [t0, t0 + HOUR, t0 + 4 * HOUR, t0 + 5 * HOUR, t0 + 7 * HOUR]
    assert find_gaps(times, HOUR) == [
        (t0 + 2 * HOUR, t0 + 3 * HOUR, 2),
        (t0 + 6 * HOUR, t0 + 6 * HOUR, 1),
    ]
