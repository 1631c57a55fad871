from __future__ import annotations

import csv
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from marketdata.models import Candle, Exchange, Market
from marketdata.tests.factories import real_rows

pytestmark = pytest.mark.django_db

COLUMNS = ["timestamp", "open", "high", "low", "close", "volume"]


def write_csv(path: Path, rows: list[dict[str, object]], columns: list[str] = COLUMNS) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for r in rows:
            values = {"timestamp": r["open_time"], **r}
            writer.writerow([values[c] for c in columns])
    return path


def load_candles(path: Path, **options: str) -> str:
    out = StringIO()
    options = {"market": "BTC/USDT", "timeframe": "1h", **options}
    call_command("load_candles", csv=str(path), stdout=out, **options)
    return out.getvalue()


def test_it_imports_a_csv_of_real_candles_and_prints_the_counts(tmp_path: Path) -> None:
    rows = real_rows(count=200)
    path = write_csv(tmp_path / "btc.csv", rows)

    output = load_candles(path)

    assert output.splitlines() == ["inserted 200, skipped 0 duplicates, rejected 0, gaps 0"]
    market = Market.objects.get(exchange__code="binance", symbol="BTC/USDT")
    candles = Candle.objects.filter(market=market, timeframe="1h").order_by("open_time")
    assert candles.count() == 200
    assert candles.last().close == Decimal(str(rows[-1]["close"]))  # type: ignore[union-attr]


def test_it_imports_the_same_csv_twice_without_storing_anything_twice(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "btc.csv", real_rows(count=200))
    load_candles(path)

    output = load_candles(path)

    assert output.splitlines() == ["inserted 0, skipped 200 duplicates, rejected 0, gaps 0"]
    assert Candle.objects.count() == 200


def test_it_prints_why_a_row_was_rejected(tmp_path: Path) -> None:
    rows = real_rows(count=5)
    rows[2] = {**rows[2], "high": "1"}
    path = write_csv(tmp_path / "btc.csv", rows)

    output = load_candles(path)

    assert output.splitlines() == [
        "inserted 4, skipped 0 duplicates, rejected 1, gaps 1",
        f"  rejected row 3 ({rows[2]['open_time']}): high below low",
    ]
    assert Candle.objects.count() == 4


def test_it_imports_into_the_exchange_it_is_given(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "btc.csv", real_rows(count=3))

    load_candles(path, exchange="bybit")

    assert Candle.objects.filter(market__exchange__code="bybit").count() == 3


def test_it_refuses_a_file_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"

    with pytest.raises(CommandError, match=r"CSV file not found: .*nope\.csv"):
        load_candles(missing)


def test_it_refuses_a_csv_that_lacks_columns_and_names_them(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "btc.csv", real_rows(count=3), ["timestamp", "open", "high", "low"])

    with pytest.raises(CommandError, match="lacks columns: close, volume"):
        load_candles(path)
    assert Candle.objects.count() == 0


def test_it_refuses_a_market_symbol_that_is_not_base_slash_quote(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "btc.csv", real_rows(count=3))

    with pytest.raises(
        CommandError, match="market symbol must look like BASE/QUOTE, got 'BTCUSDT'"
    ):
        load_candles(path, market="BTCUSDT")
    assert (Exchange.objects.count(), Market.objects.count(), Candle.objects.count()) == (0, 0, 0)


def test_it_refuses_an_unknown_timeframe(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "btc.csv", real_rows(count=3))

    with pytest.raises(CommandError, match="invalid choice: '7m'"):
        load_candles(path, timeframe="7m")


def test_the_market_stream_command_refuses_replay_unless_told_to_exit_quietly(settings) -> None:  # type: ignore[no-untyped-def]
    settings.QT_MARKET_SOURCE = "replay"
    with pytest.raises(CommandError, match="needs QT_MARKET_SOURCE=ccxt"):
        call_command("stream_markets")
    # Compose and systemd start it in every deployment: where it is off it exits 0.
    out = StringIO()
    call_command("stream_markets", "--if-enabled", stdout=out)
    assert "market stream off (QT_MARKET_SOURCE=replay" in out.getvalue()
    settings.QT_MARKET_SOURCE, settings.QT_MARKET_STREAM = "ccxt", 0
    out = StringIO()
    call_command("stream_markets", "--if-enabled", stdout=out)
    assert "QT_MARKET_STREAM=0); nothing to do" in out.getvalue()
