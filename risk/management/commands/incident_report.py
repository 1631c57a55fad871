"""`manage.py incident_report --since DATE [--until DATE] [--out FILE]`: incidents as Markdown."""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_date, parse_datetime

from risk.selectors import incident_report


def parse_when(value: str) -> datetime:
    """A date (midnight UTC) or an ISO datetime (UTC unless it says otherwise)."""
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"not a date: {value!r} (use YYYY-MM-DD or an ISO datetime)")
        moment = datetime.combine(day, time.min)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = "Write a Markdown report of the incidents opened since DATE (stdout or --out FILE)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", required=True, help="YYYY-MM-DD or ISO datetime (UTC)")
        parser.add_argument("--until", default="", help="end of the period (default: now)")
        parser.add_argument("--out", default="", help="write to this file instead of stdout")

    def handle(self, *args: Any, **opts: Any) -> None:
        since = parse_when(opts["since"])
        until = parse_when(opts["until"]) if opts["until"] else None
        if until is not None and until <= since:
            raise CommandError("--until must be after --since")
        report = incident_report(since=since, until=until)
        if opts["out"]:
            path = Path(opts["out"])
            path.write_text(report + "\n", encoding="utf-8")
            self.stderr.write(f"wrote {path}")
        else:
            self.stdout.write(report)
