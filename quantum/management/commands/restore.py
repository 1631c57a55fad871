"""`manage.py restore --from DIR`: a verified backup into a fresh database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from quantum.backups import BackupError, backup_restore


class Command(BaseCommand):
    help = (
        "Restore a backup (manage.py backup) into a fresh database: checksums first, then "
        "migrate, load, and check row counts and the audit chain before committing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--from", dest="source", type=Path, required=True)
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            report = backup_restore(source=opts["source"], say=self.stderr.write)
        except BackupError as exc:
            raise CommandError(f"restore refused: {exc}") from None
        if opts["json"]:
            self.stdout.write(json.dumps(report, indent=2, sort_keys=True))
        else:
            self.stdout.write(f"restored from {opts['source']}: {report['audit']}")
