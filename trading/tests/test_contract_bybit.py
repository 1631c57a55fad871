"""Contract: the loopback Bybit V5 venue (venues.bybit) does what Bybit's docs say.

Each test drives the venue with the real ccxt client (its own signing; requests it signs sent
as is where ccxt hides the HTTP status or headers) and quotes github:bybit-exchange/docs,
paths under docs/v5/.
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
from trading.adapters.ccxt_adapter import PROFILES
from venues.bybit import BybitLimits, BybitLoopback

KEY, SECRET = "qt-contract-bybit-key", "qt-contract-bybit-secret"
HOUR_S = 3600
SPOT = {"category": "spot", "symbol": "BTCUSDT"}


def make_client(venue: BybitLoopback, market_type: str = "spot") -> ccxt.bybit:
    options = dict(PROFILES[("bybit", market_type)].options)
    client = ccxt.bybit({"apiKey": KEY, "secret": SECRET, "timeout": 3000, "options": options})
    client.urls["api"] = rebase_urls(client.urls["api"], venue.url)
    return client


@pytest.fixture
def venue() -> Iterator[BybitLoopback]:
    with BybitLoopback(api_key=KEY, api_secret=SECRET, balances={"USDT": "60000"}) as ex:
        ex.set_price("BTCUSDT", "40000")
        yield ex


@pytest.fixture
def client(venue: BybitLoopback) -> ccxt.bybit:
    client = make_client(venue)
    client.load_markets()
    return client


def send(client: ccxt.bybit, path: str, method: str, params: dict[str, Any]) -> Any:
    """A request ccxt signs, sent as is: (HTTP status, headers, body: JSON or text)."""
    req = client.sign(path, ["private"], method, params)
    body = req["body"].encode() if req["body"] else None
    request = urllib.request.Request(req["url"], body, req["headers"] or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            status, headers, raw = reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as error:
        status, headers, raw = error.code, dict(error.headers), error.read()
    try:
        return status, headers, json.loads(raw)
    except ValueError:
        return status, headers, raw.decode()


def create(client: ccxt.bybit, link_id: str, **overrides: str) -> Any:
    params = {
        "category": "spot",
        "symbol": "BTCUSDT",
        "side": "Buy",
        "orderType": "Limit",
        "qty": "0.01",
        "price": "1000",
        "orderLinkId": link_id,
        **overrides,
    }
    return send(client, "v5/order/create", "POST", params)


def by_link_id(client: ccxt.bybit, route: str, link_id: str) -> list[dict]:
    params = {"category": "spot", "orderLinkId": link_id}  # symbol: optional on spot
    return send(client, f"v5/order/{route}", "GET", params)[2]["result"]["list"]


# Duplicate client ids; refusals as a retCode in a 200.


def test_an_order_link_id_is_never_taken_twice_even_after_the_order_filled(client) -> None:
    """order/create-order.mdx: orderLinkId "Futures, Perps & Spot: ... always unique";
    error.mdx "UTA": "110072 | OrderLinkedID is duplicate". The docs do not say whether a UTA
    spot order gets this or "Spot Trade"'s "170141 | Duplicate clientOrderId": 110072 here."""
    assert create(client, "qt-dup", orderType="Market", price="")[2]["retCode"] == 0

    status, _, body = create(client, "qt-dup")

    assert (status, body["retCode"], body["retMsg"]) == (200, 110072, "OrderLinkedID is duplicate")


def test_a_refusal_is_a_nonzero_ret_code_in_an_http_200(client) -> None:
    """guide.mdx "Common response parameters": "retCode | Success/Error code"; rate-limit.mdx
    finds 10006 "in the JSON response". (The docs never say "HTTP 200" in words.)"""
    status, _, body = create(client, "qt-refused", qty="0.0000001")

    assert status == 200 and body["retCode"] != 0 and body["result"] == {}


# Visibility and look-ups.


def test_an_accepted_order_shows_in_order_realtime_only_after_the_visibility_lag(
    venue, client
) -> None:
    """order/create-order.mdx: "This request is asynchronous so please use the websocket to
    confirm the order status"; order/order-list.mdx: "the data returned from this endpoint may
    delay". The venue's visibility_lag_s is how long."""
    venue.visibility_lag_s = 0.3
    create(client, "qt-lag")

    assert by_link_id(client, "realtime", "qt-lag") == []
    time.sleep(0.35)
    assert by_link_id(client, "realtime", "qt-lag")[0]["orderStatus"] == "New"


def test_order_realtime_keeps_open_and_recent_closed_orders_until_a_restart(venue, client) -> None:
    """order/open-order.mdx: "also supports querying recent 500 closed status (Cancelled,
    Filled) orders"; "openOnly param will be ignored when query by orderId or orderLinkId";
    "If the Bybit service is restarted due to an update, this part of the data will be
    cleared and accumulated again, but the order records will still be queried in order
    history"."""
    create(client, "qt-rt-open")
    create(client, "qt-rt-fill", orderType="Market", price="")
    create(client, "qt-rt-cancel")
    send(client, "v5/order/cancel", "POST", {**SPOT, "orderLinkId": "qt-rt-cancel"})
    links = ("qt-rt-open", "qt-rt-fill", "qt-rt-cancel")

    def realtime() -> dict[str, str]:
        found = {link: by_link_id(client, "realtime", link) for link in links}
        return {link: rows[0]["orderStatus"] if rows else "-" for link, rows in found.items()}

    assert realtime() == {"qt-rt-open": "New", "qt-rt-fill": "Filled", "qt-rt-cancel": "Cancelled"}
    time.sleep(0.01)
    venue.restart()
    assert realtime() == {"qt-rt-open": "New", "qt-rt-fill": "-", "qt-rt-cancel": "-"}
    assert by_link_id(client, "history", "qt-rt-fill")[0]["orderStatus"] == "Filled"


def test_order_history_keeps_a_fully_cancelled_order_24_hours_and_a_filled_one_longer(
    venue, client
) -> None:
    """order/order-list.mdx: "The orders in the last 24 hours: the orders with "Cancelled"
    (fully cancelled order), "Rejected", "Deactivated" can be query"; "The orders in the last
    7 days: support querying all closed status except "Cancelled", "Rejected",
    "Deactivated""."""
    create(client, "qt-h-fill", orderType="Market", price="")
    create(client, "qt-h-cancel")
    send(client, "v5/order/cancel", "POST", {**SPOT, "orderLinkId": "qt-h-cancel"})
    assert by_link_id(client, "history", "qt-h-cancel")[0]["orderStatus"] == "Cancelled"

    venue.advance(25 * HOUR_S)

    assert by_link_id(client, "history", "qt-h-cancel") == []
    assert by_link_id(client, "history", "qt-h-fill")[0]["orderStatus"] == "Filled"


def test_order_history_lists_no_open_order(client) -> None:
    """order/order-list.mdx "Get Order History": its rules name closed statuses only; for open
    orders "you could query this endpoint [open-order]"."""
    create(client, "qt-h-open")

    assert by_link_id(client, "history", "qt-h-open") == []


# Refusals.


@pytest.mark.parametrize(
    ("qty", "code", "message"),
    [
        ("0.0000001", 170137, "Order volume decimal too long"),
        ("0.0001", 170140, "Order value exceeded lower limit"),
    ],
)
def test_a_spot_order_off_the_lot_size_or_below_the_minimum_value_is_refused(
    client, qty, code, message
) -> None:
    """error.mdx "Spot Trade": "170137 | Order volume decimal too long"; "170140 | Order value
    exceeded lower limit"."""
    body = create(client, "qt-filter", qty=qty, price="40000")[2]

    assert (body["retCode"], body["retMsg"]) == (code, message)


def test_an_order_the_balance_cannot_pay_is_refused_with_170131_on_spot_and_110007_on_linear(
    venue, client
) -> None:
    """error.mdx "Spot Trade": "170131 | Balance insufficient"; "UTA": "110007 | Available
    balance is insufficient"."""
    with pytest.raises(ccxt.InsufficientFunds):
        client.create_order("BTC/USDT", "market", "buy", 5)
    spot = json.loads(client.last_http_response)
    linear = create(client, "qt-linear", category="linear", orderType="Market", price="", qty="900")

    assert (spot["retCode"], spot["retMsg"]) == (170131, "Balance insufficient")
    assert (linear[2]["retCode"], linear[2]["retMsg"]) == (
        110007,
        "Available balance is insufficient",
    )


def test_a_request_signed_outside_the_recv_window_is_refused_with_10002(client) -> None:
    """guide.mdx: X-BAPI-RECV-WINDOW "default value is 5,000"; the rule "server_time -
    recv_window <= timestamp < server_time + 1000"; error.mdx "10002 | The request time
    exceeds the time window range."."""
    client.milliseconds = lambda: int(time.time() * 1000) - 6000

    with pytest.raises(ccxt.InvalidNonce):
        client.fetch_open_orders("BTC/USDT")

    body = json.loads(client.last_http_response)
    assert (body["retCode"], body["retMsg"]) == (
        10002,
        "The request time exceeds the time window range.",
    )


# Rate limits.


def test_every_private_answer_carries_the_endpoints_limit_headers() -> None:
    """rate-limit.mdx "API Rate Limit": "X-Bapi-Limit-Status - your remaining requests for
    current endpoint", "X-Bapi-Limit - your current limit for current endpoint",
    "X-Bapi-Limit-Reset-Timestamp - ... Otherwise, this is just the current timestamp"; the
    table: GET /v5/order/realtime 50/s."""
    with BybitLoopback(api_key=KEY, api_secret=SECRET, rate_limits=BybitLimits()) as venue:
        client = make_client(venue)
        before = time.time() * 1000
        _, headers, _ = send(client, "v5/order/realtime", "GET", {"category": "spot"})

    assert (headers["X-Bapi-Limit"], headers["X-Bapi-Limit-Status"]) == ("50", "49")
    assert before <= int(headers["X-Bapi-Limit-Reset-Timestamp"]) <= time.time() * 1000


def test_past_an_endpoints_limit_per_uid_the_answer_is_10006_in_a_200_until_the_reset() -> None:
    """rate-limit.mdx: 'If you receive "retCode": 10006, "retMsg": "Too many visits!" in the
    JSON response, you have hit the API rate limit'; "rolling time window per second and UID";
    X-Bapi-Limit-Reset-Timestamp is "when your request limit resets if you have exceeded"."""
    limits = BybitLimits(uid_limits={("/v5/order/realtime", ""): 2})
    with BybitLoopback(api_key=KEY, api_secret=SECRET, rate_limits=limits) as venue:
        client = make_client(venue)
        answers = [send(client, "v5/order/realtime", "GET", {"category": "spot"}) for _ in range(3)]
        other_endpoint = send(client, "v5/order/history", "GET", {"category": "spot"})
        time.sleep(1.05)
        after_reset = send(client, "v5/order/realtime", "GET", {"category": "spot"})

    status, headers, body = answers[2]
    assert (status, body["retCode"], body["retMsg"]) == (200, 10006, "Too many visits!")
    assert headers["X-Bapi-Limit-Status"] == "0"
    assert int(headers["X-Bapi-Limit-Reset-Timestamp"]) > int(
        answers[0][1]["X-Bapi-Limit-Reset-Timestamp"]
    )
    assert other_endpoint[2]["retCode"] == 0 and after_reset[2]["retCode"] == 0


def test_past_600_requests_in_5_seconds_an_ip_gets_403_and_is_banned_for_10_minutes() -> None:
    """rate-limit.mdx "HTTP IP limit": "600 requests within a 5-second window per IP"; ""403,
    access too frequent" ... wait for at least 10 minutes. The ban will be lifted
    automatically." (The body of the 403 the docs do not give.)"""
    now = [1000.0]
    limits = BybitLimits(ip_limit=3, clock=lambda: now[0])
    with BybitLoopback(api_key=KEY, api_secret=SECRET, rate_limits=limits) as venue:
        client = make_client(venue)

        def status() -> int:
            return send(client, "v5/order/realtime", "GET", {"category": "spot"})[0]

        first = [status() for _ in range(4)]
        now[0] += 6  # the 5 s window has passed, the ban has not
        banned = status()
        now[0] += 600
        lifted = status()

    assert first == [200, 200, 200, 403] and (banned, lifted) == (403, 200)
