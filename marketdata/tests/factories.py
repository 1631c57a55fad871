from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings

from marketdata.models import Market
from marketdata.services.ingestion import IngestReport, candles_ingest
from marketdata.sources import read_candle_csv


@functools.lru_cache(maxsize=8)
def _file_rows(path: Path) -> tuple[dict[str, object], ...]:
    return tuple(read_candle_csv(path))


def real_rows(symbol: str = "BTCUSDT", timeframe: str = "1h", start: int = 0, count: int = 600):
    """A slice of the real Binance candles in ../shared/data (fresh dicts each call)."""
    path = Path(settings.QT_DATA_DIR) / f"binance_{symbol}_{timeframe}.csv"
    return [dict(r) for r in _file_rows(path)[start : start + count]]


def load_real(
    market: Market, *, timeframe: str = "1h", start: int = 0, count: int = 600
) -> IngestReport:
    return candles_ingest(
        market=market,
        timeframe=timeframe,
        rows=real_rows(market.file_symbol, timeframe, start, count),
        source="test",
    )


def bar(hour: int, **overrides: object) -> dict[str, object]:
    """A valid 1h bar at 2024-01-01 + `hour`h, with fields overridden."""
    t = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=hour)
    row: dict[str, object] = {
        "open_time": t.isoformat(),
        "open": "100",
        "high": "110",
        "low": "90",
        "close": "105",
        "volume": "12.5",
    }
    row.update(overrides)
    return row
