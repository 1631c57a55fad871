"""Binance spot's limits: the loopback venue enforces them; the shared budget keeps to them.

The venue side (a): request weight per IP, new orders per account, 429 then 418, headers.
The platform side: several workers, each with its own ccxt client, share one budget per IP
(b); a 418 stops every call until its Retry-After has passed (c); an order-count 429 stops
new orders, not cancels (d); the venue's usage headers correct the shared count (e). Windows
are seconds long here (the fake's and the profile's), so nothing waits a minute.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from decimal import Decimal

import ccxt
import pytest

from marketdata.sources import rebase_urls
from quantum.bootstrap import trading_defaults_ensure
from trading.adapters import ccxt_adapter
from trading.adapters.ccxt_adapter import PROFILES, ccxt_for_account
from trading.models import ExchangeAccount
from trading.ratelimit import Bucket, RateLimited, Window
from trading.services.accounts import account_keys_set
from venues.binance import LoopbackExchange
from venues.binance_limits import SpotLimits

KEY = "qt-ratelimit-key"
SECRET = "qt-ratelimit-secret"
WEIGHT, WINDOW_S, ORDERS = 200, 2, 5  # the test venue: 200 weight per 2 s, 5 orders per 2 s


def venue_limits(**overrides: object) -> SpotLimits:
    options: dict[str, object] = {
        "weight_limit": WEIGHT,
        "weight_window_s": WINDOW_S,
        "orders": ((ORDERS, WINDOW_S), (1000, 86_400)),
        "ban_s": 3.0,
    }
    return SpotLimits(**{**options, **overrides})  # type: ignore[arg-type]


@pytest.fixture
def exchange() -> Iterator[LoopbackExchange]:
    with LoopbackExchange(
        api_key=KEY, api_secret=SECRET, symbols=["BTCUSDT"], rate_limits=venue_limits()
    ) as ex:
        ex.set_price("BTCUSDT", "40000")
        yield ex


@pytest.fixture
def small_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Binance profile with the test venue's windows (headers named as it names them)."""
    windows = (
        Window(WEIGHT, WINDOW_S, "weight", "ip", True, "x-mbx-used-weight-2s", guard_ms=300),
        Window(ORDERS, WINDOW_S, "order", "account", True, "x-mbx-order-count-2s", guard_ms=300),
        Window(1000, 86_400, "order", "account", True, "x-mbx-order-count-1d"),
    )
    profile = dataclasses.replace(PROFILES[("binance", "spot")], windows=windows)
    monkeypatch.setitem(PROFILES, ("binance", "spot"), profile)


@pytest.fixture
def account(db, exchange, settings, market, small_profile):  # type: ignore[no-untyped-def]
    settings.QT_EXCHANGE_TIMEOUT_MS = 3000
    ccxt_adapter._clients.clear()
    trading_defaults_ensure()
    account = ExchangeAccount.objects.create(
        name="loopback",
        exchange=market.exchange,
        mode=ExchangeAccount.Mode.TESTNET,
        cash=Decimal("100000"),
        starting_cash=Decimal("100000"),
        api_url_override=exchange.url,
    )
    account_keys_set(account=account, api_key=KEY, api_secret=SECRET, actor="alice")
    yield account
    ccxt_adapter._clients.clear()


def raw_client(exchange: LoopbackExchange) -> ccxt.binance:
    """ccxt with no budget at all: what the venue does when a client ignores the limits."""
    client = ccxt.binance(
        {"apiKey": KEY, "secret": SECRET, "enableRateLimit": False, "timeout": 3000}
    )
    client.options["fetchMarkets"] = {"types": ["spot"]}
    client.urls["api"] = rebase_urls(client.urls["api"], exchange.url)
    return client


def get(exchange: LoopbackExchange, path: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"{exchange.url}{path}", timeout=5) as reply:
            return reply.status, dict(reply.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


def wait_for_next_window(seconds: int = WINDOW_S, margin: float = 0.25) -> None:
    """Start a test just after a window boundary, so one window holds all it does."""
    left = seconds - time.time() % seconds
    time.sleep(left + margin)


def rest_on_book(client: ccxt.binance, n: int = 1) -> list[dict]:
    return [client.create_order("BTC/USDT", "limit", "buy", 0.01, 1000) for _ in range(n)]


# (a) The venue.


def test_the_venue_counts_documented_weights_and_refuses_the_weight_past_its_limit(
    exchange,
) -> None:
    wait_for_next_window()
    status, headers = get(exchange, "/api/v3/exchangeInfo")  # weight 20
    assert (status, headers["X-MBX-USED-WEIGHT-2S"]) == (200, "20")
    for expected in range(21, WEIGHT + 1):  # /time weighs 1: up to the limit exactly
        status, headers = get(exchange, "/api/v3/time")
        assert (status, headers["X-MBX-USED-WEIGHT-2S"]) == (200, str(expected))

    status, headers = get(exchange, "/api/v3/time")  # weight 201 in this window

    assert status == 429 and int(headers["Retry-After"]) >= 1
    assert exchange.limits.weight_log[("127.0.0.1", int(time.time() // WINDOW_S))] == WEIGHT


def test_the_venue_refuses_the_order_past_the_order_count_with_minus_1015(exchange) -> None:
    client = raw_client(exchange)
    client.load_markets()
    wait_for_next_window()
    rest_on_book(client, ORDERS)
    assert client.last_response_headers["X-MBX-ORDER-COUNT-2S"] == str(ORDERS)

    with pytest.raises(ccxt.DDoSProtection, match="-1015"):
        rest_on_book(client)
    assert int(client.last_response_headers["Retry-After"]) >= 1
    # Cancels are not orders: they go through while new orders are refused.
    client.cancel_order(client.fetch_open_orders("BTC/USDT")[0]["id"], "BTC/USDT")


def test_a_client_that_keeps_calling_after_a_429_is_banned_with_418_and_retry_after(
    exchange,
) -> None:
    wait_for_next_window()
    while get(exchange, "/api/v3/exchangeInfo")[0] == 200:
        pass
    status, headers = get(exchange, "/api/v3/time")  # before the 429's Retry-After

    assert status == 418 and 1 <= int(headers["Retry-After"]) <= 3
    time.sleep(1.2)  # the ban has not passed
    assert get(exchange, "/api/v3/time")[0] == 418
    assert exchange.limits.refused == {429: 1, 418: 2}


# (b) The acceptance test: many workers, one IP, one budget.


def test_workers_with_their_own_clients_never_exceed_the_weight_or_order_limits(
    account, exchange, monkeypatch
) -> None:
    # The budget alone, without the venue's headers to correct it (those are test (e)'s).
    profile = PROFILES[("binance", "spot")]
    windows = tuple(dataclasses.replace(w, header=None) for w in profile.windows)
    monkeypatch.setitem(
        PROFILES, ("binance", "spot"), dataclasses.replace(profile, windows=windows)
    )
    stop = time.monotonic() + 3 * WINDOW_S
    errors: list[Exception] = []

    def work(client: ccxt.binance, call: Callable[[ccxt.binance], object]) -> None:
        try:
            client.load_markets()
            while time.monotonic() < stop:
                try:
                    call(client)
                except RateLimited:
                    time.sleep(0.05)
        except Exception as exc:  # reported below
            errors.append(exc)

    def lookup(client: ccxt.binance) -> object:
        return client.fetch_open_orders("BTC/USDT")  # weight 6

    # Three workers look orders up as fast as they can, two place orders: each its own client.
    roles = [lookup] * 3 + [rest_on_book] * 2
    threads = [
        threading.Thread(target=work, args=(ccxt_for_account(account, cached=False), role))
        for role in roles
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert not errors, errors
    assert exchange.limits.refused == {}, "the venue never had to refuse a request"
    used = exchange.limits.weight_log.values()
    assert max(used) <= WEIGHT
    assert max(used) >= WEIGHT * 0.6, "the workers asked for more than the budget"
    per_window: dict[int, int] = {}
    for order in exchange.orders():
        index = int(order["time"] // 1000 // WINDOW_S)
        per_window[index] = per_window.get(index, 0) + 1
    assert max(per_window.values()) <= ORDERS


# (c) A 418 stops everything until its Retry-After.


def test_a_418_stops_orders_cancels_and_lookups_until_retry_after_then_calls_resume(
    account, exchange
) -> None:
    client = ccxt_for_account(account)
    client.load_markets()
    order = rest_on_book(client)[0]
    exchange.inject("ip_ban_418", endpoint="GET /api/v3/openOrders", retry_after=2)
    with pytest.raises(ccxt.DDoSProtection):
        client.fetch_open_orders("BTC/USDT")
    seen = len(exchange.requests())
    other_worker = ccxt_for_account(account, cached=False)

    for call in (
        lambda c: rest_on_book(c),
        lambda c: c.cancel_order(order["id"], "BTC/USDT"),
        lambda c: c.fetch_order(order["id"], "BTC/USDT"),
    ):
        for worker in (client, other_worker):
            with pytest.raises(RateLimited, match="backing off"):
                call(worker)
    assert len(exchange.requests()) == seen, "nothing reached the venue during the ban"

    time.sleep(2.1)
    assert other_worker.fetch_order(order["id"], "BTC/USDT")["id"] == order["id"]


# (d) An order-count 429 stops new orders only.


def test_an_order_count_429_stops_new_orders_but_a_cancel_still_goes_out(account, exchange) -> None:
    client = ccxt_for_account(account)
    client.load_markets()
    order = rest_on_book(client)[0]
    # The venue now allows one order a minute (stricter than our budget knows).
    exchange.limits.order_limits = ((1, 60), (1000, 86_400))
    exchange.limits._orders.clear()
    rest_on_book(client)
    with pytest.raises(ccxt.DDoSProtection, match="-1015"):
        rest_on_book(client)
    orders_sent = exchange.requests().count("POST /api/v3/order")

    with pytest.raises(RateLimited, match="new orders"):
        rest_on_book(ccxt_for_account(account, cached=False))  # another worker: its markets load
    assert exchange.requests().count("POST /api/v3/order") == orders_sent
    assert client.cancel_order(order["id"], "BTC/USDT")["status"] == "canceled"
    assert exchange.requests()[-1] == "DELETE /api/v3/order"


# (e) The venue's headers correct the shared count.


def test_weight_another_program_spent_from_our_ip_lowers_our_budget(account, exchange) -> None:
    client = ccxt_for_account(account)
    client.load_markets()
    wait_for_next_window(margin=0.3)
    for _ in range(WEIGHT // 20 - 1):  # someone else on this IP: 180 of 200
        get(exchange, "/api/v3/exchangeInfo")
    bucket: Bucket = client.qt_bucket
    assert bucket.headroom() == 1.0  # we have not seen it yet

    client.fetch_time()  # the answer reports 181 used

    assert bucket.headroom() == pytest.approx((WEIGHT - 181) / WEIGHT, abs=0.005)
    with pytest.raises(RateLimited, match="no budget"):
        bucket.take(16, max_wait=0)  # 80 weight (openOrders without a symbol)


def wait_unless_room_in(seconds: int, needed: float = 3.0) -> None:
    if seconds - time.time() % seconds < needed:
        wait_for_next_window(seconds, margin=1.1)  # past the boundary guard


def test_the_binance_budget_is_6000_weight_a_minute_per_ip_in_ccxt_costs() -> None:
    profile = ccxt_adapter.PROFILES[("binance", "spot")]
    bucket = Bucket("binance", "1", profile.windows, weight_per_cost=profile.weight_per_cost)
    wait_unless_room_in(60)
    for _ in range(1500):
        bucket.take(0.8, max_wait=0)  # ccxt's cost of GET /api/v3/order: weight 4

    with pytest.raises(RateLimited, match="no budget"):
        bucket.take(0.2, max_wait=0)  # weight 6001
    with pytest.raises(RateLimited, match="no budget"):  # another account on this IP
        dataclasses.replace(bucket, account="2").take(0.2, max_wait=0)


def test_the_binance_budget_is_50_new_orders_in_10_seconds_per_account() -> None:
    profile = ccxt_adapter.PROFILES[("binance", "spot")]
    bucket = Bucket("binance", "1", profile.windows, weight_per_cost=profile.weight_per_cost)
    wait_unless_room_in(10)
    for _ in range(50):
        bucket.take(0.2, new_order=True, max_wait=0)

    with pytest.raises(RateLimited, match="no budget"):
        bucket.take(0.2, new_order=True, max_wait=0)
    bucket.take(0.2, max_wait=0)  # a cancel is no order
    dataclasses.replace(bucket, account="2").take(0.2, new_order=True, max_wait=0)


def test_the_budget_is_per_egress_ip_for_weight_and_per_account_for_orders() -> None:
    windows = (Window(10, 60, "weight", "ip", True), Window(1, 60, "order", "account", True))
    here = Bucket("binance", "1", windows, egress_ip="10.0.0.1")
    here.take(10, max_wait=0)
    with pytest.raises(RateLimited):
        Bucket("binance", "2", windows, egress_ip="10.0.0.1").take(1, max_wait=0)
    Bucket("binance", "2", windows, egress_ip="10.0.0.2").take(1, new_order=True, max_wait=0)
    with pytest.raises(RateLimited):
        Bucket("binance", "2", windows, egress_ip="10.0.0.3").take(0, new_order=True, max_wait=0)


# (f) Bybit and KuCoin: what is left corrects the count; their limit answers back off.


def bucket_for(code: str, account: str = "1") -> Bucket:
    """The profile's bucket, as _limit_requests builds it for each worker."""
    profile = PROFILES[(code, "spot")]
    return Bucket(
        profile.ccxt_id,
        account,
        profile.windows,
        weight_per_cost=profile.weight_per_cost,
        order_limit_codes=profile.order_limit_codes,
        backoff_codes=profile.backoff_codes,
        backoff_statuses=profile.backoff_statuses,
        egress_ip=f"10.9.{code}.1",
    )


def signed_answer(client: ccxt.Exchange, path: str, params: dict) -> tuple[int, dict, str]:
    req = client.sign(path, ["private"], "GET", params)
    request = urllib.request.Request(req["url"], None, req["headers"] or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, dict(reply.headers), reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def test_bybits_limit_status_header_corrects_the_pool_by_the_share_used() -> None:
    bucket = bucket_for("bybit")
    bucket.observe(200, {"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "2"}, '{"retCode": 0}')

    assert bucket.headroom() == pytest.approx(0.2, abs=0.01)


def test_kucoins_remaining_quota_header_corrects_the_pool() -> None:
    bucket = bucket_for("kucoin")
    headers = {"gw-ratelimit-limit": "4000", "gw-ratelimit-remaining": "1000"}
    bucket.observe(200, headers, '{"code": "200000"}')

    assert bucket.headroom() == pytest.approx(0.25, abs=0.01)


def test_bybits_10006_in_a_200_backs_every_worker_off_until_its_reset_timestamp() -> None:
    from venues.bybit import BybitLimits, BybitLoopback

    limits = BybitLimits(uid_limits={("/v5/order/realtime", ""): 1}, window_s=3)
    with BybitLoopback(api_key=KEY, api_secret=SECRET, rate_limits=limits) as venue:
        client = ccxt.bybit({"apiKey": KEY, "secret": SECRET})
        client.urls["api"] = rebase_urls(client.urls["api"], venue.url)
        signed_answer(client, "v5/order/realtime", {"category": "spot"})
        status, headers, body = signed_answer(client, "v5/order/realtime", {"category": "spot"})
    assert status == 200 and '"retCode": 10006' in body

    bucket_for("bybit").observe(status, headers, body)

    with pytest.raises(RateLimited, match="backing off") as refused:
        bucket_for("bybit", account="2").take(1, max_wait=0)  # another worker
    assert 1.5 < refused.value.retry_after <= 3.0


def test_bybits_403_ip_ban_backs_every_worker_off_for_10_minutes() -> None:
    bucket_for("bybit").observe(403, {}, "access too frequent")

    assert 590 < bucket_for("bybit", account="2").backoff_left() <= 600


def test_kucoins_429000_backs_every_worker_off_for_the_reset_countdown() -> None:
    from venues.kucoin import KucoinLimits, KucoinLoopback

    now = [1000.0]
    limits = KucoinLimits(quota=1, clock=lambda: now[0])
    with KucoinLoopback(
        api_key=KEY, api_secret=SECRET, api_passphrase="pp", rate_limits=limits
    ) as venue:
        client = ccxt.kucoin({"apiKey": KEY, "secret": SECRET, "password": "pp"})
        client.urls["api"] = rebase_urls(client.urls["api"], venue.url)
        signed_answer(client, "hf/orders/active", {"symbol": "BTC-USDT"})
        now[0] += 18
        status, headers, body = signed_answer(client, "hf/orders/active", {"symbol": "BTC-USDT"})
    assert (status, json.loads(body)["code"]) == (429, "429000")

    bucket_for("kucoin").observe(status, headers, body)

    assert 11 < bucket_for("kucoin", account="2").backoff_left() <= 12


@pytest.mark.parametrize(("code", "seconds"), [("200002", 10), ("429000", 30)])
def test_a_kucoin_limit_without_a_countdown_backs_off_as_long_as_the_docs_say(
    code, seconds
) -> None:
    bucket_for("kucoin").observe(200 if code == "200002" else 429, {}, json.dumps({"code": code}))

    assert seconds - 1 < bucket_for("kucoin", account="2").backoff_left() <= seconds
