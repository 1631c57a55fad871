"""Contract: the loopback Binance USDⓈ-M futures venue (venues.binance_futures) does what the
USDⓈ-M futures docs on developers.binance.com say (no docs repository: pages quoted by name).

The venue does not model the futures rate limits (2400 weight a minute per IP, 1200 orders a
minute and 300 per 10 s per account: Binance FAQ "Rate Limits on Binance Futures").
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import ccxt
import pytest

from marketdata.sources import rebase_urls
from venues.binance_futures import BinanceFuturesLoopback

KEY, SECRET = "qt-contract-fapi-key", "qt-contract-fapi-secret"
DAY_S = 86_400


@pytest.fixture
def venue() -> Iterator[BinanceFuturesLoopback]:
    with BinanceFuturesLoopback(api_key=KEY, api_secret=SECRET) as ex:
        ex.set_price("BTCUSDT", "40000")
        yield ex


@pytest.fixture
def client(venue: BinanceFuturesLoopback) -> ccxt.binanceusdm:
    client = ccxt.binanceusdm({"apiKey": KEY, "secret": SECRET, "timeout": 3000})
    client.urls["api"] = rebase_urls(client.urls["api"], venue.url)
    return client


def send(client: ccxt.binanceusdm, path: str, method: str, params: dict[str, Any]) -> Any:
    """A request ccxt signs, sent as is: (HTTP status, JSON body)."""
    req = client.sign(path, ["fapiPrivate"], method, params)
    body = req["body"].encode() if req["body"] else None
    request = urllib.request.Request(req["url"], body, req["headers"] or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def place(client: ccxt.binanceusdm, coid: str, **overrides: str) -> Any:
    params = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.01",
        "price": "1000",
        "newClientOrderId": coid,
        **overrides,
    }
    return send(client, "order", "POST", params)


def query(client: ccxt.binanceusdm, coid: str) -> Any:
    return send(client, "order", "GET", {"symbol": "BTCUSDT", "origClientOrderId": coid})


def test_a_client_id_an_open_order_holds_is_refused_with_minus_4116(client) -> None:
    """Binance "New Order(TRADE)": newClientOrderId "A unique id among open orders"; "Error Codes":
    "-4116 DUPLICATED_CLIENT_ORDER_ID: clientOrderId is duplicated"."""
    place(client, "qt-f-dup")

    assert place(client, "qt-f-dup") == (400, {"code": -4116, "msg": "clientOrderId is duplicated"})


def test_a_closed_orders_client_id_may_be_used_again(client) -> None:
    """Binance "New Order(TRADE)": unique "among open orders" (a closed order's id is free)."""
    place(client, "qt-f-again", type="MARKET", timeInForce="", price="")

    assert place(client, "qt-f-again")[0] == 200


def test_query_order_forgets_unfilled_canceled_orders_after_3_days_and_all_after_90(
    venue, client
) -> None:
    """Binance "Query Order": "These orders will not be found: order status is CANCELED or
    EXPIRED AND order has NO filled trade AND created time + 3 days < current time; order
    create time + 90 days < current time"; "Error Codes": "-2013 NO_SUCH_ORDER: Order does not
    exist."."""
    place(client, "qt-f-open")
    place(client, "qt-f-fill", type="MARKET", timeInForce="", price="")
    place(client, "qt-f-cancel")
    send(client, "order", "DELETE", {"symbol": "BTCUSDT", "origClientOrderId": "qt-f-cancel"})

    def found() -> dict[str, int]:
        return {c: query(client, c)[0] for c in ("qt-f-open", "qt-f-fill", "qt-f-cancel")}

    assert found() == {"qt-f-open": 200, "qt-f-fill": 200, "qt-f-cancel": 200}
    venue.advance(3 * DAY_S + 60)
    assert found() == {"qt-f-open": 200, "qt-f-fill": 200, "qt-f-cancel": 400}
    venue.advance(88 * DAY_S)
    assert found() == {"qt-f-open": 400, "qt-f-fill": 400, "qt-f-cancel": 400}
    assert query(client, "qt-f-fill")[1] == {"code": -2013, "msg": "Order does not exist."}


def test_an_accepted_order_is_visible_at_once(client) -> None:
    """Docs silent on a lag after acceptance; this venue shows an order at once."""
    place(client, "qt-f-seen")

    assert query(client, "qt-f-seen")[1]["status"] == "NEW"


def test_an_order_the_margin_cannot_carry_is_refused_with_minus_2019(client) -> None:
    """Binance "Error Codes": "-2019 MARGIN_NOT_SUFFICIEN: Margin is insufficient."."""
    answer = place(client, "qt-f-poor", quantity="900", price="40000")

    assert answer == (400, {"code": -2019, "msg": "Margin is insufficient."})


def test_an_order_below_the_minimum_notional_is_refused_with_minus_4164(client) -> None:
    """exchangeInfo's MIN_NOTIONAL filter; "Error Codes" -4164 MIN_NOTIONAL (the wording not
    re-read here)."""
    assert place(client, "qt-f-small", quantity="0.001", price="1000")[1]["code"] == -4164


def test_a_request_signed_outside_recv_window_is_refused_with_minus_1021(client) -> None:
    """Binance "Error Codes": "-1021 INVALID_TIMESTAMP: Timestamp for this request is outside of the
    recvWindow."."""
    client.nonce = lambda: int(time.time() * 1000) - 65_000  # past any recvWindow (max 60 s)

    answer = send(client, "openOrders", "GET", {"symbol": "BTCUSDT"})

    assert answer[1] == {
        "code": -1021,
        "msg": "Timestamp for this request is outside of the recvWindow.",
    }
