"""What a ccxt exception means for an order: one table, every ccxt class in it.

- FINAL: the venue understood the request and refused it; nothing was done (the order is
  rejected; a look-up that raises it is answered).
- UNCLEAR: the request may or may not have been carried out (timeouts, 5xx, an answer we
  cannot read, an unclassified venue error): the order stays in flight and is resolved by
  client id, never sent again under a new one.
- NOT_SENT: refused before it was processed (our shared budget, a stale timestamp outside
  recvWindow): nothing happened at the venue, so the order is not sent late.
- NOT_FOUND: the venue says it has no such order.

Looked up along the exception's MRO, most specific class first, so a subclass ccxt adds
later falls back to its parent's row; `test_errors` checks that every class ccxt defines
today has its own row.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import ccxt


class Kind(StrEnum):
    FINAL = "final"
    UNCLEAR = "unclear"
    NOT_SENT = "not_sent"
    NOT_FOUND = "not_found"


K = Kind
TABLE: dict[type[BaseException], Kind] = {
    ccxt.BaseError: K.UNCLEAR,
    ccxt.ExchangeError: K.UNCLEAR,  # a venue error ccxt could not classify
    ccxt.AuthenticationError: K.FINAL,
    ccxt.PermissionDenied: K.FINAL,
    ccxt.AccountNotEnabled: K.FINAL,
    ccxt.AccountSuspended: K.FINAL,
    ccxt.ArgumentsRequired: K.FINAL,
    ccxt.BadRequest: K.FINAL,
    ccxt.BadSymbol: K.FINAL,
    ccxt.OperationRejected: K.FINAL,
    ccxt.NoChange: K.FINAL,
    ccxt.MarginModeAlreadySet: K.FINAL,
    ccxt.MarketClosed: K.FINAL,
    ccxt.ManualInteractionNeeded: K.FINAL,
    ccxt.RestrictedLocation: K.FINAL,
    ccxt.InsufficientFunds: K.FINAL,
    ccxt.InvalidAddress: K.FINAL,
    ccxt.AddressPending: K.FINAL,
    ccxt.InvalidOrder: K.FINAL,
    ccxt.OrderNotFound: K.NOT_FOUND,
    ccxt.OrderNotCached: K.UNCLEAR,  # ccxt's own cache lost it; the venue may have it
    ccxt.OrderImmediatelyFillable: K.FINAL,
    ccxt.OrderNotFillable: K.FINAL,
    ccxt.DuplicateOrderId: K.UNCLEAR,  # an order under this id exists: resolve it
    ccxt.ContractUnavailable: K.FINAL,
    ccxt.NotSupported: K.FINAL,
    ccxt.InvalidProxySettings: K.FINAL,
    ccxt.ExchangeClosedByUser: K.UNCLEAR,
    # OperationFailed: Binance -1006 "Execution status unknown", -1008 server busy.
    ccxt.OperationFailed: K.UNCLEAR,
    ccxt.NetworkError: K.UNCLEAR,
    ccxt.DDoSProtection: K.UNCLEAR,  # 429/418: handled first (back-off), then unclear
    ccxt.RateLimitExceeded: K.UNCLEAR,
    ccxt.ExchangeNotAvailable: K.UNCLEAR,
    ccxt.OnMaintenance: K.UNCLEAR,
    # Binance -1021 "Timestamp for this request is outside of the recvWindow": refused
    # before processing (binance-spot-api-docs rest-api.md "Timing security").
    ccxt.InvalidNonce: K.NOT_SENT,
    ccxt.ChecksumError: K.UNCLEAR,
    ccxt.RequestTimeout: K.UNCLEAR,
    ccxt.BadResponse: K.UNCLEAR,  # Binance -1006/-1007 at some endpoints
    ccxt.NullResponse: K.UNCLEAR,
    ccxt.CancelPending: K.UNCLEAR,
    ccxt.UnsubscribeError: K.UNCLEAR,
}


def classify(exc: BaseException) -> Kind:
    for cls in type(exc).__mro__:
        if cls in TABLE:
            return TABLE[cls]
    return Kind.UNCLEAR  # not a ccxt error at all: we cannot say what happened


def _flat(urls: Any) -> list[str]:
    if isinstance(urls, dict):
        return [u for value in urls.values() for u in _flat(value)]
    return [urls] if isinstance(urls, str) else []


def classify_as_at(client: Any, production_urls: Any) -> None:
    """Make ccxt pick its error tables as it would at the venue's own URLs.

    ccxt's Binance chooses per-market error tables by the request URL's host
    (`get_exceptions_by_url`: https://api.binance.com/ → spot, https://fapi... → linear);
    at an override host (a loopback venue, a regional endpoint) it would fall back to the
    generic table and classify -1006/-1007/-1008 differently from production.
    """
    original = getattr(client, "get_exceptions_by_url", None)
    if original is None:
        return
    pairs = sorted(
        zip(_flat(client.urls["api"]), _flat(production_urls), strict=False),
        key=lambda pair: -len(pair[0]),
    )

    def by_url(url: str | None, exact_or_broad: str) -> dict:
        for rebased, production in pairs:
            if url is not None and url.startswith(rebased):
                url = production + url[len(rebased) :]
                break
        return original(url, exact_or_broad)

    client.get_exceptions_by_url = by_url
