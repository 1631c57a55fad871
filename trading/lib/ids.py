from __future__ import annotations

import hashlib


def client_order_id(*, strategy: str, account_id: int, market_id: int, decision: str) -> str:
    """Deterministic: the same decision always maps to the same id (no duplicate orders)."""
    digest = hashlib.sha256(f"{strategy}|{account_id}|{market_id}|{decision}".encode()).hexdigest()
    return f"qt{digest[:30]}"
