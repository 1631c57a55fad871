from __future__ import annotations

import hashlib


def client_order_id(
    *, salt: str, strategy: str, account_id: int, market_id: int, decision: str
) -> str:
    """Deterministic: the same decision always maps to the same id (no duplicate orders).

    `salt` is the installation's (trading.services.ids): a database rebuilt against the
    same exchange account numbers its signals from 1 again, and without it decision
    "signal:1" would map to the old database's order of that id.
    """
    digest = hashlib.sha256(
        f"{salt}|{strategy}|{account_id}|{market_id}|{decision}".encode()
    ).hexdigest()
    return f"qt{digest[:30]}"
