"""Client order ids for this installation: deterministic per decision, salted per database."""

from __future__ import annotations

import secrets
from functools import cache

from django.db import IntegrityError, transaction
from django.db.models.signals import post_migrate

from trading.lib import ids
from trading.models import Installation


@cache
def installation_salt() -> str:
    """The salt made with this database (migration 0006); made now if the row is gone.

    Read once per process: it never changes while the database lives (a rebuilt database
    means restarted processes; `flush` in tests sends post_migrate, which clears it)."""
    row = Installation.objects.order_by("pk").first()
    if row is not None:
        return row.salt
    try:
        with transaction.atomic():
            return Installation.objects.create(pk=1, salt=secrets.token_hex(16)).salt
    except IntegrityError:  # another process made it first: theirs is the one
        return Installation.objects.get(pk=1).salt


def client_order_id(*, strategy: str, account_id: int, market_id: int, decision: str) -> str:
    """The same decision in this database always yields the same id; another database not."""
    return ids.client_order_id(
        salt=installation_salt(),
        strategy=strategy,
        account_id=account_id,
        market_id=market_id,
        decision=decision,
    )


post_migrate.connect(
    lambda **kwargs: installation_salt.cache_clear(), dispatch_uid="installation_salt"
)
