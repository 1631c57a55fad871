"""Hold the exchange accounts' user streams open (orders and fills pushed as they happen)."""

from __future__ import annotations

import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from trading.models import ExchangeAccount
from trading.services.streams import StreamRunner


class Command(BaseCommand):
    help = (
        "Run the websocket user streams of every testnet/live account with keys (or only "
        "--account NAME), with reconnect and a REST snapshot after each connect. Polling "
        "(Celery beat) keeps running beside it. Stops on SIGTERM/SIGINT."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", action="append", default=[], metavar="NAME")

    def handle(self, *args: Any, **opts: Any) -> None:
        ids: list[int] | None = None
        if opts["account"]:
            found = dict(
                ExchangeAccount.objects.filter(name__in=opts["account"])
                .exclude(mode=ExchangeAccount.Mode.PAPER)
                .values_list("name", "pk")
            )
            missing = sorted(set(opts["account"]) - set(found))
            if missing:
                raise CommandError(f"no testnet/live account named {', '.join(missing)}")
            ids = list(found.values())
        runner = StreamRunner(account_ids=ids)

        def stop(signum: int, frame: Any) -> None:
            runner.stop(timeout=0)

        runner.start()
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write("user streams running; SIGTERM stops them")
        runner.wait()
        self.stdout.write("user streams stopped")
