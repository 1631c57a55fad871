"""User streams against the loopback venues' websocket sides (Binance, Bybit, KuCoin), with
the real ccxt.pro.

The stream runs in its own thread and database connection as it does in production, so
these tests commit (transactional database). No Celery beat runs here: the REST resolver
only acts where a test calls it.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import aiohttp
import pytest

from marketdata.models import Market
from marketdata.services.sync import market_register
from quantum.bootstrap import trading_defaults_ensure
from trading.adapters.ccxt_adapter import CcxtAdapter, _clients
from trading.models import ExchangeAccount, Fill, Order, Position, Signal
from trading.services.accounts import account_keys_set
from trading.services.execution import signal_act
from trading.services.orders import order_intent_create
from trading.services.reconcile import account_reconcile
from trading.services.streams import StreamRunner, stream_trade_apply, streams_health
from trading.services.submission import order_submit, orders_resolve_in_flight, snapshot_apply
from trading.tests.factories import SignalFactory, gated_model
from trading.tests.venues import buy, finest_market, reconciled_account
from venues.binance import LoopbackExchange
from venues.binance_futures import BinanceFuturesLoopback
from venues.binance_futures_ws import ROUTED_PATH
from venues.bybit import BybitLoopback
from venues.kucoin import KucoinLoopback
from venues.ws import MAX_LIFETIME_S

pytestmark = pytest.mark.django_db(transaction=True)

S = Order.Status
KEY = "qt-stream-api-key-5c2e"
SECRET = "qt-stream-secret-do-not-leak-81d0"
REST_LOOKUPS = ("GET /api/v3/order", "GET /api/v3/myTrades", "GET /api/v3/openOrders")


def wait_for(check: Callable[[], object], timeout: float = 8.0, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or check}")


@pytest.fixture
def exchange(request: pytest.FixtureRequest) -> Iterator[LoopbackExchange]:
    # A test may shorten Binance's 24-hour connection cut-off (indirect parametrisation).
    lifetime = getattr(request, "param", MAX_LIFETIME_S)
    with LoopbackExchange(
        api_key=KEY, api_secret=SECRET, symbols=["BTCUSDT"], ws_max_lifetime_s=lifetime
    ) as ex:
        ex.set_price("BTCUSDT", "40000")
        yield ex


@pytest.fixture
def account(exchange, settings, market: Market) -> Iterator[ExchangeAccount]:
    settings.QT_EXCHANGE_TIMEOUT_MS = 1500
    settings.QT_STREAM_BACKOFF_MIN_S = 0.05
    settings.QT_STREAM_BACKOFF_MAX_S = 0.3
    settings.QT_STREAM_FALLBACK_AFTER = 3
    _clients.clear()
    trading_defaults_ensure()
    account = ExchangeAccount.objects.create(
        name="loopback-streams",
        exchange=market.exchange,
        mode=ExchangeAccount.Mode.TESTNET,
        cash=Decimal("100000"),
        starting_cash=Decimal("100000"),
        api_url_override=exchange.url,
    )
    account_keys_set(account=account, api_key=KEY, api_secret=SECRET, actor="alice")
    assert account_reconcile(account=account).ok
    account.refresh_from_db()
    yield account
    _clients.clear()


@pytest.fixture
def streams(account: ExchangeAccount) -> Iterator[StreamRunner]:
    runner = StreamRunner(account_ids=[account.pk]).start()
    yield runner
    runner.stop()


def connected(runner: StreamRunner, account: ExchangeAccount, snapshots: int = 1) -> None:
    def ready() -> bool:
        health = runner.health(account.pk)
        return bool(health and health.state == "connected" and health.snapshots >= snapshots)

    try:
        wait_for(ready, what=f"stream connected with {snapshots} snapshot(s)")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; health: {runner.health(account.pk)}") from None


def market_order_left_open(
    exchange: LoopbackExchange, account: ExchangeAccount, market: Market
) -> Order:
    """A BUY the exchange accepts but fills only on fill_pending() (delay_fill fault)."""
    exchange.inject("delay_fill", count=1, delay_s=None)
    signal = SignalFactory(
        market=market, action=Signal.Action.BUY, price=Decimal("40000"), model_version=gated_model()
    )
    order = signal_act(account=account, signal=signal)
    assert order is not None and order.status == S.ACCEPTED and order.filled_quantity == 0
    return order


def rest_lookups_since(exchange: LoopbackExchange, start: int) -> list[str]:
    return [r for r in exchange.requests()[start:] if r in REST_LOOKUPS]


def test_a_fill_pushed_on_the_user_stream_settles_the_order_without_polling(
    streams, exchange, account, market
) -> None:
    connected(streams, account)
    order = market_order_left_open(exchange, account, market)
    seen = len(exchange.requests())

    trades = exchange.fill_pending()

    order = wait_for(
        lambda: Order.objects.filter(pk=order.pk, status=S.FILLED).first(), what="filled order"
    )
    assert isinstance(order, Order)
    fill = Fill.objects.get(order=order)
    assert fill.trade_id == str(trades[0]["id"])
    assert fill.price == Decimal(trades[0]["price"])
    assert fill.fee == Decimal(trades[0]["commission"])
    assert Position.objects.get(account=account, market=market).quantity == order.quantity
    assert rest_lookups_since(exchange, seen) == [], "settled from the stream, not over REST"
    assert order.events.filter(to_status=S.FILLED, cause="fill").exists()
    recorded = wait_for(
        lambda: (h := streams_health([account.pk]).get(account.pk)) and h["events"] >= 2 and h,
        what="stream health recorded",
    )
    assert isinstance(recorded, dict)
    assert recorded["state"] == "connected" and recorded["last_event_at"]


def test_a_dropped_stream_reconnects_and_its_snapshot_finds_the_fill_it_missed(
    streams, exchange, account, market
) -> None:
    connected(streams, account)
    order = market_order_left_open(exchange, account, market)
    exchange.ws.refuse = True  # keep it down while the fill happens
    assert exchange.ws.drop_all() >= 1
    wait_for(lambda: exchange.ws.counters["refused"] >= 1, what="a refused reconnect")
    assert exchange.ws.subscribers()["user"] == 0

    exchange.fill_pending()  # nobody listening: only a REST snapshot can learn of it
    time.sleep(0.2)
    assert Order.objects.get(pk=order.pk).status == S.ACCEPTED
    seen = len(exchange.requests())
    exchange.ws.refuse = False

    connected(streams, account, snapshots=2)
    order.refresh_from_db()
    assert order.status == S.FILLED
    assert Fill.objects.filter(order=order).count() == 1
    assert "GET /api/v3/order" in rest_lookups_since(exchange, seen), "the fresh snapshot"
    health = streams.health(account.pk)
    assert health is not None and health.reconnects >= 1 and health.last_snapshot_ok


def test_a_trade_heard_on_the_stream_and_over_rest_is_recorded_once(
    streams, exchange, account, market
) -> None:
    connected(streams, account)
    signal = SignalFactory(
        market=market, action=Signal.Action.BUY, price=Decimal("40000"), model_version=gated_model()
    )
    # The REST ack carries the fill and the stream pushes the same trade: a race by design.
    order = signal_act(account=account, signal=signal)
    assert order is not None
    health = streams.health(account.pk)
    wait_for(lambda: health and health.events >= 2, what="the stream's events")
    # And REST once more, applying the exchange's view of the order after the stream's.
    snapshot = CcxtAdapter(account).fetch(order)
    assert snapshot is not None and len(snapshot.fills) == 1
    snapshot_apply(order=order, snapshot=snapshot)

    order.refresh_from_db()
    assert order.status == S.FILLED and order.filled_quantity == order.quantity
    assert Fill.objects.filter(order=order).count() == 1
    assert Position.objects.get(account=account, market=market).quantity == order.quantity
    assert len(exchange.trades()) == 1


@pytest.mark.parametrize("exchange", [3.0], indirect=True, ids=["connections-cut-after-3s"])
def test_the_venues_connection_cut_off_is_followed_by_a_reconnect_a_snapshot_and_fills_settle(
    streams, exchange, account, market
) -> None:
    connected(streams, account)
    seen = len(exchange.requests())

    wait_for(lambda: exchange.ws.counters["expired"] >= 1, timeout=10, what="the cut-off")

    connected(streams, account, snapshots=2)
    assert "GET /api/v3/account" in exchange.requests()[seen:], "a fresh REST snapshot"
    health = streams.health(account.pk)
    assert health is not None and health.reconnects >= 1 and health.last_snapshot_ok
    order = market_order_left_open(exchange, account, market)
    (trade,) = exchange.fill_pending()
    order = filled(order)
    assert Fill.objects.get(order=order).trade_id == str(trade["id"])


def test_the_listen_key_endpoints_are_gone_and_the_platform_streams_on_the_websocket_api(
    streams, exchange, account
) -> None:
    connected(streams, account)
    assert not [r for r in exchange.requests() if "userDataStream" in r]
    (subscribe,) = [
        m
        for m in exchange.ws.received_log
        if m.get("method") == "userDataStream.subscribe.signature"
    ]
    assert subscribe["params"]["apiKey"] == KEY

    # CHANGELOG 2026-01-21: no longer available from 2026-02-20; now any unknown path's 404.
    for method in ("POST", "PUT", "DELETE"):
        removed = urllib.request.Request(
            f"{exchange.url}/api/v3/userDataStream",
            data=b"",
            method=method,
            headers={"X-MBX-APIKEY": KEY},
        )
        with pytest.raises(urllib.error.HTTPError) as answered:
            urllib.request.urlopen(removed, timeout=10)
        assert answered.value.code == 404


def test_a_refused_stream_falls_back_to_polling_which_still_settles(
    exchange, account, market
) -> None:
    exchange.ws.refuse = True
    runner = StreamRunner(account_ids=[account.pk]).start()
    try:
        wait_for(
            lambda: (h := runner.health(account.pk)) and h.state == "polling",
            what="fallback to polling",
        )
        order = market_order_left_open(exchange, account, market)
        exchange.fill_pending()

        orders_resolve_in_flight(older_than=timedelta(0), account=account)  # the 5 s poller

        order.refresh_from_db()
        assert order.status == S.FILLED
        assert Fill.objects.filter(order=order).count() == 1
        health = runner.health(account.pk)
        assert health is not None and health.snapshots == 0 and "503" in health.last_error
        assert exchange.ws.counters["refused"] >= 3
    finally:
        runner.stop()


# --- Bybit and KuCoin: their own private streams, their own words for the client id -------

COID = "qt-stream-coid-0001"
BYBIT_LOOKUPS = ("/v5/order/realtime", "/v5/execution/list")
PASSPHRASE = "qt-stream-passphrase-9b1e"


def stream_settings(settings) -> None:  # type: ignore[no-untyped-def]
    settings.QT_STREAM_BACKOFF_MIN_S = 0.05
    settings.QT_STREAM_BACKOFF_MAX_S = 0.3
    settings.QT_STREAM_FALLBACK_AFTER = 3


def venue_account(code: str, url: str, **keys: str) -> ExchangeAccount:
    account = ExchangeAccount.objects.create(
        name=f"{code}-streams",
        exchange=market_register(exchange_code=code, symbol="BTC/USDT").exchange,
        mode=ExchangeAccount.Mode.TESTNET,
        market_type="spot",
        cash=Decimal("100000"),
        starting_cash=Decimal("100000"),
        api_url_override=url,
    )
    account_keys_set(account=account, api_key=KEY, api_secret=SECRET, actor="alice", **keys)
    return account


@pytest.fixture
def bybit() -> Iterator[BybitLoopback]:
    # One unified wallet: 60000 USDT in spot plus 40000 USDT of margin.
    with BybitLoopback(
        api_key=KEY, api_secret=SECRET, balances={"USDT": "60000"}, margin="40000"
    ) as ex:
        ex.set_price("BTCUSDT", "40000")
        yield ex


@pytest.fixture
def bybit_account(bybit: BybitLoopback, settings) -> Iterator[ExchangeAccount]:
    stream_settings(settings)
    # ex.ws.url serves the REST API and the private stream on one port.
    yield from reconciled_account(lambda: venue_account("bybit", bybit.ws.url), settings)


@pytest.fixture
def kucoin() -> Iterator[KucoinLoopback]:
    with KucoinLoopback(
        api_key=KEY, api_secret=SECRET, api_passphrase=PASSPHRASE, balances={"USDT": "100000"}
    ) as ex:
        ex.set_price("BTC-USDT", "40000")
        yield ex


@pytest.fixture
def kucoin_account(kucoin: KucoinLoopback, settings) -> Iterator[ExchangeAccount]:
    stream_settings(settings)
    yield from reconciled_account(
        lambda: venue_account("kucoin", kucoin.url, api_password=PASSPHRASE), settings
    )


@contextmanager
def streaming(account: ExchangeAccount) -> Iterator[StreamRunner]:
    runner = StreamRunner(account_ids=[account.pk]).start()
    try:
        connected(runner, account)
        yield runner
    finally:
        runner.stop()


def filled(order: Order) -> Order:
    found = wait_for(
        lambda: Order.objects.filter(pk=order.pk, status=S.FILLED).first(), what="filled order"
    )
    assert isinstance(found, Order)
    return found


def test_a_bybit_fill_heard_on_the_stream_settles_the_order(bybit, bybit_account) -> None:
    market = finest_market(bybit_account, "BTC/USDT")
    with streaming(bybit_account):
        # The socket is up once connected; its second subscription may follow a moment later.
        wait_for(lambda: bybit.ws.subscribers("execution") == 1, what="execution subscribed")
        assert bybit.ws.subscribers("order") == 1
        seen = len(bybit.requests())
        placed = buy(bybit_account, market, "0.01", COID)
        assert placed is not None

        order = filled(placed)

    (trade,) = bybit.spot.trades
    fill = Fill.objects.get(order=order)
    assert fill.trade_id == f"spot-{trade.id}"  # Bybit's execId, as execution/list says it
    assert (fill.price, fill.quantity, fill.fee) == (trade.price, trade.qty, trade.commission)
    assert fill.filled_at == datetime.fromtimestamp(trade.time / 1000, UTC)  # execTime
    assert Position.objects.get(account=bybit_account, market=market).quantity == order.quantity
    asked = [path for _, path, _ in bybit.requests()[seen:] if path in BYBIT_LOOKUPS]
    assert asked == [], "settled from the stream, not over REST"
    auth = next(m for m in bybit.ws.received_log if m.get("op") == "auth")
    assert auth["args"][0] == KEY


def test_a_kucoin_fill_heard_on_the_stream_settles_the_order_with_the_fee_from_rest(
    kucoin, kucoin_account
) -> None:
    market = finest_market(kucoin_account, "BTC/USDT")
    with streaming(kucoin_account):
        wait_for(lambda: kucoin.ws.subscribers("/spotMarket/tradeOrders"), what="subscribed")
        placed = buy(kucoin_account, market, "0.01", COID)
        assert placed is not None and placed.status == S.ACCEPTED  # the ack has no fill

        # No poller runs here: only the stream's push can settle it.
        order = filled(placed)

    (trade,) = kucoin.spot.trades
    fill = Fill.objects.get(order=order)
    assert fill.trade_id == str(trade.id)  # the push's tradeId, as /api/v1/hf/fills says it
    assert (fill.price, fill.quantity) == (trade.price, trade.qty)
    # The push carries no fee (KuCoin's order channel has none): it had REST asked at once.
    assert fill.fee == trade.commission > 0
    assert fill.filled_at == datetime.fromtimestamp(trade.time / 1000, UTC)
    assert Position.objects.get(account=kucoin_account, market=market).quantity == order.quantity


FILLS_BEFORE_THE_ACK = {
    "bybit": ("bybit", "spot", {"orderLinkId": COID, "execId": "e-1"}),
    "kucoin": ("kucoin", "spot", {"clientOid": COID, "tradeId": "t-1"}),
    "binance": ("binance", "spot", {"c": COID, "C": "", "x": "TRADE"}),
    "binance-futures": ("binance", "futures", {"c": COID, "x": "TRADE"}),  # ORDER_TRADE_UPDATE.o
}


@pytest.mark.parametrize("venue", list(FILLS_BEFORE_THE_ACK))
def test_a_fill_heard_before_the_ack_is_matched_by_the_venues_own_client_id_field(
    venue: str,
) -> None:
    code, market_type, info = FILLS_BEFORE_THE_ACK[venue]
    trading_defaults_ensure()
    market = market_register(exchange_code=code, symbol="BTC/USDT")
    account = ExchangeAccount.objects.create(
        name=venue,
        exchange=market.exchange,
        mode=ExchangeAccount.Mode.TESTNET,
        market_type=market_type,
        cash=Decimal("100000"),
        starting_cash=Decimal("100000"),
    )
    order = order_intent_create(
        account_id=account.pk,
        market_id=market.pk,
        signal_id=None,
        side="BUY",
        quantity=Decimal("0.01"),
        client_order_id=COID,
        strategy="test",
        reason="test",
    )
    Order.objects.filter(pk=order.pk).update(status=S.SUBMITTED)  # sent; no ack applied yet
    # A ccxt trade as watch_my_trades hands it over: no client id of its own, and an
    # exchange order id we do not know yet.
    trade = {
        "id": "t-1",
        "order": "9001",
        "price": 40000.0,
        "amount": 0.01,
        "timestamp": 1_700_000_000_000,
        "fee": {"cost": 0.4, "currency": "USDT"},
        "info": info,
    }

    applied = stream_trade_apply(account=account, trade=trade)

    assert applied is not None and applied.pk == order.pk
    order.refresh_from_db()
    assert order.status == S.FILLED and order.exchange_order_id == "9001"
    assert Fill.objects.get(order=order).trade_id == "t-1"


# --- Binance USDⓈ-M futures: the listenKey's user data stream, ORDER_TRADE_UPDATE ----------

FUTURES_LOOKUPS = ("/fapi/v1/order", "/fapi/v1/userTrades", "/fapi/v1/openOrders")


@pytest.fixture
def futures() -> Iterator[BinanceFuturesLoopback]:
    with BinanceFuturesLoopback(api_key=KEY, api_secret=SECRET, margin="100000") as ex:
        ex.set_price("BTCUSDT", "40000")
        yield ex


@pytest.fixture
def futures_account(futures: BinanceFuturesLoopback, settings) -> Iterator[ExchangeAccount]:
    stream_settings(settings)

    def make() -> ExchangeAccount:
        account = ExchangeAccount.objects.create(
            name="binance-futures-streams",
            exchange=market_register(exchange_code="binance", symbol="BTC/USDT").exchange,
            mode=ExchangeAccount.Mode.TESTNET,
            market_type="futures",
            cash=Decimal("100000"),
            starting_cash=Decimal("100000"),
            api_url_override=futures.url,  # REST and the user stream on one port
        )
        account_keys_set(account=account, api_key=KEY, api_secret=SECRET, actor="alice")
        return account

    yield from reconciled_account(make, settings)


def test_a_binance_futures_fill_heard_on_the_user_stream_settles_the_order_at_its_trade_time(
    futures, futures_account
) -> None:
    market = finest_market(futures_account, "BTC/USDT")
    with streaming(futures_account):
        (conn,) = futures.ws.connections()
        assert conn.path == ROUTED_PATH and conn.kind == futures.ws.active_key()
        # A resting limit order: the ack carries no fill, so only the stream can settle it.
        placed = order_submit(
            order=Order.objects.create(
                account=futures_account,
                market=market,
                client_order_id=COID,
                side="BUY",
                order_type="limit",
                quantity=Decimal("0.01"),
                price=Decimal("39000"),
            ),
            reference_price=Decimal("40000"),
        )
        assert placed.status == S.ACCEPTED and placed.filled_quantity == 0
        seen = len(futures.requests())
        # The venue's clock an hour behind ours: the fill's time can only be the event's o.T.
        futures.book.clock = lambda: time.time() - 3600
        futures.set_price("BTCUSDT", "38900")

        order = filled(placed)

    (trade,) = futures.book.trades
    fill = Fill.objects.get(order=order)
    assert fill.trade_id == str(trade.id)  # o.t, as userTrades' id says it
    assert (fill.price, fill.quantity, fill.fee) == (trade.price, trade.qty, trade.commission)
    assert fill.filled_at == datetime.fromtimestamp(trade.time / 1000, UTC)  # o.T
    assert fill.filled_at < order.created_at - timedelta(minutes=30)
    position = Position.objects.get(account=futures_account, market=market)
    assert position.quantity == order.quantity == futures.book.position("BTCUSDT").qty
    asked = [path for _, path, _ in futures.requests()[seen:] if path in FUTURES_LOOKUPS]
    assert asked == [], "settled from the stream, not over REST"
    assert ("POST", "/fapi/v1/listenKey") in [(m, p) for m, p, _ in futures.requests()]


def listen_key_call(ex: BinanceFuturesLoopback, method: str, key: str = KEY) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{ex.url}/fapi/v1/listenKey", data=b"", method=method, headers={"X-MBX-APIKEY": key}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def test_a_futures_listen_key_expires_after_its_validity_unless_a_put_keeps_it_alive() -> None:
    now = [1_000_000.0]
    with BinanceFuturesLoopback(api_key=KEY, api_secret=SECRET, listen_key_validity_s=2.0) as ex:
        ex.ws.clock = lambda: now[0]
        status, created = listen_key_call(ex, "POST")
        key = created["listenKey"]
        assert status == 200 and key

        now[0] += 1.5
        assert listen_key_call(ex, "PUT") == (200, {"listenKey": key})  # valid 2 s from now
        now[0] += 1.5  # past the first validity, within the extended one
        assert listen_key_call(ex, "POST") == (200, {"listenKey": key}), "the active key"
        assert ex.ws.active_key() == key

        now[0] += 2.5  # no keepalive for longer than the validity
        assert ex.ws.active_key() is None
        assert listen_key_call(ex, "PUT") == (
            400,
            {"code": -1125, "msg": "This listenKey does not exist."},
        )
        status, recreated = listen_key_call(ex, "POST")
        assert status == 200 and recreated["listenKey"] != key
        assert listen_key_call(ex, "PUT", key="not-the-key")[1]["code"] == -2015


def test_a_connected_futures_stream_hears_its_listen_key_expire_and_then_nothing_more() -> None:
    now = [1_000_000.0]

    async def listen(ex: BinanceFuturesLoopback, key: str) -> list[dict]:
        heard: list[dict] = []
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"{ex.ws_url}/ws/{key}") as ws,  # the docs' path
        ):
            await asyncio.to_thread(buy_at_venue, ex, "qt-stream-coid-0002")
            heard.append(await ws.receive_json(timeout=5))  # NEW
            heard.append(await ws.receive_json(timeout=5))  # TRADE
            now[0] += 5
            heard.append(await ws.receive_json(timeout=5))  # listenKeyExpired
            await asyncio.to_thread(buy_at_venue, ex, "qt-stream-coid-0003")
            with pytest.raises(TimeoutError):
                await ws.receive_json(timeout=0.5)
        return heard

    with BinanceFuturesLoopback(api_key=KEY, api_secret=SECRET, listen_key_validity_s=2.0) as ex:
        ex.set_price("BTCUSDT", "40000")
        ex.ws.clock = lambda: now[0]
        key = listen_key_call(ex, "POST")[1]["listenKey"]
        new, traded, expired = asyncio.run(listen(ex, key))

    (trade, _) = ex.book.trades
    assert (new["e"], new["o"]["x"], new["o"]["c"]) == (
        "ORDER_TRADE_UPDATE",
        "NEW",
        "qt-stream-coid-0002",
    )
    assert "n" not in new["o"], "no commission: not pushed"
    o = traded["o"]
    assert (o["x"], o["X"], o["c"], o["t"], o["T"]) == (
        "TRADE",
        "FILLED",
        "qt-stream-coid-0002",
        trade.id,
        trade.time,
    )
    assert (Decimal(o["l"]), Decimal(o["L"]), Decimal(o["n"])) == (
        trade.qty,
        trade.price,
        trade.commission,
    )
    assert (o["N"], o["ps"]) == ("USDT", "BOTH")  # ps: ccxt takes BTCUSDT for the swap
    assert expired == {"e": "listenKeyExpired", "E": int(now[0] * 1000), "listenKey": key}


def buy_at_venue(ex: BinanceFuturesLoopback, client_id: str) -> None:
    ex.book.place(
        symbol="BTCUSDT",
        side="BUY",
        type="MARKET",
        qty=Decimal("0.01"),
        price=None,
        client_id=client_id,
    )
