"""Contract: the loopback Binance spot venue (venues.binance) does what Binance's spot docs say.

Each test drives the venue with the real ccxt client (its own signing; raw HTTP where ccxt
hides the status or the headers) and quotes github:binance/binance-spot-api-docs.
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
from venues.binance import LoopbackExchange
from venues.binance_limits import SpotLimits

KEY, SECRET = "qt-contract-binance-key", "qt-contract-binance-secret"
DAY_S = 86_400


@pytest.fixture
def venue() -> Iterator[LoopbackExchange]:
    with LoopbackExchange(
        api_key=KEY, api_secret=SECRET, symbols=["BTCUSDT"], rate_limits=False
    ) as ex:
        ex.set_price("BTCUSDT", "40000")
        yield ex


@pytest.fixture
def client(venue: LoopbackExchange) -> ccxt.binance:
    client = ccxt.binance({"apiKey": KEY, "secret": SECRET, "timeout": 3000})
    client.options["fetchMarkets"] = {"types": ["spot"]}
    client.urls["api"] = rebase_urls(client.urls["api"], venue.url)
    client.load_markets()
    return client


def send(client: ccxt.binance, path: str, method: str, params: dict[str, Any]) -> Any:
    """A request ccxt signs, sent as is: (HTTP status, headers, JSON body)."""
    req = client.sign(path, ["private"], method, params)
    body = req["body"].encode() if req["body"] else None
    request = urllib.request.Request(req["url"], body, req["headers"] or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, dict(reply.headers), json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def rest(client: ccxt.binance, coid: str) -> dict:
    return client.create_order("BTC/USDT", "limit", "buy", 0.01, 1000, {"newClientOrderId": coid})


def query(client: ccxt.binance, **params: Any) -> Any:
    return send(client, "order", "GET", {"symbol": "BTCUSDT", **params})


# Duplicate client ids.


def test_a_client_id_an_open_order_holds_is_refused_as_a_duplicate(client) -> None:
    """rest-api.md "New order (TRADE)": newClientOrderId "A unique id among open orders";
    errors.md -2010 table: "Duplicate order sent." | "The clOrdId is already in use"."""
    rest(client, "qt-dup-1")

    status, _, body = send(
        client,
        "order",
        "POST",
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.01",
            "price": "1000",
            "newClientOrderId": "qt-dup-1",
        },
    )

    assert (status, body) == (400, {"code": -2010, "msg": "Duplicate order sent."})


def test_a_filled_orders_client_id_may_be_used_again(client) -> None:
    """rest-api.md "New order (TRADE)": "Orders with the same newClientOrderID can be accepted
    only when the previous one is filled". (After a cancel the docs are silent: this venue
    frees the id too, as "unique among open orders" reads.)"""
    first = client.create_order("BTC/USDT", "market", "buy", 0.01, None, {"newClientOrderId": "a"})
    assert first["status"] == "closed"

    again = client.create_order("BTC/USDT", "market", "buy", 0.01, None, {"newClientOrderId": "a"})

    assert again["id"] != first["id"]


# Look-ups: open, filled, canceled, old, never sent.


def test_query_order_answers_open_filled_and_canceled_orders_by_client_id(client) -> None:
    """rest-api.md "Query order (USER_DATA)": "Either orderId or origClientOrderId must be
    sent"; Data Source "Memory => Database" (every state is found)."""
    rest(client, "qt-open")
    client.create_order("BTC/USDT", "market", "buy", 0.01, None, {"newClientOrderId": "qt-fill"})
    canceled = rest(client, "qt-cancel")
    client.cancel_order(canceled["id"], "BTC/USDT")

    statuses = {
        coid: query(client, origClientOrderId=coid)[2]["status"]
        for coid in ("qt-open", "qt-fill", "qt-cancel")
    }

    assert statuses == {"qt-open": "NEW", "qt-fill": "FILLED", "qt-cancel": "CANCELED"}


def test_a_canceled_order_with_no_fills_is_archived_after_90_days(venue, client) -> None:
    """errors.md "-2026 ORDER_ARCHIVED": "Order was canceled or expired with no executed qty
    over 90 days ago and has been archived." (CHANGELOG 2023-03-13: it was -2013 before.)"""
    canceled = rest(client, "qt-old-cancel")
    client.cancel_order(canceled["id"], "BTC/USDT")
    client.create_order("BTC/USDT", "market", "buy", 0.01, None, {"newClientOrderId": "qt-old"})
    real = venue.ledger.clock
    venue.ledger.clock = lambda: real() + 89 * DAY_S
    assert query(client, origClientOrderId="qt-old-cancel")[0] == 200

    venue.ledger.clock = lambda: real() + 91 * DAY_S

    status, _, body = query(client, origClientOrderId="qt-old-cancel")
    assert (status, body["code"]) == (400, -2026)
    assert body["msg"] == (
        "Order was canceled or expired with no executed qty over 90 days ago and has been archived."
    )
    assert query(client, origClientOrderId="qt-old")[2]["status"] == "FILLED"


def test_an_order_never_sent_does_not_exist(client) -> None:
    """errors.md "-2013 NO_SUCH_ORDER": "Order does not exist."."""
    assert query(client, origClientOrderId="qt-never")[::2] == (
        400,
        {"code": -2013, "msg": "Order does not exist."},
    )


def test_open_orders_lists_open_ones_and_all_orders_every_one(client) -> None:
    """rest-api.md "Current open orders (USER_DATA)": "Get all open orders on a symbol";
    "All orders (USER_DATA)": "Get all account orders; active, canceled, or filled"."""
    rest(client, "qt-o1")
    client.create_order("BTC/USDT", "market", "buy", 0.01, None, {"newClientOrderId": "qt-f1"})

    open_ids = [o["clientOrderId"] for o in client.fetch_open_orders("BTC/USDT")]
    all_ids = [o["clientOrderId"] for o in client.fetch_orders("BTC/USDT")]

    assert (open_ids, all_ids) == (["qt-o1"], ["qt-o1", "qt-f1"])


def test_an_accepted_order_is_visible_at_once(client) -> None:
    """Docs silent: rest-api.md "Data Sources" says only "The API system is asynchronous, so
    some delay in the response is normal and expected"; this venue shows an order at once."""
    order = rest(client, "qt-seen")

    assert query(client, orderId=order["id"])[2]["clientOrderId"] == "qt-seen"


# Refusals.


@pytest.mark.parametrize(
    ("quantity", "price", "message"),
    [
        ("0.000001", "40000", "Filter failure: LOT_SIZE"),
        ("0.0001", "40000", "Filter failure: NOTIONAL"),
    ],
)
def test_an_order_off_the_filters_is_refused_with_minus_1013(
    client, quantity, price, message
) -> None:
    """errors.md "Filter failures": "Filter failure: LOT_SIZE" | "quantity is too high, too
    low, and/or not following the step size rule"; "Filter failure: NOTIONAL" | "price *
    quantity is not within range of the minNotional and maxNotional"."""
    params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}

    answer = send(client, "order", "POST", {**params, "quantity": quantity, "price": price})

    assert answer[::2] == (400, {"code": -1013, "msg": message})


def test_an_order_the_balance_cannot_pay_is_refused_with_minus_2010(client) -> None:
    """errors.md -2010 table: "Account has insufficient balance for requested action."."""
    with pytest.raises(ccxt.InsufficientFunds):
        client.create_order("BTC/USDT", "market", "buy", 5, None)

    assert json.loads(client.last_http_response) == {
        "code": -2010,
        "msg": "Account has insufficient balance for requested action.",
    }


def test_a_request_signed_outside_recv_window_is_refused_with_minus_1021(client) -> None:
    """errors.md "-1021 INVALID_TIMESTAMP": "Timestamp for this request is outside of the
    recvWindow."; rest-api.md "Timing security": "If recvWindow is not sent, it defaults to
    5000 milliseconds"."""
    client.nonce = lambda: int(time.time() * 1000) - 65_000  # past any recvWindow (max 60 s)

    with pytest.raises(ccxt.InvalidNonce):
        client.fetch_open_orders("BTC/USDT")

    assert json.loads(client.last_http_response) == {
        "code": -1021,
        "msg": "Timestamp for this request is outside of the recvWindow.",
    }


def test_past_the_weight_limit_the_venue_answers_429_then_bans_with_418() -> None:
    """rest-api.md "LIMITS": every answer has X-MBX-USED-WEIGHT-(intervalNum)(intervalLetter);
    "Requests fail with HTTP status code 429"; "failing to back off after receiving 429s will
    result in an automated IP ban (HTTP status 418)"; "A Retry-After header is sent with a 418
    or 429 responses". errors.md -1003: "Too much request weight used"."""
    limits = SpotLimits(weight_limit=40, weight_window_s=60, ban_s=5)
    with LoopbackExchange(
        api_key=KEY, api_secret=SECRET, symbols=["BTCUSDT"], rate_limits=limits
    ) as ex:
        url = f"{ex.url}/api/v3/exchangeInfo"  # weight 20
        answers = []
        for _ in range(4):
            try:
                with urllib.request.urlopen(url, timeout=5) as reply:
                    answers.append((reply.status, dict(reply.headers), None))
            except urllib.error.HTTPError as error:
                answers.append((error.code, dict(error.headers), json.loads(error.read())))

    assert [a[0] for a in answers] == [200, 200, 429, 418]
    assert answers[1][1]["X-MBX-USED-WEIGHT-1M"] == "40"
    assert answers[2][2]["code"] == -1003 and "Too much request weight" in answers[2][2]["msg"]
    assert int(answers[2][1]["Retry-After"]) >= 1
    assert "IP banned until" in answers[3][2]["msg"] and int(answers[3][1]["Retry-After"]) >= 1
