"""Exchange adapters: paper (in-process simulator) and ccxt (testnet and live)."""

from __future__ import annotations

from typing import Any

from trading.adapters.base import (
    FillReport,
    NotSent,
    OrderRejected,
    OrderSnapshot,
    SubmitResult,
    UnclearOutcome,
)
from trading.adapters.paper import PaperAdapter
from trading.models import ExchangeAccount

__all__ = [
    "FillReport",
    "NotSent",
    "OrderRejected",
    "OrderSnapshot",
    "PaperAdapter",
    "SubmitResult",
    "UnclearOutcome",
    "adapter_for",
]


def adapter_for(account: ExchangeAccount) -> Any:
    if account.mode == ExchangeAccount.Mode.PAPER:
        return PaperAdapter(account)
    from trading.adapters.ccxt_adapter import CcxtAdapter

    return CcxtAdapter(account)
