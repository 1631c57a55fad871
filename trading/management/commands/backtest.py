"""Backtest a strategy on a CSV file or on stored candles and write the report as JSON."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from trading.lib.backtest.data import BarsError
from trading.services.backtests import BacktestConfigError, backtest_execute, config_validate


def _progress_bar(stream: Any) -> Any:
    """A progress bar on a terminal; nothing when the output is a pipe or a file."""
    if not stream.isatty():
        return None

    def show(done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        stream.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {100 * done // max(total, 1):3d}%"
        )
        if done >= total:
            stream.write("\n")
        stream.flush()

    return show


class Command(BaseCommand):
    help = (
        "Backtest a strategy: --data FILE.csv (timestamp,open,high,low,close,volume) or "
        "--market BTC/USDT --timeframe 1h [--start --end] from the database."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--data", help="CSV file: timestamp,open,high,low,close,volume")
        parser.add_argument("--market", help="a stored market, e.g. BTC/USDT")
        parser.add_argument("--exchange", default="binance")
        parser.add_argument("--timeframe", default="1h")
        parser.add_argument("--start", help="first bar (ISO-8601, UTC)")
        parser.add_argument("--end", help="last bar (ISO-8601, UTC)")
        parser.add_argument(
            "--strategy", default="ema_cross", help="ema_cross, rsi_reversion, model"
        )
        parser.add_argument("--params", default="", help="e.g. fast=20,slow=50")
        parser.add_argument("--fee-bps", default="10")
        parser.add_argument("--slippage-bps", default="5")
        parser.add_argument("--cash", default="10000")
        parser.add_argument("--fraction", default="1", help="fraction of equity per entry")
        parser.add_argument(
            "--delay-bars", type=int, default=1, help="0: fill at the decision close; 1: next open"
        )
        parser.add_argument("--long-short", action="store_true", help="SELL goes short")
        parser.add_argument("--volume-cap", help="max fraction of a bar's volume that fills")
        parser.add_argument("--vol-slippage", default="0", help="extra bps per bp of bar range")
        parser.add_argument("--impact-bps", default="0", help="extra bps x sqrt(qty/volume)")
        parser.add_argument("--min-notional", default="0")
        parser.add_argument("--model-version", type=int, help="model strategy: a version id")
        parser.add_argument("--json", dest="json_out", help="write the report here ('-': stdout)")

    def handle(self, *args: Any, **options: Any) -> None:
        raw = {
            "data": options["data"],
            "market": options["market"],
            "exchange": options["exchange"],
            "timeframe": options["timeframe"],
            "start": options["start"],
            "end": options["end"],
            "strategy": options["strategy"],
            "params": options["params"],
            "fee_bps": options["fee_bps"],
            "slippage_bps": options["slippage_bps"],
            "cash": options["cash"],
            "fraction": options["fraction"],
            "delay_bars": options["delay_bars"],
            "long_short": options["long_short"],
            "volume_cap": options["volume_cap"],
            "vol_slippage": options["vol_slippage"],
            "impact_bps": options["impact_bps"],
            "min_notional": options["min_notional"],
            "model_version": options["model_version"],
        }
        if raw["data"] and raw["market"]:
            raise CommandError("give either --data or --market, not both")
        try:
            config = config_validate(raw)
            results, _ = backtest_execute(config=config, progress=_progress_bar(sys.stderr))
        except (BarsError, BacktestConfigError) as exc:
            raise CommandError(str(exc)) from None
        text = json.dumps(results, indent=1)
        out = options["json_out"]
        if out and out != "-":
            with open(out, "w") as handle:
                handle.write(text)
        else:
            self.stdout.write(text)
        m = results["metrics"]
        self.stderr.write(
            f"{m['trade_count']} trades, return {m['total_return']:.2%}, "
            f"Sharpe {m['sharpe']:.2f}, max drawdown {m['max_drawdown']:.2%}, "
            f"buy and hold {m['buy_and_hold_return']:.2%}"
        )
