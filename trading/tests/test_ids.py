from __future__ import annotations

import re

from trading.lib.ids import client_order_id


def coid(
    *,
    salt: str = "s4lt",
    strategy: str = "model",
    account_id: int = 1,
    market_id: int = 2,
    decision: str = "signal:3",
) -> str:
    return client_order_id(
        salt=salt, strategy=strategy, account_id=account_id, market_id=market_id, decision=decision
    )


def test_it_maps_the_same_decision_to_the_same_id() -> None:
    assert coid() == coid()
    assert coid(decision="signal:42") == coid(decision="signal:42")


def test_it_maps_each_different_decision_to_a_different_id() -> None:
    ids = [
        coid(),
        coid(strategy="manual"),
        coid(account_id=9),
        coid(market_id=9),
        coid(decision="signal:4"),
    ]
    assert len(set(ids)) == len(ids)


def test_it_does_not_confuse_fields_that_concatenate_alike() -> None:
    # "1" + "|" + "23" must not collide with "12" + "|" + "3".
    assert coid(account_id=1, market_id=23) != coid(account_id=12, market_id=3)


def test_it_fits_exchange_client_order_id_limits() -> None:
    # Binance accepts up to 36 characters matching ^[.A-Z:/a-z0-9_-]{1,36}$.
    assert re.fullmatch(r"qt[0-9a-f]{30}", coid())


def test_the_same_decision_in_another_installation_gets_another_id() -> None:
    assert coid(salt="first-database") != coid(salt="rebuilt-database")
    assert coid(salt="first-database") == coid(salt="first-database")


def test_each_database_is_made_with_its_own_salt_and_keeps_it(db) -> None:
    from trading.models import Installation
    from trading.services.ids import client_order_id as salted
    from trading.services.ids import installation_salt

    salt = installation_salt()
    assert len(salt) == 32 and Installation.objects.count() == 1  # made by migration 0006
    args = {"strategy": "model", "account_id": 1, "market_id": 2, "decision": "signal:3"}
    assert salted(**args) == salted(**args) == client_order_id(salt=salt, **args)

    Installation.objects.all().delete()  # a rebuilt database (and restarted processes)
    installation_salt.cache_clear()
    assert installation_salt() != salt
    assert salted(**args) != client_order_id(salt=salt, **args)
