"""The real ccxt binance client trading against the loopback exchange: orders, errors, faults."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import ccxt
import pytest
from django.conf import settings

from marketdata.sources import rebase_urls
from quantum.tests.servers import free_port
from venues.binance import LoopbackExchange

KEY = "alice-api-key"
SECRET = "alice-api-secret"
REPO_ROOT = Path(settings.BASE_DIR)


@pytest.fixture
def exchange(data_dir: Path) -> Iterator[LoopbackExchange]:
    with LoopbackExchange(
        port=0,
        seed=1,
        data_dir=data_dir,
        api_key=KEY,
        api_secret=SECRET,
        balances={"USDT": "100000", "BTC": "1"},
    ) as ex:
        ex.set_price("BTCUSDT", "50000")
        yield ex
    assert not ex.running


def binance(
    exchange: LoopbackExchange, *, secret: str = SECRET, timeout_ms: int = 10_000
) -> ccxt.binance:
    """ccxt's binance client as the platform configures it, pointed at the loopback."""
    client = ccxt.binance(
        {
            "apiKey": KEY,
            "secret": secret,
            "timeout": timeout_ms,
            # The client-side throttle only slows the tests down; the server has no limit.
            "enableRateLimit": False,
            "options": {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}},
        }
    )
    client.urls["api"] = rebase_urls(client.urls["api"], exchange.url)
    return client


@pytest.fixture
def client(exchange: LoopbackExchange) -> ccxt.binance:
    client = binance(exchange)
    client.load_markets()
    return client


def http(
    exchange: LoopbackExchange,
    method: str,
    path: str,
    params: dict[str, object] | None = None,
    *,
    sign: bool = False,
    key: str = KEY,
    secret: str = SECRET,
    timestamp: int | None = None,
    payload: dict[str, object] | None = None,
) -> tuple[int, object, dict[str, str]]:
    """A plain HTTP request (signed as Binance wants when `sign`): status, JSON, headers."""
    query = urlencode(params or {})
    headers = {}
    if sign:
        stamp = int(time.time() * 1000) if timestamp is None else timestamp
        query = "&".join(filter(None, [query, f"timestamp={stamp}"]))
        signature = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
        query += f"&signature={signature}"
        headers["X-MBX-APIKEY"] = key
    data = json.dumps(payload).encode() if payload is not None else None
    url = f"{exchange.url}{path}" + (f"?{query}" if query else "")
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null"), dict(response.headers)
    except urllib.error.HTTPError as error:
        body = error.read()
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = body.decode()
        return error.code, parsed, dict(error.headers)


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def by_client_id(exchange: LoopbackExchange, client_order_id: str) -> list[dict[str, object]]:
    return [o for o in exchange.orders() if o["clientOrderId"] == client_order_id]


# Market data.


def test_it_answers_server_time_and_lists_the_spot_markets_of_the_data_dir(
    exchange: LoopbackExchange,
) -> None:
    client = binance(exchange)
    assert abs(client.fetch_time() - time.time() * 1000) < 5000
    markets = client.load_markets()
    assert {"BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT"} <= set(markets)
    btc = markets["BTC/USDT"]
    assert btc["spot"] and btc["precision"]["amount"] == 0.00001
    assert btc["precision"]["price"] == 0.01
    assert btc["limits"]["cost"]["min"] == 5
    # Spot only: no futures exchangeInfo was asked for.
    assert not [r for r in exchange.requests() if "fapi" in r or "dapi" in r]


def test_it_serves_the_real_candles_of_the_csv_as_klines(
    exchange: LoopbackExchange, client: ccxt.binance, data_dir: Path
) -> None:
    since = datetime(2024, 12, 1, tzinfo=UTC)
    candles = client.fetch_ohlcv("BTC/USDT", "1h", since=ms(since), limit=3)
    with (data_dir / "binance_BTCUSDT_1h.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["timestamp"] >= "2024-12-01T00:00:00Z"]
    expected = [
        [ms(datetime.fromisoformat(r["timestamp"]))]
        + [float(r[k]) for k in ("open", "high", "low", "close", "volume")]
        for r in rows[:3]
    ]
    assert candles == expected


def test_the_reference_price_defaults_to_the_last_close(data_dir: Path) -> None:
    with (data_dir / "binance_ETHUSDT_1h.csv").open() as handle:
        last_close = Decimal(list(csv.DictReader(handle))[-1]["close"])
    with LoopbackExchange(data_dir=data_dir) as ex:
        assert ex.price("ETH/USDT") == last_close


# Orders.


def test_a_market_buy_fills_at_once_at_the_reference_price_moved_by_the_slippage(
    exchange: LoopbackExchange, client: ccxt.binance
) -> None:
    exchange.configure(slippage_bps="10", fee_rate="0.001")
    order = client.create_order(
        "BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "alice-buy-1"}
    )
    assert order["clientOrderId"] == "alice-buy-1"
    assert order["status"] == "closed"
    assert order["filled"] == 0.01
    assert order["average"] == 50050.0  # 50000 moved 10 bps against the buyer
    [trade] = order["trades"]
    assert trade["fee"] == {"currency": "USDT", "cost": 0.5005}
    balance = client.fetch_balance()
    assert balance["USDT"]["free"] == pytest.approx(100000 - 500.5 - 0.5005)
    assert balance["BTC"]["free"] == pytest.approx(1.01)


def test_a_market_sell_fills_below_the_reference_price(
    exchange: LoopbackExchange, client: ccxt.binance
) -> None:
    exchange.configure(slippage_bps="10")
    order = client.create_order("BTC/USDT", "market", "sell", 0.1)
    assert order["status"] == "closed"
    assert order["average"] == 49950.0
    assert client.fetch_balance()["USDT"]["free"] == pytest.approx(100000 + 4995 - 4.995)


def test_a_market_buy_by_cost_buys_what_the_quote_amount_pays_for(
    client: ccxt.binance,
) -> None:
    # ccxt sends quoteOrderQty for this; the exchange rounds the quantity down to the step.
    order = client.create_market_buy_order_with_cost("BTC/USDT", 1234)
    assert order["info"]["origQuoteOrderQty"] == "1234.00000000"
    assert (order["filled"], order["cost"]) == (0.02468, 1234.0)


def test_a_limit_order_rests_until_the_reference_price_crosses_it(
    exchange: LoopbackExchange, client: ccxt.binance
) -> None:
    placed = client.create_order(
        "BTC/USDT", "limit", "buy", 0.01, 49000, params={"clientOrderId": "alice-limit-1"}
    )
    assert placed["status"] == "open"
    assert [o["id"] for o in client.fetch_open_orders("BTC/USDT")] == [placed["id"]]
    assert client.fetch_balance()["USDT"]["used"] == pytest.approx(490 * 1.001)

    assert exchange.set_price("BTCUSDT", "49500") == []
    fetched = client.fetch_order(None, "BTC/USDT", params={"clientOrderId": "alice-limit-1"})
    assert fetched["id"] == placed["id"] and fetched["status"] == "open"

    [fill] = exchange.set_price("BTC/USDT", "48900")
    assert fill["price"] == "49000.00000000" and fill["isMaker"] is True
    assert client.fetch_order(placed["id"], "BTC/USDT")["status"] == "closed"
    [trade] = client.fetch_my_trades("BTC/USDT")
    assert (trade["order"], trade["price"], trade["takerOrMaker"]) == (placed["id"], 49000, "maker")
    assert client.fetch_open_orders("BTC/USDT") == []
    assert client.fetch_balance()["USDT"]["used"] == 0


def test_a_marketable_limit_order_fills_at_once_at_the_better_price(
    client: ccxt.binance,
) -> None:
    order = client.create_order("BTC/USDT", "limit", "buy", 0.01, 51000)
    assert order["status"] == "closed"
    assert order["average"] == 50000
    [trade] = client.fetch_my_trades("BTC/USDT")
    assert (trade["price"], trade["takerOrMaker"]) == (50000, "taker")


def test_cancelling_an_open_order_releases_its_locked_funds(client: ccxt.binance) -> None:
    placed = client.create_order("BTC/USDT", "limit", "sell", 0.5, 60000)
    assert client.fetch_balance()["BTC"]["used"] == 0.5

    cancelled = client.cancel_order(placed["id"], "BTC/USDT")

    assert cancelled["status"] == "canceled"
    assert client.fetch_balance()["BTC"] == {"free": 1.0, "used": 0.0, "total": 1.0}
    assert client.fetch_open_orders("BTC/USDT") == []
    with pytest.raises(ccxt.OrderNotFound, match="-2011"):
        client.cancel_order(placed["id"], "BTC/USDT")


def test_a_client_order_id_is_refused_only_while_its_order_is_open_as_binance_documents(
    exchange: LoopbackExchange, client: ccxt.binance
) -> None:
    # binance-spot-api-docs rest-api.md "New order (TRADE)": newClientOrderId is "A unique
    # id among open orders ... Orders with the same newClientOrderID can be accepted only
    # when the previous one is filled"; errors.md -2010 "Duplicate order sent.".
    exchange.set_price("BTCUSDT", "50000")
    client.create_order("BTC/USDT", "limit", "buy", 0.01, 40000, params={"clientOrderId": "a"})
    with pytest.raises(ccxt.InvalidOrder) as rejected:
        client.create_order("BTC/USDT", "limit", "buy", 0.01, 41000, params={"clientOrderId": "a"})
    assert '{"code": -2010, "msg": "Duplicate order sent."}' in str(rejected.value)
    assert len(by_client_id(exchange, "a")) == 1

    client.cancel_order(None, "BTC/USDT", params={"clientOrderId": "a"})
    again = client.create_order(
        "BTC/USDT", "limit", "buy", 0.01, 42000, params={"clientOrderId": "a"}
    )
    assert client.fetch_order(None, "BTC/USDT", {"clientOrderId": "a"})["id"] == again["id"]


def test_a_filled_orders_client_id_is_accepted_again_so_a_blind_resend_would_trade_twice(
    exchange: LoopbackExchange, client: ccxt.binance
) -> None:
    # Why the platform never resends an order that left NEW: Binance would take it.
    client.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "qt-dup-1"})
    client.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "qt-dup-1"})

    assert len(by_client_id(exchange, "qt-dup-1")) == 2
    assert len(exchange.trades()) == 2


def test_an_order_beyond_the_balance_raises_insufficient_funds(
    exchange: LoopbackExchange, client: ccxt.binance
) -> None:
    with pytest.raises(ccxt.InsufficientFunds):
        client.create_order("BTC/USDT", "market", "buy", 3)
    with pytest.raises(ccxt.InsufficientFunds):
        client.create_order("BTC/USDT", "limit", "sell", 2, 60000)
    assert exchange.orders() == []


def test_an_order_below_the_minimum_notional_is_rejected(client: ccxt.binance) -> None:
    with pytest.raises(ccxt.BadRequest, match="Filter failure: NOTIONAL"):
        client.create_order("BTC/USDT", "market", "buy", 0.00001)


def test_unknown_orders_raise_order_not_found(client: ccxt.binance) -> None:
    with pytest.raises(ccxt.OrderNotFound, match="-2013"):
        client.fetch_order("424242", "BTC/USDT")
    with pytest.raises(ccxt.OrderNotFound, match="-2013"):
        client.fetch_order(None, "BTC/USDT", params={"clientOrderId": "never-sent"})
    with pytest.raises(ccxt.OrderNotFound, match="-2011"):
        client.cancel_order("424242", "BTC/USDT")


def test_concurrent_orders_get_distinct_ids_and_balances_add_up(
    exchange: LoopbackExchange,
) -> None:
    clients = [binance(exchange) for _ in range(4)]
    for c in clients:
        c.load_markets()
    errors: list[BaseException] = []

    def trade(c: ccxt.binance, n: int) -> None:
        try:
            for i in range(5):
                c.create_order(
                    "BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": f"t{n}-{i}"}
                )
        except BaseException as exc:  # surfaced below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=trade, args=(c, n)) for n, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    trades = exchange.trades()
    assert len({t["id"] for t in trades}) == len({o["orderId"] for o in exchange.orders()}) == 20
    spent = sum(Decimal(str(t["quoteQty"])) + Decimal(str(t["commission"])) for t in trades)
    assert Decimal(exchange.balances()["USDT"]["free"]) == Decimal(100000) - spent
    assert Decimal(exchange.balances()["BTC"]["free"]) == Decimal("1.2")


# Authentication.


def test_a_bad_signature_is_rejected_with_binance_error_1022(exchange: LoopbackExchange) -> None:
    with pytest.raises(ccxt.AuthenticationError, match="Signature for this request is not valid"):
        binance(exchange, secret="mallory-guess").fetch_balance()

    status, body, _ = http(exchange, "GET", "/api/v3/account", sign=True, secret="mallory-guess")
    assert (status, body) == (
        400,
        {"code": -1022, "msg": "Signature for this request is not valid."},
    )


def test_an_unknown_api_key_is_rejected_with_401(exchange: LoopbackExchange) -> None:
    status, body, _ = http(exchange, "GET", "/api/v3/account", sign=True, key="mallory-key")
    assert (status, body["code"]) == (401, -2015)
    status, body, _ = http(exchange, "GET", "/api/v3/account", {"timestamp": 1})
    assert (status, body["code"]) == (401, -2014)


def test_a_request_outside_its_recv_window_is_rejected(exchange: LoopbackExchange) -> None:
    stale = int(time.time() * 1000) - 60_000
    status, body, _ = http(exchange, "GET", "/api/v3/account", sign=True, timestamp=stale)
    assert (status, body["code"]) == (400, -1021)
    status, body, _ = http(exchange, "GET", "/api/v3/account", sign=True)
    assert status == 200 and body["accountType"] == "SPOT"


# Faults.


def test_accept_then_timeout_leaves_the_order_on_the_exchange_for_fetch_by_client_id(
    exchange: LoopbackExchange,
) -> None:
    client = binance(exchange, timeout_ms=300)
    client.load_markets()
    exchange.inject("accept_then_timeout", delay_s=2.0)

    with pytest.raises(ccxt.RequestTimeout):
        client.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "qt-t1"})

    found = client.fetch_order(None, "BTC/USDT", params={"clientOrderId": "qt-t1"})
    assert found["status"] == "closed" and found["filled"] == 0.01
    assert exchange.faults_injected == {"accept_then_timeout": 1}


def test_accept_then_drop_is_a_network_error_with_the_order_created(
    exchange: LoopbackExchange, client: ccxt.binance
) -> None:
    exchange.inject("accept_then_timeout", mode="drop")

    with pytest.raises(ccxt.NetworkError) as raised:
        client.create_order("BTC/USDT", "limit", "buy", 0.01, 40000, params={"clientOrderId": "d1"})

    assert not isinstance(raised.value, ccxt.RequestTimeout)
    assert client.fetch_order(None, "BTC/USDT", params={"clientOrderId": "d1"})["status"] == "open"


@pytest.mark.parametrize("execute", [False, True])
def test_a_5xx_is_exchange_not_available_with_or_without_the_order_created(
    exchange: LoopbackExchange, client: ccxt.binance, execute: bool
) -> None:
    exchange.inject("http_5xx", status=503, execute=execute)

    with pytest.raises(ccxt.ExchangeNotAvailable, match="503"):
        client.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "x1"})

    assert len(by_client_id(exchange, "x1")) == (1 if execute else 0)
    if not execute:
        with pytest.raises(ccxt.OrderNotFound):
            client.fetch_order(None, "BTC/USDT", params={"clientOrderId": "x1"})


def test_a_429_is_ddos_protection_with_retry_after_and_nothing_done(
    exchange: LoopbackExchange, client: ccxt.binance
) -> None:
    exchange.inject("rate_limit_429", endpoint="POST /api/v3/order", retry_after=3)

    with pytest.raises(ccxt.DDoSProtection, match="429"):
        client.create_order("BTC/USDT", "market", "buy", 0.01)
    assert exchange.orders() == []

    exchange.inject("rate_limit_429", endpoint="/api/v3/time", retry_after=3)
    status, body, headers = http(exchange, "GET", "/api/v3/time")
    assert (status, body["code"], headers["Retry-After"]) == (429, -1003, "3")
    assert http(exchange, "GET", "/api/v3/time")[0] == 200


def test_a_418_bans_every_request_until_retry_after_has_passed(
    exchange: LoopbackExchange, client: ccxt.binance
) -> None:
    exchange.inject("ip_ban_418", endpoint="GET /api/v3/account", retry_after=0.3)

    with pytest.raises(ccxt.DDoSProtection, match="418"):
        client.fetch_balance()
    status, body, headers = http(exchange, "GET", "/api/v3/time")
    assert (status, body["code"], headers["Retry-After"]) == (418, -1003, "1")

    time.sleep(0.35)
    assert client.fetch_balance()["USDT"]["free"] == 100000
    assert exchange.faults_injected == {"ip_ban_418": 2}


def test_a_dropped_connection_is_a_network_error_and_no_order(
    exchange: LoopbackExchange, client: ccxt.binance
) -> None:
    exchange.inject("drop_connection", endpoint="POST /api/v3/order")

    with pytest.raises(ccxt.NetworkError):
        client.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "n1"})

    assert exchange.orders() == []


def test_a_delayed_fill_is_accepted_as_new_and_fills_later(
    exchange: LoopbackExchange, client: ccxt.binance
) -> None:
    exchange.inject("delay_fill", delay_s=None)
    exchange.inject("delay_fill", delay_s=0.2)

    held = client.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "h1"})
    timed = client.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "h2"})

    assert (held["status"], held["filled"]) == ("open", 0)
    assert (timed["status"], timed["filled"]) == ("open", 0)
    time.sleep(0.25)
    assert client.fetch_order(timed["id"], "BTC/USDT")["status"] == "closed"
    assert client.fetch_order(held["id"], "BTC/USDT")["status"] == "open"
    [fill] = exchange.fill_pending()
    assert fill["orderId"] == int(held["id"])
    assert client.fetch_order(held["id"], "BTC/USDT")["status"] == "closed"


def test_a_partial_fill_comes_in_several_trades_with_distinct_ids(
    exchange: LoopbackExchange, client: ccxt.binance
) -> None:
    exchange.inject("partial_fill", parts=3)

    order = client.create_order("BTC/USDT", "market", "sell", 0.03, params={"clientOrderId": "p1"})

    assert order["status"] == "closed"
    trades = client.fetch_my_trades("BTC/USDT")
    assert len({t["id"] for t in trades}) == 3
    assert {t["order"] for t in trades} == {order["id"]}
    assert sum(Decimal(str(t["amount"])) for t in trades) == Decimal("0.03")


def test_a_partial_fill_with_an_interval_leaves_the_order_partially_filled_meanwhile(
    exchange: LoopbackExchange, client: ccxt.binance
) -> None:
    exchange.inject("partial_fill", parts=2, interval_s=60)
    placed = client.create_order("BTC/USDT", "limit", "buy", 0.02, 49000)

    exchange.set_price("BTCUSDT", "48000")

    half = client.fetch_order(placed["id"], "BTC/USDT")
    assert (half["status"], half["filled"], half["info"]["status"]) == (
        "open",
        0.01,
        "PARTIALLY_FILLED",
    )
    exchange.fill_pending()
    assert client.fetch_order(placed["id"], "BTC/USDT")["filled"] == 0.02
    assert [t["price"] for t in client.fetch_my_trades("BTC/USDT")] == [49000, 49000]


def test_a_counted_fault_hits_only_the_next_matching_requests(
    exchange: LoopbackExchange, client: ccxt.binance
) -> None:
    exchange.inject("http_5xx", endpoint="GET /api/v3/time", count=2)

    for _ in range(2):
        with pytest.raises(ccxt.ExchangeNotAvailable):
            client.fetch_time()
    client.fetch_balance()  # another endpoint: untouched
    assert client.fetch_time() > 0
    assert exchange.faults_injected == {"http_5xx": 2}


def test_probabilistic_faults_repeat_exactly_with_the_same_seed(data_dir: Path) -> None:
    def pattern(seed: int) -> list[int]:
        with LoopbackExchange(data_dir=data_dir, seed=seed) as ex:
            ex.inject("http_5xx", endpoint="/api/v3/time", probability=0.5)
            return [http(ex, "GET", "/api/v3/time")[0] for _ in range(30)]

    first = pattern(7)
    assert first == pattern(7)
    assert {200, 503} == set(first)
    assert first != pattern(8)


# Control endpoints and the command line.


def test_another_process_steers_faults_and_reads_the_ledger_over_http(
    exchange: LoopbackExchange, client: ccxt.binance
) -> None:
    fault = {"kind": "http_5xx", "count": 1, "params": {"execute": True}}
    status, body, _ = http(exchange, "POST", "/_control/faults", payload={"faults": [fault]})
    assert status == 200 and body["rules"][0]["params"]["execute"] is True

    with pytest.raises(ccxt.ExchangeNotAvailable):
        client.create_order("BTC/USDT", "limit", "buy", 0.01, 45000, params={"clientOrderId": "c1"})
    status, body, _ = http(
        exchange, "POST", "/_control/price", payload={"symbol": "BTCUSDT", "price": "44000"}
    )
    assert status == 200 and len(body["trades"]) == 1

    status, state, _ = http(exchange, "GET", "/_control/state")
    assert status == 200
    [order] = state["orders"]
    assert (order["clientOrderId"], order["status"]) == ("c1", "FILLED")
    assert [t["orderId"] for t in state["trades"]] == [order["orderId"]]
    assert state["faults_injected"] == {"http_5xx": 1}
    assert state["balances"]["BTC"] == {"free": "1.01000000", "locked": "0.00000000"}


def test_the_control_endpoint_refuses_an_unknown_fault(exchange: LoopbackExchange) -> None:
    status, body, _ = http(exchange, "POST", "/_control/faults", payload={"kind": "meteor"})
    assert status == 400 and "unknown fault kind" in body["error"]


def _without_django(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in ("DJANGO_SETTINGS_MODULE", "QT_DATA_DIR")}


# Websockets: the server's pings, its pong timeout, and what the listenKey left behind.


async def _outlive(url: str, *, answer_pings: bool, seconds: float) -> tuple[bool, int | None]:
    """(whether the socket was still open after `seconds`, the close code if it was closed)."""
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, autoping=answer_pings) as ws,
    ):
        try:
            while True:  # pings are answered by aiohttp (autoping) or left unanswered
                await asyncio.wait_for(ws.receive(), seconds)
                if ws.closed:
                    return False, ws.close_code
        except TimeoutError:
            return True, None


def test_the_server_pings_and_closes_a_websocket_that_never_answers_with_a_pong(
    data_dir: Path,
) -> None:
    with LoopbackExchange(data_dir=data_dir, ws_ping_interval_s=0.2, ws_pong_timeout_s=0.6) as ex:
        url = f"{ex.ws_url}/ws-api/v3"
        assert asyncio.run(_outlive(url, answer_pings=True, seconds=2.0)) == (True, None)
        assert asyncio.run(_outlive(url, answer_pings=False, seconds=5.0)) == (False, 1008)


def test_a_connection_is_cut_when_its_lifetime_is_over(data_dir: Path) -> None:
    with LoopbackExchange(data_dir=data_dir, ws_max_lifetime_s=0.5) as ex:
        assert asyncio.run(_outlive(f"{ex.ws_url}/ws", answer_pings=True, seconds=5.0)) == (
            False,
            1001,
        )
        assert ex.ws.counters["expired"] == 1


def test_the_listen_key_websocket_path_is_gone(exchange: LoopbackExchange) -> None:
    async def upgrade() -> int:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(f"{exchange.ws_url}/ws/{'ab' * 32}"):
                    return 101
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status

    assert asyncio.run(upgrade()) == 404


@contextmanager
def sandbox(module: str, *options: str) -> Iterator[str]:
    """`python -m <module> --port P` in a process of its own; yields its URL, then stops it."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "--port", str(port), *options],
        cwd=REPO_ROOT,
        env=_without_django(dict(os.environ)),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert f"http://127.0.0.1:{port}" in proc.stdout.readline()
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


@pytest.mark.parametrize("venue", ["bybit", "kucoin", "coinbase", "binance_futures"])
def test_every_venue_serves_as_a_sandbox_from_the_command_line(venue: str) -> None:
    with sandbox(f"venues.{venue}") as url, pytest.raises(urllib.error.HTTPError) as answered:
        urllib.request.urlopen(f"{url}/no-such-endpoint", timeout=10)
    assert answered.value.headers["Server"] == f"loopback-{venue.replace('_', '-')}/1"


def test_the_command_line_serves_binance_time_until_terminated(data_dir: Path) -> None:
    with (
        sandbox("venues.binance", "--seed", "3", "--data-dir", str(data_dir)) as url,
        urllib.request.urlopen(f"{url}/api/v3/time", timeout=10) as reply,
    ):
        assert abs(json.load(reply)["serverTime"] - time.time() * 1000) < 5000


def test_every_venue_module_imports_without_django_or_the_platform_and_finds_the_data() -> None:
    script = (
        "import sys, pkgutil, importlib, venues;"
        "names = [m.name for m in pkgutil.iter_modules(venues.__path__)];"
        "[importlib.import_module('venues.' + name) for name in names];"
        "apps = ('django', 'quantum', 'marketdata', 'trading', 'risk', 'models_registry');"
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in apps);"
        "assert not leaked, f'venues imported {leaked}';"
        "print(venues.data.default_data_dir())"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=_without_django(dict(os.environ)),
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(done.stdout.strip()) == REPO_ROOT.parent / "shared" / "data"
