"""`manage.py rotate_fernet_key`: re-encrypt stored exchange API keys under a new key.

Run with the NEW key configured (QT_FERNET_KEY / QT_FERNET_KEY_FILE) and the OLD one in
QT_FERNET_KEY_OLD (or QT_FERNET_KEY_OLD_FILE). Every secret is decrypted with whichever
key opens it and encrypted again with the new one, all in one transaction: a secret that
neither key opens stops the rotation with nothing changed. Procedure: docs/RUNBOOK.md.
"""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from quantum.crypto import _fernet
from quantum.settings import env_secret

FIELDS = ("api_key_enc", "api_secret_enc", "api_password_enc")


class Command(BaseCommand):
    help = "Re-encrypt exchange API keys from QT_FERNET_KEY_OLD to the configured key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="check every secret opens; change nothing"
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        from risk.services.audit import audit_record
        from trading.models import ExchangeAccount

        old_key = env_secret("QT_FERNET_KEY_OLD")
        if not old_key:
            raise CommandError("set QT_FERNET_KEY_OLD (or QT_FERNET_KEY_OLD_FILE) to the old key")
        try:
            old = Fernet(old_key.encode())
        except ValueError as exc:
            raise CommandError(f"QT_FERNET_KEY_OLD is not a valid Fernet key: {exc}") from None
        _fernet.cache_clear()
        keys = MultiFernet([_fernet(), old])  # encrypts with the new key, opens either
        rotated = 0
        with transaction.atomic():
            for account in ExchangeAccount.objects.select_for_update().order_by("pk"):
                changed = []
                for field in FIELDS:
                    token = getattr(account, field)
                    if not token:
                        continue
                    try:
                        setattr(account, field, keys.rotate(token.encode()).decode())
                    except InvalidToken:
                        raise CommandError(
                            f"account {account.name!r}: {field} opens with neither key; "
                            "nothing was changed"
                        ) from None
                    changed.append(field)
                if changed:
                    rotated += 1
                    if not opts["dry_run"]:
                        account.save(update_fields=changed)
            if not opts["dry_run"]:
                audit_record(
                    actor="system:ops",
                    action="secrets.fernet_rotated",
                    payload={"accounts": rotated},
                )
        verb = "would re-encrypt" if opts["dry_run"] else "re-encrypted"
        self.stdout.write(f"{verb} the keys of {rotated} accounts")
