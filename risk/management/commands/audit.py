"""`manage.py audit verify [--expect-head SEQ:HASH]`: walk the hash chain, fail at the first
bad entry (exit status 1, naming it)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from risk.services.audit import audit_head, audit_verify


def _head(value: str) -> tuple[int, str]:
    seq, _, digest = value.partition(":")
    if not seq.isdigit() or len(digest) != 64:
        raise CommandError("--expect-head must look like SEQ:SHA256 (from an earlier verify)")
    return int(seq), digest


class Command(BaseCommand):
    help = "Audit log tools. verify: check the hash chain; exits non-zero if it is broken."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["verify"])
        parser.add_argument(
            "--expect-head",
            default="",
            help="SEQ:HASH printed by an earlier verify; fails if the chain was cut before it",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        expect = _head(opts["expect_head"]) if opts["expect_head"] else None
        ok, message = audit_verify(expect_head=expect)
        if not ok:
            # CommandError goes to stderr with exit status 1 from the command line.
            raise CommandError(f"audit chain broken: {message}")
        seq, digest = audit_head()
        self.stdout.write(self.style.SUCCESS(message))
        self.stdout.write(f"head {seq}:{digest}")
