"""Import a CSV of candles (shared data format) through the ingestion service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from marketdata.models import TIMEFRAMES
from marketdata.services.ingestion import candles_ingest
from marketdata.services.sync import market_register
from marketdata.sources import read_candle_csv

REQUIRED_COLUMNS = {"timestamp", "open", "high", "low", "close", "volume"}


class Command(BaseCommand):
    help = "Import candles from a CSV file (timestamp,open,high,low,close,volume)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--csv", required=True, type=Path, help="CSV file to import")
        parser.add_argument("--market", required=True, help="market symbol, e.g. BTC/USDT")
        parser.add_argument("--timeframe", required=True, choices=sorted(TIMEFRAMES))
        parser.add_argument("--exchange", default="binance")

    def handle(self, *args: Any, **opts: Any) -> None:
        # call_command(csv="...") hands the raw string over without argparse's type=Path.
        path = Path(opts["csv"])
        if not path.is_file():
            raise CommandError(f"CSV file not found: {path}")
        with path.open(newline="") as handle:
            header = {h.strip() for h in handle.readline().strip().split(",")}
        missing = REQUIRED_COLUMNS - header
        if missing:
            raise CommandError(f"{path} lacks columns: {', '.join(sorted(missing))}")
        try:
            market = market_register(exchange_code=opts["exchange"], symbol=opts["market"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        report = candles_ingest(
            market=market,
            timeframe=opts["timeframe"],
            rows=read_candle_csv(path),
            source=f"csv:{path.name}",
        )
        self.stdout.write(
            f"inserted {report.inserted}, skipped {report.duplicates} duplicates, "
            f"rejected {len(report.rejected)}, gaps {report.gaps}"
        )
        for r in report.rejected[:50]:
            self.stdout.write(f"  rejected row {r.row} ({r.open_time}): {r.reason}")
        if len(report.rejected) > 50:
            self.stdout.write(f"  ... and {len(report.rejected) - 50} more")
