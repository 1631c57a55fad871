"""Operator: after a reconciliation mismatch is explained, take the venue's holdings as ours."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from trading.models import ExchangeAccount
from trading.services.reconcile import account_holdings_adopt


class Command(BaseCommand):
    help = "Adopt an exchange account's holdings and cash from its venue, audited, then reconcile."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("account", help="the exchange account's name")
        parser.add_argument("--reason", required=True, help="why (kept in the audit log)")
        parser.add_argument("--actor", default="cli:operator")

    def handle(self, *args: Any, **options: Any) -> None:
        reason = options["reason"].strip()
        if not reason:
            raise CommandError("--reason must say why the venue's holdings are right")
        try:
            account = ExchangeAccount.objects.select_related("exchange").get(
                name=options["account"]
            )
        except ExchangeAccount.DoesNotExist:
            raise CommandError(f"no exchange account named {options['account']!r}") from None
        if account.is_paper:
            raise CommandError(f"{account.name} is a paper account: it has no venue to adopt")
        try:
            report = account_holdings_adopt(account=account, actor=options["actor"], reason=reason)
        except ValueError as exc:  # what cannot be adopted (a short), said before any change
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps(report.as_dict()))
        if not report.ok:
            raise CommandError("still not reconciled: " + "; ".join(report.mismatches))
