"""`manage.py killswitch on|off --reason TEXT`: halt or release all trading from a shell."""

from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from risk.services.state import kill_switch_set


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user with no passwd entry and no $USER
        return "unknown"


class Command(BaseCommand):
    help = "Turn the global kill switch on (halt all trading) or off; a reason is required."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("switch", choices=["on", "off"])
        parser.add_argument("--reason", default="", help="why (stored in the audit log)")

    def handle(self, *args: Any, **opts: Any) -> None:
        reason = opts["reason"].strip()
        if not reason:
            raise CommandError("--reason is required (it goes into the audit log)")
        state = kill_switch_set(on=opts["switch"] == "on", reason=reason, actor=f"cli:{os_user()}")
        self.stdout.write(f"trading is {state.state}: {state.reason}")
