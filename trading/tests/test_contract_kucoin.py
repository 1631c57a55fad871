"""Contract: the loopback KuCoin spot venue (venues.kucoin) does what KuCoin's docs say.

Each test drives the venue with the real ccxt client (its own signing; requests it signs sent
as is where ccxt hides the HTTP status or headers). "KC-LEGACY" is github:Kucoin/kucoin-api-docs
source/localizable/index.html.md; "docs-new" is www.kucoin.com/docs-new.
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
from venues.kucoin import KucoinLimits, KucoinLoopback

KEY, SECRET, PASSPHRASE = "qt-contract-kc-key", "qt-contract-kc-secret", "qt-contract-kc-pass"
DAY_S = 86_400


def make_venue(hf: bool = True, **options: Any) -> KucoinLoopback:
    return KucoinLoopback(
        api_key=KEY,
        api_secret=SECRET,
        api_passphrase=PASSPHRASE,
        balances={"USDT": "100000"},
        hf=hf,
        **options,
    )


def make_client(venue: KucoinLoopback) -> ccxt.kucoin:
    options = dict(PROFILES[("kucoin", "spot")].options)
    client = ccxt.kucoin(
        {
            "apiKey": KEY,
            "secret": SECRET,
            "password": PASSPHRASE,
            "timeout": 3000,
            "options": options,
        }
    )
    client.urls["api"] = rebase_urls(client.urls["api"], venue.url)
    return client


@pytest.fixture(params=[True, False], ids=["hf", "classic"])
def venue(request: pytest.FixtureRequest) -> Iterator[KucoinLoopback]:
    with make_venue(hf=request.param) as ex:
        ex.set_price("BTC-USDT", "40000")
        yield ex


@pytest.fixture
def client(venue: KucoinLoopback) -> ccxt.kucoin:
    return make_client(venue)


def send(client: ccxt.kucoin, path: str, method: str, params: dict[str, Any]) -> Any:
    """A request ccxt signs, sent as is: (HTTP status, headers, JSON body)."""
    req = client.sign(path, ["private"], method, params)
    body = req["body"].encode() if req["body"] else None
    request = urllib.request.Request(req["url"], body, req["headers"] or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, dict(reply.headers), json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def orders_path(venue: KucoinLoopback) -> str:
    return "hf/orders" if venue.hf else "orders"


def create(client: ccxt.kucoin, venue: KucoinLoopback, coid: str, **overrides: str) -> Any:
    params = {
        "clientOid": coid,
        "symbol": "BTC-USDT",
        "side": "buy",
        "type": "limit",
        "size": "0.01",
        "price": "1000",
        **overrides,
    }
    return send(client, orders_path(venue), "POST", params)


def by_client_oid(client: ccxt.kucoin, venue: KucoinLoopback, coid: str) -> Any:
    if venue.hf:
        return send(client, f"hf/orders/client-order/{coid}", "GET", {"symbol": "BTC-USDT"})
    return send(client, f"order/client-order/{coid}", "GET", {})


def cancel(client: ccxt.kucoin, venue: KucoinLoopback, coid: str) -> None:
    prefix = "hf/orders" if venue.hf else "order"
    params = {"symbol": "BTC-USDT"} if venue.hf else {}
    assert send(client, f"{prefix}/client-order/{coid}", "DELETE", params)[2]["code"] == "200000"


# Duplicate client ids.


def test_a_client_oid_is_never_taken_twice(client, venue) -> None:
    """KC-LEGACY "CLIENT ORDER ID": "Please do not send a repeated client_oid" (no code given:
    docs silent on the answer; this venue refuses with its own 126044 "clientOid
    duplicate")."""
    assert create(client, venue, "qt-dup", type="market", price="")[2]["code"] == "200000"

    status, _, body = create(client, venue, "qt-dup")

    assert (status, body["code"]) == (400, "126044")


# Look-ups.


@pytest.mark.parametrize("venue", [False], ids=["classic"], indirect=True)
def test_the_classic_lookup_by_client_oid_answers_active_orders_only(venue) -> None:
    """KC-LEGACY "Get Single Active Order by clientOid": "The system will prompt that the
    order does not exists if the order does not exist or has been settled." (The code of that
    prompt the docs do not give: 400100 here.)"""
    client = make_client(venue)
    create(client, venue, "qt-c-open")
    create(client, venue, "qt-c-fill", type="market", price="")
    create(client, venue, "qt-c-cancel")
    cancel(client, venue, "qt-c-cancel")

    answers = {
        coid: by_client_oid(client, venue, coid)[2]
        for coid in ("qt-c-open", "qt-c-fill", "qt-c-cancel")
    }

    assert answers["qt-c-open"]["data"]["isActive"] is True
    assert answers["qt-c-fill"]["code"] == answers["qt-c-cancel"]["code"] == "400100"


@pytest.mark.parametrize("venue", [True], ids=["hf"], indirect=True)
def test_the_hf_lookup_by_client_oid_answers_done_orders_for_3_days(venue) -> None:
    """KuCoin "Get HF order details by clientOid": "If the order is not an active order, you
    can only get data within the time range of 3 * 24 hours"."""
    client = make_client(venue)
    create(client, venue, "qt-h-open")
    create(client, venue, "qt-h-fill", type="market", price="")
    create(client, venue, "qt-h-cancel")
    cancel(client, venue, "qt-h-cancel")

    def found() -> dict[str, bool]:
        return {
            coid: by_client_oid(client, venue, coid)[2]["code"] == "200000"
            for coid in ("qt-h-open", "qt-h-fill", "qt-h-cancel")
        }

    assert found() == {"qt-h-open": True, "qt-h-fill": True, "qt-h-cancel": True}
    venue.advance(3 * DAY_S + 60)
    assert found() == {"qt-h-open": True, "qt-h-fill": False, "qt-h-cancel": False}


def test_done_orders_are_listed_within_a_7_day_window(client, venue) -> None:
    """KC-LEGACY "List Orders" › "ORDER STATUS AND SETTLEMENT": "when you query orders in done
    status, the start and end time range cannot exceed 7* 24 hours"."""
    create(client, venue, "qt-d-fill", type="market", price="")
    path = "hf/orders/done" if venue.hf else "orders"
    now = int(time.time() * 1000)
    params = {"symbol": "BTC-USDT", "status": "done"}

    listed = send(client, path, "GET", {**params, "startAt": now - 60_000, "endAt": now + 60_000})
    too_wide = send(
        client, path, "GET", {**params, "startAt": now - 8 * DAY_S * 1000, "endAt": now}
    )

    assert [o["clientOid"] for o in listed[2]["data"]["items"]] == ["qt-d-fill"]
    assert too_wide[2]["code"] == "400100"


def test_an_accepted_order_is_visible_at_once(client, venue) -> None:
    """KC-LEGACY "ORDER LIFECYCLE": "A 200 response indicates that the order was received and
    is active." (No lag is documented; this venue shows an order at once.)"""
    create(client, venue, "qt-seen")

    assert by_client_oid(client, venue, "qt-seen")[2]["data"]["clientOid"] == "qt-seen"


# Refusals and the code in the body.


def test_a_refusal_for_want_of_balance_is_code_200004_in_an_http_200(client, venue) -> None:
    """KC-LEGACY "System error codes": "200004 | Balance insufficient"; "If the returned HTTP
    status code is 200, whereas the operation failed, an error will occur. You can check the
    above error code for details."; "Success": "HTTP status code 200 and system code
    200000"."""
    status, _, body = create(client, venue, "qt-poor", size="5", price="40000")

    assert (status, body) == (200, {"code": "200004", "msg": "Balance insufficient"})


@pytest.mark.parametrize(
    ("size", "price", "message"),
    [
        ("0.0100000001", "40000", "Order size increment invalid."),
        ("0.000001", "40000", "Order size below the minimum requirement."),
    ],
)
def test_an_order_off_the_lot_size_is_refused_with_400100(client, venue, size, price, message):  # type: ignore[no-untyped-def]
    """KC-LEGACY "System error codes": "400100 | Parameter Error" (the wording of each filter
    the docs do not give; the symbol's baseIncrement and baseMinSize are in "Get Symbols
    List")."""
    status, _, body = create(client, venue, "qt-lot", size=size, price=price)

    assert (status, body) == (400, {"code": "400100", "msg": message})


def test_a_request_signed_more_than_5_seconds_off_is_refused_with_400002(client, venue) -> None:
    """KC-LEGACY "System error codes": "400002 | KC-API-TIMESTAMP Invalid"; the spot error
    page: the request time differs from the server's by more than 5 seconds."""
    client.milliseconds = lambda: int(time.time() * 1000) - 6000

    with pytest.raises(ccxt.InvalidNonce):
        client.fetch_open_orders("BTC/USDT")

    assert json.loads(client.last_http_response)["code"] == "400002"


# Rate limit 2.0.


def test_every_private_answer_carries_the_pools_quota_headers() -> None:
    """docs-new "Rate Limit" › "Request Header": "Total resource pool quota, resource pool
    remaining quota, resource pool quota reset countdown (milliseconds)": "gw-ratelimit-limit",
    "gw-ratelimit-remaining", "gw-ratelimit-reset"; "Spot (include Margin) 4000/30s"."""
    with make_venue(rate_limits=KucoinLimits()) as venue:
        headers = send(make_client(venue), "hf/orders/active", "GET", {"symbol": "BTC-USDT"})[1]

    assert (headers["gw-ratelimit-limit"], headers["gw-ratelimit-remaining"]) == ("4000", "3999")
    assert 29_000 < int(headers["gw-ratelimit-reset"]) <= 30_000


def test_past_the_pools_quota_the_answer_is_429_with_429000_until_the_window_resets() -> None:
    """docs-new "Rate Limit" › "Weight": "updated every 30s (starting from the arrival time of
    the user's first request)"; "If the quota of any resource pool is used up within 30s ...
    http code:429, error code:429000 will be returned, and the request can be re-requested
    after the length of time displayed in the request header"."""
    now = [1000.0]
    with make_venue(rate_limits=KucoinLimits(quota=2, clock=lambda: now[0])) as venue:
        client = make_client(venue)

        def ask() -> Any:
            return send(client, "hf/orders/active", "GET", {"symbol": "BTC-USDT"})

        ask()
        now[0] += 10
        ask()
        status, headers, body = ask()
        now[0] += 20  # 30 s after the first request
        after = ask()

    assert (status, body["code"]) == (429, "429000")
    assert (headers["gw-ratelimit-remaining"], headers["gw-ratelimit-reset"]) == ("0", "20000")
    assert after[0] == 200 and after[1]["gw-ratelimit-remaining"] == "1"
