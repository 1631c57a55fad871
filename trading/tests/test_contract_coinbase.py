"""Contract: the loopback Coinbase Advanced Trade venue (venues.coinbase) does what Coinbase's
docs say (docs.cdp.coinbase.com, api-reference/advanced-trade-api/rest-api; no docs repository).

Docs silent here, so not modelled: a visibility lag, REST rate limits (the 30 requests a second
per user is from a secondary source only), a timestamp window other than the JWT's "expire
after 2 minutes".
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import ccxt
import pytest

from marketdata.sources import rebase_urls
from venues.coinbase import API_KEY, CoinbaseLoopback, cdp_secret

SECRET = cdp_secret()


@pytest.fixture
def venue() -> Iterator[CoinbaseLoopback]:
    with CoinbaseLoopback(api_secret=SECRET, balances={"USD": "1000"}) as ex:
        ex.set_price("BTC-USD", "40000")
        yield ex


@pytest.fixture
def client(venue: CoinbaseLoopback) -> ccxt.coinbase:
    client = ccxt.coinbase({"apiKey": API_KEY, "secret": SECRET, "timeout": 3000})
    client.urls["api"] = rebase_urls(client.urls["api"], venue.url)
    client.load_markets()
    return client


def rest(client: ccxt.coinbase, coid: str, amount: float = 0.001) -> dict:
    return client.create_order("BTC/USD", "limit", "buy", amount, 1000, {"client_order_id": coid})


def test_a_reused_client_order_id_creates_nothing_and_answers_with_the_original(
    venue, client
) -> None:
    """Coinbase "Create Order" client_order_id: "If the ID provided is not unique, the order
    will not be created and the order corresponding with that ID will be returned instead."
    (The text as client libraries copy it; the docs page excerpt lacks it.)"""
    first = rest(client, "qt-cb-dup")

    again = rest(client, "qt-cb-dup", amount=0.002)

    assert again["id"] == first["id"] and len(venue.spot.orders) == 1


def test_get_order_answers_open_filled_and_canceled_orders_by_order_id(client) -> None:
    """Coinbase "Get Order": "Get a single order by order ID" (order_id only; no retention
    is stated, so every order stays findable)."""
    open_ = rest(client, "qt-cb-open")
    canceled = rest(client, "qt-cb-cancel")
    client.cancel_order(canceled["id"])
    filled = client.create_order(
        "BTC/USD", "limit", "buy", 0.001, 50000, {"client_order_id": "qt-cb-fill"}
    )

    statuses = [client.fetch_order(o["id"])["status"] for o in (open_, filled, canceled)]

    assert statuses == ["open", "closed", "canceled"]


def test_a_refused_order_is_success_false_in_an_http_200(client) -> None:
    """Coinbase "Create Order" response: "success" and an "error_response" with
    "preview_failure_reason" (the insufficient-funds reason as the fake words it; the docs'
    enum was not read)."""
    with pytest.raises(ccxt.InsufficientFunds):
        rest(client, "qt-cb-poor", amount=5)

    body = json.loads(client.last_http_response)
    assert body["success"] is False
    assert body["error_response"]["preview_failure_reason"] == "PREVIEW_INSUFFICIENT_FUND"
