"""Real-time user streams: the exchange pushes order changes and fills as they happen.

Per exchange-backed account, an asyncio task holds ccxt.pro's `watch_orders` and
`watch_my_trades` open. Every event goes through the same idempotent services the REST
path uses (`snapshot_apply`, and through it `fill_apply`, which records a fill once per
exchange trade id), so a fill heard on the stream and again over REST is one fill.

What a stream misses while it is down is never lost: after EVERY (re)connect — once the
subscription is confirmed, so nothing falls between the two — the account gets a fresh
REST snapshot (`account_reconcile`: every open order resolved by client id, unknown
exchange orders and balances checked). A dropped connection is retried with exponential
back-off; an exchange without websocket support in ccxt, or one that keeps refusing, is
left to polling. Polling (`resolve_in_flight_orders` every 5 s, `reconcile_accounts` every
60 s) keeps running regardless: the stream makes settlement fast, polling keeps it safe.

Stream health (state, connected since, last event, reconnects, last error) is kept in the
cache (Redis) under `stream:<account id>`; `streams_health` reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections, connection
from django.utils import timezone

from marketdata.services.streams import LoopRunner, health_save, ws_client_rebase, ws_connected
from marketdata.services.streams import stream_setting as _setting
from quantum.crypto import decrypt
from trading.adapters.base import FillReport, OrderRejected, OrderSnapshot
from trading.models import ExchangeAccount, Order
from trading.services.orders import S
from trading.services.reconcile import account_reconcile
from trading.services.submission import order_resolve, snapshot_apply

logger = logging.getLogger(__name__)

T = TypeVar("T")
HEALTH_KEY = "stream:{account_id}"
# ccxt's unified order status -> ours; "open" and "closed" carry no final state of their
# own here: fills (from the trade events) move an order to partially filled / filled.
FINAL_STATUS = {"canceled": S.CANCELED, "expired": S.EXPIRED, "rejected": S.REJECTED}


# --- pure-ish helpers --------------------------------------------------------------------


def ws_client_for(account: ExchangeAccount) -> Any | None:
    """A ccxt.pro client for the account, or None when ccxt has no user stream for it."""
    import ccxt.pro as ccxtpro

    from trading.adapters.ccxt_adapter import profile_for

    try:
        profile = profile_for(account)
    except OrderRejected:
        return None
    cls = getattr(ccxtpro, profile.ccxt_id, None)
    if cls is None:
        return None
    client = cls(
        {
            "apiKey": decrypt(account.api_key_enc),
            "secret": decrypt(account.api_secret_enc),
            "password": decrypt(account.api_password_enc),
            "enableRateLimit": True,
            "timeout": settings.QT_EXCHANGE_TIMEOUT_MS,
            "options": dict(profile.options),
        }
    )
    if not (client.has.get("watchOrders") and client.has.get("watchMyTrades")):
        return None
    positions = client.options.get("watchPositions")
    if isinstance(positions, dict):
        # ccxt's binance watch_orders seeds a positions cache over REST on every connect
        # (set_positions_cache: fetch_positions, leverageBracket and positionRisk) that
        # nothing here reads: the reconcile snapshot fetches positions itself.
        positions["fetchPositionsSnapshot"] = False
    if account.mode == ExchangeAccount.Mode.TESTNET:
        # As the REST client (ccxt_for_account): KuCoin has no sandbox in ccxt, so a
        # testnet account streams only from its explicit URL, never from the live one.
        if client.urls.get("test"):
            client.set_sandbox_mode(True)
        elif not account.api_url_override:
            return None
    if account.api_url_override:
        ws_client_rebase(client, account.api_url_override)
    return client


# Where each venue's stream events carry the client order id in their raw payload (ccxt's
# `info`), for events whose unified field is empty: ccxt's trades have no clientOrderId
# at all. Tried in order, after the unified field. Binance spot's cancel event carries the
# cancel request's id in "c" and the order's in "C"; a Binance futures ORDER_TRADE_UPDATE
# reaches us as its "o" object, whose "c" is the order's.
RAW_CLIENT_ID_KEYS: dict[str, tuple[str, ...]] = {
    "binance": ("C", "c"),
    "binanceusdm": ("c",),
    "bybit": ("orderLinkId",),
    "kucoin": ("clientOid",),
}


def _local_order(
    account: ExchangeAccount, event: dict[str, Any], exchange_order_id: str | None
) -> Order | None:
    """Our order an event is about: by client id, else by the exchange's order id."""
    from trading.adapters.ccxt_adapter import profile_for

    info = event.get("info") or {}
    keys = RAW_CLIENT_ID_KEYS.get(profile_for(account).ccxt_id, ())
    candidates = [event.get("clientOrderId"), *(info.get(key) for key in keys)]
    orders = Order.objects.filter(account=account)
    for coid in dict.fromkeys(c for c in candidates if c and isinstance(c, str)):
        local = orders.filter(client_order_id=coid).first()
        if local is not None:
            return local
    if exchange_order_id:
        return orders.filter(exchange_order_id=exchange_order_id).first()
    return None


def trade_report(trade: dict[str, Any], quote_currency: str) -> FillReport:
    """A ccxt trade structure (from the stream) as the FillReport the REST path builds."""
    fee = trade.get("fee") or {}
    return FillReport(
        trade_id=str(trade["id"]),
        price=Decimal(str(trade["price"])),
        quantity=Decimal(str(trade["amount"])),
        fee=Decimal(str(fee.get("cost") or 0)),
        fee_currency=fee.get("currency") or quote_currency,
        filled_at=datetime.fromtimestamp((trade.get("timestamp") or 0) / 1000, UTC),
    )


# --- services (sync; called from the stream's database thread) ----------------------------


def stream_order_apply(*, account: ExchangeAccount, order: dict[str, Any]) -> Order | None:
    """Apply one order update from the user stream; None if the order is not ours."""
    exchange_id = str(order["id"]) if order.get("id") else None
    local = _local_order(account, order, exchange_id)
    if local is None or exchange_id is None:
        return None
    status = FINAL_STATUS.get(str(order.get("status")), S.ACCEPTED)
    snapshot = OrderSnapshot(
        client_order_id=local.client_order_id,
        exchange_order_id=str(order["id"]),
        status=status,
        filled_quantity=Decimal(str(order.get("filled") or 0)),
    )
    return snapshot_apply(order=local, snapshot=snapshot, cause="user stream")


def stream_trade_apply(*, account: ExchangeAccount, trade: dict[str, Any]) -> Order | None:
    """Apply one fill from the user stream (recorded once per trade id); None if not ours.

    A fill pushed without its fee (KuCoin's order channel carries none) is not recorded
    from the stream: a fill is recorded once, so a fee missing now could never be added.
    Its push instead has the order resolved over REST at once, fees included.
    """
    exchange_id = str(trade["order"]) if trade.get("order") else None
    local = _local_order(account, trade, exchange_id)
    if local is None or exchange_id is None:
        return None
    if (trade.get("fee") or {}).get("cost") is None:
        return order_resolve(order=local)
    report = trade_report(trade, account.quote_currency)
    snapshot = OrderSnapshot(
        client_order_id=local.client_order_id,
        exchange_order_id=str(trade["order"]),
        status=S.ACCEPTED,
        filled_quantity=report.quantity,
        fills=[report],
    )
    return snapshot_apply(order=local, snapshot=snapshot, cause="user stream")


def stream_snapshot(*, account: ExchangeAccount) -> dict[str, object]:
    """After a (re)connect: the REST truth for everything the stream may have missed."""
    return account_reconcile(account=account).as_dict()


# --- health ------------------------------------------------------------------------------


@dataclass
class StreamHealth:
    account_id: int
    account: str
    state: str = "starting"  # starting | connecting | connected | backoff | polling | stopped
    connected_since: str | None = None
    last_event_at: str | None = None
    events: int = 0
    reconnects: int = 0
    failures: int = 0
    snapshots: int = 0
    last_error: str = ""
    last_snapshot_ok: bool | None = None
    updated_at: str = field(default_factory=lambda: timezone.now().isoformat())

    def save(self) -> None:
        self.updated_at = timezone.now().isoformat()
        health_save(HEALTH_KEY.format(account_id=self.account_id), asdict(self), label=self.account)


def streams_health(account_ids: list[int] | None = None) -> dict[int, dict[str, Any]]:
    """The last recorded health of each account's stream (absent: no stream process)."""
    if account_ids is None:
        account_ids = list(
            ExchangeAccount.objects.exclude(mode=ExchangeAccount.Mode.PAPER).values_list(
                "pk", flat=True
            )
        )
    keys = {HEALTH_KEY.format(account_id=pk): pk for pk in account_ids}
    found = cache.get_many(list(keys))
    return {keys[key]: value for key, value in found.items()}


# --- the asyncio side --------------------------------------------------------------------


class AccountStream:
    """One account's user stream: connect, snapshot, apply events, reconnect with back-off."""

    def __init__(self, account_id: int, stop: asyncio.Event) -> None:
        self.account_id = account_id
        self.stop = stop
        self.health = StreamHealth(account_id=account_id, account=str(account_id))
        # One database thread per account: events are applied in the order they came.
        self._db_executor = ThreadPoolExecutor(1, thread_name_prefix=f"stream-db-{account_id}")

    async def db(self, fn: Callable[..., T], **kwargs: Any) -> T:
        def call() -> T:
            close_old_connections()
            return fn(**kwargs)

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db_executor, call)

    async def run(self) -> None:
        backoff_min = _setting("QT_STREAM_BACKOFF_MIN_S", 0.5)
        backoff_max = _setting("QT_STREAM_BACKOFF_MAX_S", 60.0)
        fallback_after = int(_setting("QT_STREAM_FALLBACK_AFTER", 5))
        stable_s = _setting("QT_STREAM_STABLE_S", 30.0)
        failures = 0
        connected_before = False
        try:
            while not self.stop.is_set():
                account = await self.db(_account_load, pk=self.account_id)
                if account is None:
                    self.health.state = "stopped"
                    return
                self.health.account = account.name
                client = ws_client_for(account)
                if client is None:
                    # No user stream in ccxt for this exchange: polling alone settles it.
                    self.health.state = "polling"
                    self.health.last_error = "no websocket user stream for this exchange"
                    self.health.save()
                    await self._sleep(backoff_max)
                    continue
                started = asyncio.get_running_loop().time()
                try:
                    await self._session(client, account, reconnect=connected_before)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.health.last_error = f"{type(exc).__name__}: {exc}"[:300]
                    logger.warning("user stream of %s: %s", account.name, self.health.last_error)
                finally:
                    with contextlib.suppress(Exception):
                        await client.close()
                if self.health.connected_since is not None:
                    connected_before = True
                lived = asyncio.get_running_loop().time() - started
                failures = 1 if lived >= stable_s else failures + 1
                self.health.connected_since = None
                self.health.failures = failures
                # Repeated failures: the stream gives way to polling (which never stopped)
                # and is retried at the slowest pace.
                self.health.state = "polling" if failures >= fallback_after else "backoff"
                self.health.save()
                delay = min(backoff_max, backoff_min * 2 ** (failures - 1))
                await self._sleep(delay * random.uniform(0.8, 1.2))  # jitter: no thundering herd
        finally:
            if self.health.state != "stopped":
                self.health.state = "stopped"
            self.health.connected_since = None
            self.health.save()
            await self.db(_connection_close)
            self._db_executor.shutdown(wait=False)

    async def _session(self, client: Any, account: ExchangeAccount, *, reconnect: bool) -> None:
        """One connection: subscribe, snapshot, then apply events until something breaks."""
        self.health.state = "connecting"
        self.health.save()
        await client.load_markets()
        timeout = settings.QT_EXCHANGE_TIMEOUT_MS / 1000 + 5
        binance = account.exchange.code == "binance"
        # Binance spot subscribes on the WebSocket API; USDⓈ-M futures opens its listenKey's
        # stream (/private/ws?listenKey=...), where the connection is the subscription.
        ws_api = binance and account.market_type != ExchangeAccount.MarketType.FUTURES
        if binance:
            # ccxt's binance authenticate() returns once the user data subscription is
            # acknowledged (spot: userDataStream.subscribe.signature on the WebSocket API;
            # futures: POST /fapi/v1/listenKey answered). It runs before the watchers: a
            # concurrent second caller returns at once, before the acknowledgement, and would
            # report a stream that is not there.
            await asyncio.wait_for(
                client.authenticate({"type": client.options["defaultType"]}), timeout
            )
        watchers = [
            asyncio.create_task(self._watch(client.watch_orders, stream_order_apply, account)),
            asyncio.create_task(self._watch(client.watch_my_trades, stream_trade_apply, account)),
        ]
        try:
            if ws_api:
                for _ in range(3):  # let the watchers register on the subscribed socket
                    await asyncio.sleep(0)
            else:
                await self._connected(_Dialed(client), watchers, timeout)
            self.health.state = "connected"
            self.health.connected_since = timezone.now().isoformat()
            self.health.reconnects += 1 if reconnect else 0
            self.health.save()
            # Only now, with the subscription live, ask REST what happened meanwhile:
            # an event after this point arrives on the stream, one before is in the answer.
            report = await self.db(stream_snapshot, account=account)
            self.health.snapshots += 1
            self.health.last_snapshot_ok = bool(report["ok"])
            self.health.save()
            stopper = asyncio.create_task(self.stop.wait())
            beat = asyncio.create_task(self._heartbeat())
            done, _ = await asyncio.wait(
                [*watchers, stopper, beat], return_when=asyncio.FIRST_COMPLETED
            )
            stopper.cancel()
            beat.cancel()
            for task in done:
                if task in watchers:
                    task.result()  # raises what broke the connection
        finally:
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)

    async def _connected(
        self, client: Any, watchers: list[asyncio.Task[None]], timeout: float
    ) -> None:
        """Elsewhere: wait until every websocket the watchers opened is connected."""
        await ws_connected(client, watchers, timeout)

    async def _watch(
        self,
        watch: Callable[[], Any],
        apply: Callable[..., Order | None],
        account: ExchangeAccount,
    ) -> None:
        while True:
            items = await watch()
            for item in items:
                try:
                    await self.db(apply, account=account, **{_arg(apply): item})
                except Exception:
                    # The poller resolves whatever an event could not settle.
                    logger.exception("user stream event of %s not applied", account.name)
                self.health.events += 1
                self.health.last_event_at = timezone.now().isoformat()
            self.health.save()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(15)
            self.health.save()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)


class _Dialed:
    """A ccxt.pro client's websockets only: binance's authenticate() keeps its single-flight
    future on a client that is never dialled ("authenticationFlights"), never connected."""

    def __init__(self, client: Any) -> None:
        self._client = client

    @property
    def clients(self) -> dict[str, Any]:
        found = getattr(self._client, "clients", None) or {}
        return {url: c for url, c in found.items() if "://" in url}


def _arg(apply: Callable[..., Order | None]) -> str:
    return "order" if apply is stream_order_apply else "trade"


def _connection_close() -> None:
    # Looked up here, in the database thread: `connection` is per thread.
    connection.close()


def _account_load(*, pk: int) -> ExchangeAccount | None:
    return (
        ExchangeAccount.objects.select_related("exchange")
        .exclude(mode=ExchangeAccount.Mode.PAPER)
        .filter(pk=pk)
        .first()
    )


def stream_account_ids() -> list[int]:
    """Accounts that get a user stream: exchange-backed (testnet/live) with keys set."""
    return list(
        ExchangeAccount.objects.exclude(mode=ExchangeAccount.Mode.PAPER)
        .exclude(api_key_enc="")
        .order_by("pk")
        .values_list("pk", flat=True)
    )


class StreamRunner(LoopRunner):
    """Every account's user stream on one asyncio loop; `run()` blocks, `start()` threads.

    The set of accounts is re-read every QT_STREAM_REFRESH_S (30 s): an account switched to
    testnet gets a stream, one switched back to paper loses it.
    """

    thread_name = "user-streams"

    def __init__(self, *, account_ids: list[int] | None = None) -> None:
        super().__init__()
        self.fixed_ids = account_ids
        self.streams: dict[int, AccountStream] = {}

    def health(self, account_id: int) -> StreamHealth | None:
        stream = self.streams.get(account_id)
        return stream.health if stream else None

    async def _main(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        self._ready.set()
        refresh = _setting("QT_STREAM_REFRESH_S", 30.0)
        tasks: dict[int, asyncio.Task[None]] = {}
        db = ThreadPoolExecutor(1, thread_name_prefix="stream-accounts")
        try:
            while not stop.is_set():
                if self.fixed_ids is not None:
                    wanted = set(self.fixed_ids)
                else:

                    def ids() -> list[int]:
                        close_old_connections()
                        return stream_account_ids()

                    wanted = set(await loop.run_in_executor(db, ids))
                for pk in wanted - set(tasks):
                    self.streams[pk] = AccountStream(pk, stop)
                    tasks[pk] = asyncio.create_task(self.streams[pk].run())
                for pk in set(tasks) - wanted:
                    tasks.pop(pk).cancel()
                for pk, task in list(tasks.items()):
                    if task.done():  # ended (account gone or an error): start afresh later
                        tasks.pop(pk)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=refresh)
        finally:
            stop.set()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            await loop.run_in_executor(db, _connection_close)
            db.shutdown(wait=False)
