"""`manage.py migrate_locked`: migrations applied by one deployer at a time.

Every deploy path runs it before the new code serves (compose: the one-shot `migrate`
service; systemd: ExecStartPre of quantum-web). Two hosts or two units starting together
queue on a lock instead of racing: a PostgreSQL advisory lock (held by the session), or on
SQLite an exclusive file lock next to the database.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection

LOCK_KEY = int.from_bytes(b"qt-migr", "big")


@contextlib.contextmanager
def _migration_lock() -> Iterator[None]:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
        return
    with (settings.VAR_DIR / "migrate.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


class Command(BaseCommand):
    help = "Apply migrations under a lock (safe when several deployers start at once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--check", action="store_true", help="only report unapplied ones")

    def handle(self, *args: Any, **opts: Any) -> None:
        with _migration_lock():
            if opts["check"]:
                call_command("migrate", check=True, plan=True, verbosity=opts["verbosity"])
                return
            call_command("migrate", interactive=False, verbosity=opts["verbosity"])
        self.stdout.write("migrations applied")
