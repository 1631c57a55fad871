"""The market stream against the loopback Binance's kline websocket, with the real ccxt.pro.

The stream runs in its own thread and database connection as in production, so these tests
commit (transactional database). No Celery worker or beat runs here: a closed-candle signal
task is seen where it is published to the real broker, and the REST snapshot after each
(re)connect is the only poller. The exchange's history is a slice of the real BTC/USDT 1h
bars written where the loopback exchange reads its CSV files.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from celery.signals import before_task_publish
from django.conf import settings as django_settings

from marketdata.models import Candle, CandleGap, Market
from marketdata.services.ingestion import candles_ingest
from marketdata.services.streams import (
    BarCloser,
    MarketStreamRunner,
    market_stream_enabled,
    market_stream_health,
)
from marketdata.sources import CcxtSource, read_candle_csv
from quantum.celery import app
from venues.binance import LoopbackExchange
from venues.data import KlineStore

pytestmark = pytest.mark.django_db(transaction=True)

HOUR_MS = 3_600_000
SEEDED = 50  # bars stored before the stream starts; the exchange has them too
FILE = "binance_BTCUSDT_1h.csv"


@functools.cache
def real_lines() -> tuple[str, ...]:
    """The header and the last 60 real BTC/USDT 1h bars (2024-12-29 .. 2024-12-31 23:00)."""
    lines = (Path(django_settings.QT_DATA_DIR) / FILE).read_text().splitlines()
    return (lines[0], *lines[-60:])


def history(tmp_path: Path, bars: int) -> Path:
    """A data directory holding the first `bars` of those bars: what the exchange has."""
    folder = tmp_path / f"history-{bars}"
    folder.mkdir(exist_ok=True)
    (folder / FILE).write_text("\n".join(real_lines()[: bars + 1]) + "\n")
    return folder


def klines(tmp_path: Path) -> list[list[object]]:
    """All 60 bars as Binance sends them (open ms, "o", "h", "l", "c", "v", ...)."""
    return KlineStore(history(tmp_path, 60)).select("BTCUSDT", "1h", None, None, 60)


def history_grows(exchange: LoopbackExchange, tmp_path: Path, bars: int) -> None:
    """New bars close on the exchange: its REST klines now serve the first `bars`."""
    exchange.api.data = KlineStore(history(tmp_path, bars))


def wait_for(check: Callable[[], object], timeout: float = 8.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or check}")


def ms_time(ms: object) -> datetime:
    return datetime.fromtimestamp(int(str(ms)) / 1000, UTC)


def stored(market: Market) -> list[tuple[datetime, Decimal, Decimal, Decimal, Decimal, Decimal]]:
    return list(
        Candle.objects.filter(market=market, timeframe="1h")
        .order_by("open_time")
        .values_list("open_time", "open", "high", "low", "close", "volume")
    )


def as_stored(kline: list[object]) -> tuple[datetime, Decimal, Decimal, Decimal, Decimal, Decimal]:
    o, h, low, c, v = (Decimal(str(x)) for x in kline[1:6])
    return ms_time(kline[0]), o, h, low, c, v


@pytest.fixture
def exchange(tmp_path: Path, settings) -> Iterator[LoopbackExchange]:  # type: ignore[no-untyped-def]
    with LoopbackExchange(data_dir=history(tmp_path, SEEDED), symbols=["BTCUSDT"]) as ex:
        settings.QT_CCXT_URL_OVERRIDE = ex.url
        settings.QT_EXCHANGE = "binance"
        settings.QT_TIMEFRAME = "1h"
        settings.QT_EXCHANGE_TIMEOUT_MS = 1500
        settings.QT_STREAM_BACKOFF_MIN_S = 0.05
        settings.QT_STREAM_BACKOFF_MAX_S = 0.3
        settings.QT_STREAM_FALLBACK_AFTER = 3
        yield ex


@pytest.fixture
def seeded(market: Market, tmp_path: Path) -> Market:
    rows = read_candle_csv(history(tmp_path, SEEDED) / FILE)
    report = candles_ingest(market=market, timeframe="1h", rows=rows, source="test")
    assert report.inserted == SEEDED
    return market


@pytest.fixture
def published() -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
    """Every task published to the broker while the test runs: (name, args)."""
    seen: list[tuple[str, tuple[Any, ...]]] = []

    def record(sender: str | None = None, body: Any = None, **kwargs: Any) -> None:
        seen.append((str(sender), tuple(body[0]) if isinstance(body, list | tuple) else ()))

    before_task_publish.connect(record, weak=False)
    try:
        yield seen
    finally:
        before_task_publish.disconnect(record)
        with app.connection_for_write() as conn:  # no worker here: leave no messages behind
            conn.default_channel.client.delete("celery")


def signal_tasks(published: list[tuple[str, tuple[Any, ...]]], at: datetime) -> int:
    return sum(
        1
        for name, args in published
        if name == "trading.tasks.process_closed_candle" and args[2] == at.isoformat()
    )


@pytest.fixture
def stream(exchange: LoopbackExchange, seeded: Market) -> Iterator[MarketStreamRunner]:
    runner = MarketStreamRunner().start()
    yield runner
    runner.stop()


def connected(runner: MarketStreamRunner, exchange: LoopbackExchange, snapshots: int = 1) -> None:
    def ready() -> bool:
        health = runner.health
        return bool(health and health.state == "connected" and health.snapshots >= snapshots)

    wait_for(ready, what=f"market stream connected with {snapshots} snapshot(s)")
    # The SUBSCRIBE has reached the exchange: what is pushed from now on is heard.
    wait_for(lambda: exchange.ws.subscribers()["market"] >= 1, what="kline subscription")


def test_a_closed_bar_pushed_on_the_stream_is_stored_once_and_signalled_once(
    stream, exchange, seeded, tmp_path, published
) -> None:
    connected(stream, exchange)
    bar = klines(tmp_path)[SEEDED]
    at = ms_time(bar[0])

    exchange.ws.push_klines("BTCUSDT", "1h", [bar, bar])  # the final update, and a repeat

    wait_for(lambda: Candle.objects.filter(market=seeded, open_time=at).exists(), what="bar")
    assert stored(seeded)[-1] == as_stored(bar)
    assert len(stored(seeded)) == SEEDED + 1
    wait_for(lambda: signal_tasks(published, at), what="closed-candle task")
    # The same bar polled later over REST is the same row: no second row, no second signal.
    history_grows(exchange, tmp_path, SEEDED + 1)
    polled = CcxtSource("binance").fetch(seeded, "1h", at, 1)
    report = candles_ingest(market=seeded, timeframe="1h", rows=polled, source="ccxt", live=True)
    assert (report.inserted, report.duplicates) == (0, 1)
    assert len(stored(seeded)) == SEEDED + 1
    assert signal_tasks(published, at) == 1
    health = market_stream_health()
    assert health is not None and health["bars_stored"] == 1 and health["state"] == "connected"


def test_a_bar_still_forming_is_stored_only_once_a_later_bar_starts(
    stream, exchange, seeded, published
) -> None:
    connected(stream, exchange)
    now_ms = int(time.time() * 1000)
    open_ms = now_ms // HOUR_MS * HOUR_MS
    if open_ms + HOUR_MS - now_ms < 60_000:  # too close to its close for this test
        open_ms += HOUR_MS

    def forming(start: int, close: str) -> list[object]:
        return [start, "94000.00", "94500.00", "93500.00", close, "12.5", start + HOUR_MS - 1]

    exchange.ws.push_klines(
        "BTCUSDT", "1h", [forming(open_ms, "94100.00"), forming(open_ms, "94200.00")], closed=False
    )
    wait_for(lambda: stream.health and stream.health.events >= 1, what="updates heard")
    time.sleep(0.2)
    assert not Candle.objects.filter(market=seeded, open_time=ms_time(open_ms)).exists()
    assert len(stored(seeded)) == SEEDED

    exchange.ws.push_klines("BTCUSDT", "1h", [forming(open_ms + HOUR_MS, "94300.00")], closed=False)

    closed = wait_for(
        lambda: Candle.objects.filter(market=seeded, open_time=ms_time(open_ms)).first(),
        what="the bar closed by its successor",
    )
    assert closed.close == Decimal("94200.00"), "its last update is what is stored"
    assert not Candle.objects.filter(market=seeded, open_time=ms_time(open_ms + HOUR_MS)).exists()
    wait_for(lambda: signal_tasks(published, ms_time(open_ms)) == 1, what="one signal task")
    # The hours between the data's end and now are not invented: they are a recorded gap.
    assert CandleGap.objects.filter(market=seeded, backfilled=False).count() == 1


def test_a_dropped_stream_reconnects_and_its_snapshot_stores_the_bars_missed_meanwhile(
    stream, exchange, seeded, tmp_path
) -> None:
    connected(stream, exchange)
    missed = klines(tmp_path)[SEEDED : SEEDED + 3]

    history_grows(exchange, tmp_path, SEEDED + 3)  # three bars close while it is down
    assert exchange.ws.drop_all() >= 1

    connected(stream, exchange, snapshots=2)
    assert stream.health is not None and stream.health.reconnects == 1
    assert stored(seeded)[-3:] == [as_stored(k) for k in missed]
    assert len(stored(seeded)) == SEEDED + 3
    assert stream.health.last_snapshot_ok is True
    assert stream.health.bars_stored == 0, "they came from the snapshot, not the stream"


def test_a_malformed_streamed_bar_is_rejected_with_a_reason_and_changes_nothing_stored(
    stream, exchange, seeded, tmp_path
) -> None:
    connected(stream, exchange)
    before = stored(seeded)
    bars = klines(tmp_path)
    rewritten = list(bars[SEEDED - 1])
    rewritten[4] = rewritten[3]  # a different (valid) close for a bar already stored
    inverted = list(bars[SEEDED])
    inverted[2], inverted[3] = inverted[3], inverted[2]  # high below low

    exchange.ws.push_klines("BTCUSDT", "1h", [rewritten])
    wait_for(lambda: stream.health.events >= 1, what="the rewritten bar heard")
    exchange.ws.push_klines("BTCUSDT", "1h", [inverted])

    health = wait_for(
        lambda: (h := market_stream_health()) and h["events"] >= 2 and h["rejected"] and h,
        what="both bars heard",
    )
    assert "high below low" in health["last_rejection"]
    assert health["rejected"] == 1
    assert f"1h {inverted[0]}:" in health["last_rejection"], "it names the bar"
    assert health["bars_stored"] == 0
    assert stored(seeded) == before


def test_a_refused_websocket_falls_back_to_polling_and_recovers_when_accepted(
    exchange, seeded
) -> None:
    exchange.ws.refuse = True
    runner = MarketStreamRunner().start()
    try:
        health = wait_for(
            lambda: (h := market_stream_health()) and h["state"] == "polling" and h,
            what="polling",
        )
        assert health["failures"] >= 3 and health["snapshots"] == 0
        assert health["last_error"]
        assert exchange.ws.counters["refused"] >= 3
        exchange.ws.refuse = False
        connected(runner, exchange)
    finally:
        runner.stop()
    assert (market_stream_health() or {}).get("state") == "stopped"


def test_the_platform_streams_markets_only_from_ccxt_and_only_when_not_switched_off(
    settings,
) -> None:  # type: ignore[no-untyped-def]
    settings.QT_MARKET_SOURCE = "ccxt"
    assert market_stream_enabled()
    settings.QT_MARKET_STREAM = 0
    assert not market_stream_enabled()
    settings.QT_MARKET_STREAM = None
    settings.QT_MARKET_SOURCE = "replay"
    assert not market_stream_enabled()


def test_a_bar_is_closed_by_its_close_time_or_by_the_next_bar_and_handed_over_once() -> None:
    closer = BarCloser("1h")
    t0 = 1_735_689_600_000  # 2025-01-01 00:00 UTC
    bar = [t0, 1.0, 2.0, 0.5, 1.5, 10.0]
    assert closer.feed([bar], now_ms=t0 + 60_000) == []
    assert closer.feed([[t0, 1.0, 2.0, 0.5, 1.7, 11.0]], now_ms=t0 + 120_000) == []
    later = [t0 + HOUR_MS, 1.7, 1.8, 1.6, 1.7, 1.0]
    assert closer.feed([later], now_ms=t0 + HOUR_MS + 500) == [[t0, 1.0, 2.0, 0.5, 1.7, 11.0]]
    assert closer.feed([later], now_ms=t0 + 2 * HOUR_MS + 5_000) == [later]
    assert closer.feed([later], now_ms=t0 + 2 * HOUR_MS + 6_000) == [], "once only"
    assert closer.feed(["junk"], now_ms=t0) == ["junk"], "junk goes on to be rejected"
