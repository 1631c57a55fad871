from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from quantum.bootstrap import platform_bootstrap


class Command(BaseCommand):
    help = "Migrate, create roles/admin/paper account, backfill history, train the first model."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-data", action="store_true", help="skip backfill and training")

    def handle(self, *args: Any, **opts: Any) -> None:
        platform_bootstrap(say=self.stdout.write, data=not opts["no_data"])
