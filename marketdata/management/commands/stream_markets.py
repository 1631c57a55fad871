"""Hold the market stream open: closed candles pushed by the exchange as they close."""

from __future__ import annotations

import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from marketdata.services.streams import MarketStreamRunner


class Command(BaseCommand):
    help = (
        "Run the websocket candle stream (ccxt.pro watch_ohlcv) for every active market of "
        "QT_EXCHANGE on QT_TIMEFRAME, with reconnect and a REST snapshot after each connect. "
        "Beat's polling keeps running beside it. Stops on SIGTERM/SIGINT."
    )

    def handle(self, *args: Any, **opts: Any) -> None:
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
