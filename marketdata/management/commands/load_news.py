"""Load headlines from a file (the shared headlines format) through the news service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from marketdata.lib.news import NewsFormatError, records_from_csv
from marketdata.services.news import news_ingest


class Command(BaseCommand):
    help = "Store (and score) headlines from a CSV file: timestamp, source, subject, title, ..."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--csv", required=True, type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["csv"]
        if not path.exists():
            raise CommandError(f"{path} does not exist")
        try:
            report = news_ingest(records=records_from_csv(path))
        except NewsFormatError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{path.name}: {report.summary()}")
