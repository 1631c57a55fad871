"""Ingestion throughput on real candles, against its own validation step as the peer.

    python -m benchmarks.ingest [--rows 20000]

Prints JSON: rows/s for validation alone and for the full ingest (validate + dedupe + insert +
gap scan), and their ratio, so a figure from a noisy machine is still comparable.
Runs on a throw-away SQLite database under var/ (or DATABASE_URL's database: careful).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import timedelta


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20000)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantum.settings")
    if "DATABASE_URL" not in os.environ:
        os.environ["DATABASE_URL"] = "sqlite:///var/benchmark.sqlite3"
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from marketdata.lib.candles import validate_bars
    from marketdata.models import Candle
    from marketdata.services.ingestion import candles_ingest
    from marketdata.services.sync import market_register
    from marketdata.sources import read_candle_csv

    call_command("migrate", verbosity=0)
    rows = read_candle_csv(settings.QT_DATA_DIR / "binance_BTCUSDT_1h.csv")[: args.rows]
    market = market_register(exchange_code="benchmark", symbol="BTC/USDT")
    Candle.objects.filter(market=market).delete()

    t0 = time.perf_counter()
    validate_bars(rows, timedelta(hours=1))
    validate_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = candles_ingest(market=market, timeframe="1h", rows=rows, source="benchmark")
    ingest_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = candles_ingest(market=market, timeframe="1h", rows=rows, source="benchmark")
    reingest_s = time.perf_counter() - t0
    Candle.objects.filter(market=market).delete()
    print(
        json.dumps(
            {
                "benchmark": "ingest",
                "machine": f"{platform.machine()}, {os.cpu_count()} cpu",
                "python": platform.python_version(),
                "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
                "rows": len(rows),
                "inserted": report.inserted,
                "duplicates_on_reingest": again.duplicates,
                "validate_rows_per_s": round(len(rows) / validate_s),
                "ingest_rows_per_s": round(len(rows) / ingest_s),
                "reingest_rows_per_s": round(len(rows) / reingest_s),
                "ingest_vs_validate_ratio": round(ingest_s / validate_s, 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
