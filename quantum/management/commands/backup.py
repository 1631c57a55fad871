"""`manage.py backup --out DIR`: the database and model artifacts, with sha256 checksums."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from quantum.backups import BackupError, backup_create, backup_verify


class Command(BaseCommand):
    help = "Back up the database and QT_ARTIFACT_DIR into a new folder (see docs/RUNBOOK.md)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", type=Path, help="a new or empty folder")
        parser.add_argument(
            "--verify", type=Path, metavar="DIR", help="only check an existing backup"
        )
        parser.add_argument("--json", action="store_true", help="print the manifest as JSON")

    def handle(self, *args: Any, **opts: Any) -> None:
        if not opts["out"] and not opts["verify"]:
            raise CommandError("give --out DIR (make a backup) or --verify DIR (check one)")
        try:
            if opts["verify"]:
                manifest = backup_verify(source=opts["verify"])
                self.stdout.write(f"{opts['verify']}: {len(manifest['files'])} files verified")
                return
            manifest = backup_create(
                out=opts["out"],
                say=lambda m: self.stderr.write(m) if opts["verbosity"] > 1 else None,
            )
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        if opts["json"]:
            self.stdout.write(json.dumps(manifest, indent=2))
        else:
            rows = sum(f.get("rows", 0) for f in manifest["files"])
            head = manifest["audit_head"]
            self.stdout.write(
                f"backup written to {opts['out']}: {rows} rows, "
                f"{sum(1 for f in manifest['files'] if 'model' not in f)} artifacts, "
                f"audit head {head['seq']}:{head['hash']}"
            )
