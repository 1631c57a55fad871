"""Where candles come from: an exchange through ccxt, or CSV files replayed as if live."""

from __future__ import annotations

import bisect
import csv
import functools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

from marketdata.lib.candles import parse_time
from marketdata.models import TIMEFRAMES, Market

Row = dict[str, object]


class CandleSource(Protocol):
    name: str

    def fetch(self, market: Market, timeframe: str, since: datetime, limit: int) -> list[Row]:
        """Closed bars with open_time >= since, oldest first, at most `limit`."""
        ...


def ccxt_client(exchange_code: str) -> Any:
    import ccxt

    client = getattr(ccxt, exchange_code)(
        {
            "enableRateLimit": True,
            "timeout": 15000,
            # We trade spot only: without this binance's load_markets also downloads the
            # (large) USD-M and COIN-M futures exchangeInfo on every process start.
            "options": {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}},
        }
    )
    override = settings.QT_CCXT_URL_OVERRIDE
    if override:
        # Tests point the real ccxt client at a loopback server speaking the exchange's API:
        # only scheme and host change, so /api/v3/klines stays /api/v3/klines there.
        client.urls["api"] = rebase_urls(client.urls["api"], override.rstrip("/"))
    return client


def rebase_urls(urls: Any, base: str) -> Any:
    if isinstance(urls, dict):
        return {key: rebase_urls(value, base) for key, value in urls.items()}
    if isinstance(urls, str):
        parts = urlsplit(urls)
        return base + urlunsplit(("", "", parts.path, parts.query, parts.fragment))
    return urls


class CcxtSource:
    name = "ccxt"

    def __init__(self, exchange_code: str) -> None:
        self.client = ccxt_client(exchange_code)

    def fetch(self, market: Market, timeframe: str, since: datetime, limit: int) -> list[Row]:
        raw = self.client.fetch_ohlcv(
            market.symbol, timeframe, since=int(since.timestamp() * 1000), limit=limit
        )
        now = datetime.now(UTC)
        step = TIMEFRAMES[timeframe]
        rows: list[Row] = []
        for entry in raw:
            if not isinstance(entry, list | tuple) or len(entry) < 6:
                rows.append({"open_time": str(entry), "open": None})  # rejected by validation
                continue
            ts, o, h, low, c, v = entry[:6]
            # The exchange also returns the bar that is still forming; only closed bars count.
            if isinstance(ts, int | float) and datetime.fromtimestamp(ts / 1000, UTC) + step > now:
                continue
            rows.append(
                {"open_time": ts, "open": o, "high": h, "low": low, "close": c, "volume": v}
            )
        return rows


def _read_csv(path: Path) -> tuple[Row, ...]:
    with path.open(newline="") as handle:
        return tuple(
            {
                "open_time": r.get("timestamp"),
                "open": r.get("open"),
                "high": r.get("high"),
                "low": r.get("low"),
                "close": r.get("close"),
                "volume": r.get("volume"),
            }
            for r in csv.DictReader(handle)
        )


def read_candle_csv(path: Path) -> list[Row]:
    """Rows of a CSV in the shared data format (timestamp,open,high,low,close,volume)."""
    return list(_read_csv(path))


class ReplaySource:
    """Plays the CSV files of QT_DATA_DIR forward: bars after the replay start are 'future'."""

    name = "replay"

    def __init__(self, data_dir: Path | None = None, start: str | None = None) -> None:
        self.data_dir = Path(data_dir or settings.QT_DATA_DIR)
        self.start_setting = settings.QT_REPLAY_START if start is None else start

    def path(self, market: Market, timeframe: str) -> Path:
        return self.data_dir / f"{market.exchange.code}_{market.file_symbol}_{timeframe}.csv"

    def rows(self, market: Market, timeframe: str) -> tuple[Row, ...]:
        return self._indexed(market, timeframe)[0]

    def _indexed(self, market: Market, timeframe: str) -> tuple[tuple[Row, ...], list[datetime]]:
        path = self.path(market, timeframe)
        if not path.exists():
            raise FileNotFoundError(f"no replay file for {market.symbol} {timeframe}: {path}")
        return _indexed_csv(path.resolve())

    def replay_start(self, market: Market, timeframe: str) -> datetime:
        if self.start_setting:
            return parse_time(self.start_setting)
        last = self._indexed(market, timeframe)[1][-1]
        return last - timedelta(days=30)

    def history(self, market: Market, timeframe: str, days: int) -> list[Row]:
        """Bars before the replay start (at most `days` of them): what 'already happened'."""
        start = self.replay_start(market, timeframe)
        rows, times = self._indexed(market, timeframe)
        lo = bisect.bisect_left(times, start - timedelta(days=days))
        return list(rows[lo : bisect.bisect_left(times, start)])

    def fetch(self, market: Market, timeframe: str, since: datetime, limit: int) -> list[Row]:
        rows, times = self._indexed(market, timeframe)
        lo = bisect.bisect_left(times, since)
        return list(rows[lo : lo + limit])


@functools.lru_cache(maxsize=16)
def _indexed_csv(path: Path) -> tuple[tuple[Row, ...], list[datetime]]:
    """Rows with a parallel list of parsed open times (sorted in the shared files)."""
    rows = _read_csv(path)
    return rows, [parse_time(r["open_time"]) for r in rows]


def source_for(name: str | None = None) -> CcxtSource | ReplaySource:
    name = name or settings.QT_MARKET_SOURCE
    if name == "replay":
        return ReplaySource()
    if name == "ccxt":
        return CcxtSource(settings.QT_EXCHANGE)
    raise ValueError(f"unknown market source {name!r} (expected ccxt or replay)")
