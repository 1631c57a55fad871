"""Hold the market stream open: closed candles pushed by the exchange as they close."""

from __future__ import annotations

import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from marketdata.services.streams import MarketStreamRunner, market_stream_enabled


class Command(BaseCommand):
    help = (
        "Run the websocket candle stream (ccxt.pro watch_ohlcv) for every active market of "
        "QT_EXCHANGE on QT_TIMEFRAME, with reconnect and a REST snapshot after each connect. "
        "Beat's polling keeps running beside it. Stops on SIGTERM/SIGINT."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--if-enabled",
            action="store_true",
            help="exit 0 without streaming where it is off (QT_MARKET_SOURCE is not ccxt, or "
            "QT_MARKET_STREAM=0): for a service manager that starts it in every deployment",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["if_enabled"] and not market_stream_enabled():
            self.stdout.write(
                f"market stream off (QT_MARKET_SOURCE={settings.QT_MARKET_SOURCE}, "
                f"QT_MARKET_STREAM={settings.QT_MARKET_STREAM}); nothing to do"
            )
            return
        if settings.QT_MARKET_SOURCE != "ccxt":
            raise CommandError(
                f"the market stream needs QT_MARKET_SOURCE=ccxt (it is {settings.QT_MARKET_SOURCE})"
            )
        runner = MarketStreamRunner()

        def stop(signum: int, frame: Any) -> None:
            runner.stop(timeout=0)

        runner.start()
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write(f"market stream of {runner.exchange_code} running; SIGTERM stops it")
        runner.wait()
        self.stdout.write("market stream stopped")
