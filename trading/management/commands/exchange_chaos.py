"""Drive N orders through the real engine against a loopback venue under chaos."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from quantum.embedded import redis_start
from trading.services.chaos import VENUES, chaos_run


class Command(BaseCommand):
    help = (
        "Place N orders through Celery workers and the database against a loopback "
        "venue with random faults and worker kills, then account for every one."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--orders", type=int, default=100)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument(
            "--venue",
            choices=sorted(VENUES),
            default="binance",
            help="the loopback venue to trade on, with its documented behaviours on",
        )
        parser.add_argument("--no-kills", action="store_true", help="do not SIGKILL workers")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["orders"] < 1:
            raise CommandError("--orders must be at least 1")
        if settings.EMBEDDED_REDIS:
            redis_start(settings.REDIS_SOCKET)
        report = chaos_run(
            orders=opts["orders"],
            seed=opts["seed"],
            venue=opts["venue"],
            kills=not opts["no_kills"],
            say=(lambda _: None) if opts["json"] else self.stdout.write,
        )
        data = report.as_json()
        if opts["json"]:
            keys = (
                "venue",
                "orders",
                "exchange_orders",
                "duplicates",
                "lost",
                "position_mismatches",
                "faults_injected",
            )
            out = {k: data[k] for k in keys} | {k: v for k, v in data.items() if k not in keys}
            self.stdout.write(json.dumps(out, indent=2, default=str))
        else:
            for key, value in data.items():
                self.stdout.write(f"{key}: {value}")
        if report.duplicates or report.lost or report.position_mismatches:
            raise CommandError("chaos run found duplicates, lost orders or mismatches")
