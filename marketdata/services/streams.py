"""Real-time market stream: closed candles pushed by the exchange instead of waited for.

One asyncio task holds ccxt.pro's `watch_ohlcv` open for every active market of the
configured exchange on the configured timeframe (`QT_EXCHANGE`, `QT_TIMEFRAME`), on one
client. ccxt's unified candles do not say whether a bar is closed, so `BarCloser` decides:
a bar is closed once a later bar has started (the exchange sends a bar's final update
before the next bar's first) or once its close time has passed when an update arrives.
Only closed bars go on, through the one ingestion path (`candles_ingest`, live): the same
validation, the same idempotent upsert — a streamed bar and a polled bar are one row — the
same gap records, and the same closed-candle signal task after commit.

What the stream misses while it is down is never lost: after EVERY (re)connect, once the
socket is up, each market gets a fresh REST snapshot (`market_sync`: the bars after the
newest stored one, then recorded gaps). Failures are retried with exponential back-off;
after `QT_STREAM_FALLBACK_AFTER` in a row — or for an exchange ccxt has no `watchOHLCV`
for — the stream reports `polling`. Beat's `ingest_all_markets` runs regardless: the
stream makes a closed bar arrive seconds after its close, polling keeps the data whole.

Health is kept in the cache under `stream:market:<exchange>`; `market_stream_health` reads
it. The helpers at the top (settings knobs, health records, URL rebasing, waiting for a
socket) are shared with the user streams in `trading/services/streams.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Self, TypeVar

from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections, connection
from django.utils import timezone

from marketdata.models import TIMEFRAMES, Market
from marketdata.services.ingestion import IngestReport, candles_ingest
from marketdata.services.sync import market_sync
from marketdata.sources import CcxtSource, Row, rebase_urls

logger = logging.getLogger(__name__)

T = TypeVar("T")
# Kept a day, judged by `updated_at` (quantum/health.py): a stream process that dies without
# saying so stays visible as stale instead of vanishing with its record.
HEALTH_TTL_S = 24 * 3600
MARKET_HEALTH_KEY = "stream:market:{exchange}"
# An update that arrives this long after its bar's close time is that bar's final state;
# a little slack for the distance between our clock and the exchange's.
CLOSE_GRACE_MS = 2000


# --- shared with the user streams ---------------------------------------------------------


def stream_setting(name: str, default: float) -> float:
    """A tuning knob from settings (QT_STREAM_*, environment-driven); `default` if unset."""
    value = getattr(settings, name, None)
    if value is None:
        return float(os.environ.get(name) or default)
    return float(value)


def health_save(key: str, record: dict[str, Any], *, label: str) -> None:
    """Store a stream's health record in the cache; advisory, so a failure only logs."""
    try:
        cache.set(key, record, HEALTH_TTL_S)
    except Exception:  # a Redis hiccup must not stop the stream
        logger.warning("could not record stream health for %s", label, exc_info=True)


def ws_client_rebase(client: Any, base: str) -> None:
    """Point a ccxt.pro client's REST and websocket URLs at `base` (the loopback exchange).

    REST paths move to the base's host; websocket paths to the same host with ws:// (wss://
    for https), as the loopback exchange serves both on one port.
    """
    base = base.rstrip("/")
    ws_base = "ws" + base[len("http") :] if base.startswith("http") else base
    api = dict(client.urls["api"])
    ws = api.pop("ws", None)
    client.urls["api"] = rebase_urls(api, base)
    if ws is not None:
        client.urls["api"]["ws"] = rebase_urls(ws, ws_base)


async def ws_connected(client: Any, watchers: Sequence[asyncio.Task[Any]], timeout: float) -> None:
    """Wait until every websocket the watchers opened is connected (or one of them failed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for task in watchers:
            if task.done():
                task.result()
        clients = list(getattr(client, "clients", {}).values())
        if clients and all(c.connected.done() for c in clients):
            for c in clients:
                c.connected.result()
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("the websocket did not connect")


# --- pure-ish helpers ---------------------------------------------------------------------


def ohlcv_row(entry: object) -> Row:
    """A ccxt OHLCV entry ([ms, o, h, l, c, v]) as an ingestion row; junk stays junk.

    Nothing is repaired here: a malformed entry becomes a row validation rejects, with its
    reason, so bad input is counted and logged like any other.
    """
    if not isinstance(entry, list | tuple) or len(entry) < 6:
        return {"open_time": str(entry), "open": None}
    ts, o, h, low, c, v = entry[:6]
    return {"open_time": ts, "open": o, "high": h, "low": low, "close": c, "volume": v}


class BarCloser:
    """Turns one market's stream of bar updates into closed bars, each handed over once."""

    def __init__(self, timeframe: str) -> None:
        self.step_ms = int(TIMEFRAMES[timeframe].total_seconds() * 1000)
        self.forming: list[Any] | None = None  # the latest update of the newest open bar
        self.handed_until: int | None = None  # open time of the newest bar handed over

    def feed(self, entries: Sequence[Any], now_ms: int) -> list[Any]:
        """The bars these updates close, oldest first (malformed entries pass through)."""
        closed: list[Any] = []
        shaped = [e for e in entries if isinstance(e, list | tuple) and len(e) >= 6]
        timed = sorted(
            (e for e in shaped if isinstance(e[0], int) and not isinstance(e[0], bool)),
            key=lambda e: e[0],
        )
        # No usable open time: nothing to order it by; validation rejects it with a reason.
        closed += [e for e in entries if not any(e is t for t in timed)]
        for entry in timed:
            ts = int(entry[0])
            if self.handed_until is not None and ts <= self.handed_until:
                continue  # a repeat of a bar already handed over
            if self.forming is not None and ts > self.forming[0]:
                # A later bar started: the forming bar's last update was its final one.
                closed.append(self.forming)
                self.handed_until = int(self.forming[0])
                self.forming = None
            if ts + self.step_ms + CLOSE_GRACE_MS <= now_ms:
                closed.append(list(entry))
                self.handed_until = ts
                self.forming = None
            else:
                self.forming = list(entry)
        return closed


# --- services (sync; called from the stream's database thread) ------------------------------


def stream_pairs() -> list[tuple[Market, str]]:
    """What the market stream watches: active markets of QT_EXCHANGE on QT_TIMEFRAME."""
    markets = Market.objects.filter(active=True, exchange__code=settings.QT_EXCHANGE)
    return [(m, settings.QT_TIMEFRAME) for m in markets.select_related("exchange").order_by("pk")]


def stream_bars_ingest(*, market: Market, timeframe: str, bars: Sequence[Any]) -> IngestReport:
    """Closed bars heard on the market stream, through the one ingestion path (live)."""
    rows = [ohlcv_row(b) for b in bars]
    return candles_ingest(
        market=market, timeframe=timeframe, rows=rows, source="ccxt-stream", live=True
    )


def market_stream_snapshot(
    *, pairs: Sequence[tuple[Market, str]], source: CcxtSource
) -> dict[str, object]:
    """After a (re)connect: the REST truth for every bar the stream may have missed."""
    total = IngestReport()
    failed: list[str] = []
    for market, timeframe in pairs:
        try:
            total.merge(market_sync(market=market, timeframe=timeframe, source=source))
        except Exception:
            # One market's outage must not hold the others; beat's ingest retries it.
            logger.exception("market stream snapshot failed for %s %s", market.symbol, timeframe)
            failed.append(f"{market.symbol} {timeframe}")
    return {"ok": not failed, "failed": failed, "inserted": total.inserted}


def market_ws_client(exchange_code: str) -> Any | None:
    """A public ccxt.pro client for the exchange, or None when ccxt cannot stream candles."""
    import ccxt.pro as ccxtpro

    cls = getattr(ccxtpro, exchange_code, None)
    if cls is None:
        return None
    client = cls(
        {
            "enableRateLimit": True,
            "timeout": settings.QT_EXCHANGE_TIMEOUT_MS,
            "options": {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}},
        }
    )
    if not client.has.get("watchOHLCV"):
        return None
    if settings.QT_CCXT_URL_OVERRIDE:
        ws_client_rebase(client, settings.QT_CCXT_URL_OVERRIDE)
    return client


# --- health -------------------------------------------------------------------------------


@dataclass
class MarketStreamHealth:
    exchange: str
    state: str = "starting"  # starting | connecting | connected | backoff | polling | stopped
    pairs: list[str] = field(default_factory=list)
    connected_since: str | None = None
    last_event_at: str | None = None
    events: int = 0
    bars_stored: int = 0
    rejected: int = 0
    last_rejection: str = ""
    reconnects: int = 0
    failures: int = 0
    snapshots: int = 0
    last_snapshot_ok: bool | None = None
    last_error: str = ""
    updated_at: str = field(default_factory=lambda: timezone.now().isoformat())

    def save(self) -> None:
        self.updated_at = timezone.now().isoformat()
        key = MARKET_HEALTH_KEY.format(exchange=self.exchange)
        health_save(key, asdict(self), label=f"market stream {self.exchange}")


def market_stream_health(exchange: str | None = None) -> dict[str, Any] | None:
    """The last recorded health of the market stream (None: no stream process)."""
    found: dict[str, Any] | None = cache.get(
        MARKET_HEALTH_KEY.format(exchange=exchange or settings.QT_EXCHANGE)
    )
    return found


# --- the asyncio side ---------------------------------------------------------------------


class _PairsChanged(Exception):
    """A market was added or deactivated: reconnect with the new set (not a failure)."""


class MarketStream:
    """The exchange's candle stream: connect, snapshot, ingest closed bars, reconnect."""

    def __init__(self, exchange_code: str, stop: asyncio.Event) -> None:
        self.exchange_code = exchange_code
        self.stop = stop
        self.health = MarketStreamHealth(exchange=exchange_code)
        # One database thread: bars are ingested in the order they came, after the snapshot.
        self._db_executor = ThreadPoolExecutor(1, thread_name_prefix="market-stream-db")
        self._source: CcxtSource | None = None

    async def db(self, fn: Callable[..., T], **kwargs: Any) -> T:
        def call() -> T:
            close_old_connections()
            return fn(**kwargs)

        return await asyncio.get_running_loop().run_in_executor(self._db_executor, call)

    def _snapshot(self, *, pairs: Sequence[tuple[Market, str]]) -> dict[str, object]:
        if self._source is None:  # built in the database thread, which alone uses it
            self._source = CcxtSource(self.exchange_code)
        return market_stream_snapshot(pairs=pairs, source=self._source)

    async def run(self) -> None:
        backoff_min = stream_setting("QT_STREAM_BACKOFF_MIN_S", 0.5)
        backoff_max = stream_setting("QT_STREAM_BACKOFF_MAX_S", 60.0)
        fallback_after = int(stream_setting("QT_STREAM_FALLBACK_AFTER", 5))
        stable_s = stream_setting("QT_STREAM_STABLE_S", 30.0)
        loop = asyncio.get_running_loop()
        failures = 0
        connected_before = False
        try:
            while not self.stop.is_set():
                pairs = await self.db(stream_pairs)
                self.health.pairs = [f"{m.symbol} {tf}" for m, tf in pairs]
                client = market_ws_client(self.exchange_code) if pairs else None
                if client is None:
                    # Nothing to watch, or no candle stream in ccxt: beat's polling does it.
                    self.health.state = "polling"
                    self.health.last_error = (
                        "no websocket candle stream for this exchange" if pairs else ""
                    )
                    self.health.save()
                    await self._sleep(backoff_max)
                    continue
                started = loop.time()
                changed = False
                try:
                    await self._session(client, pairs, reconnect=connected_before)
                except asyncio.CancelledError:
                    raise
                except _PairsChanged:
                    changed = True
                except Exception as exc:
                    self.health.last_error = f"{type(exc).__name__}: {exc}"[:300]
                    logger.warning(
                        "market stream of %s: %s", self.exchange_code, self.health.last_error
                    )
                finally:
                    with contextlib.suppress(Exception):
                        await client.close()
                if self.health.connected_since is not None:
                    connected_before = True
                self.health.connected_since = None
                if changed or self.stop.is_set():
                    continue
                lived = loop.time() - started
                failures = 1 if lived >= stable_s else failures + 1
                self.health.failures = failures
                # Repeated failures: the stream gives way to polling (which never stopped)
                # and is retried at the slowest pace.
                self.health.state = "polling" if failures >= fallback_after else "backoff"
                self.health.save()
                delay = min(backoff_max, backoff_min * 2 ** (failures - 1))
                await self._sleep(delay * random.uniform(0.8, 1.2))  # jitter: no thundering herd
        finally:
            self.health.state = "stopped"
            self.health.connected_since = None
            self.health.save()
            await self.db(_connection_close)
            self._db_executor.shutdown(wait=False)

    async def _session(
        self, client: Any, pairs: list[tuple[Market, str]], *, reconnect: bool
    ) -> None:
        """One connection: subscribe, snapshot, then ingest closed bars until it breaks."""
        self.health.state = "connecting"
        self.health.save()
        timeout = settings.QT_EXCHANGE_TIMEOUT_MS / 1000 + 5
        await asyncio.wait_for(client.load_markets(), timeout)
        listed = [(m, tf) for m, tf in pairs if m.symbol in client.markets]
        for market, timeframe in pairs:
            if (market, timeframe) not in listed:
                logger.warning("%s does not list %s: not streamed", self.exchange_code, market)
        if not listed:
            raise LookupError("none of the markets is listed on the exchange")
        watchers = [asyncio.create_task(self._watch(client, m, tf)) for m, tf in listed]
        try:
            await ws_connected(client, watchers, timeout)
            self.health.state = "connected"
            self.health.connected_since = timezone.now().isoformat()
            self.health.reconnects += 1 if reconnect else 0
            self.health.save()
            # Only now, with the socket up, ask REST for the bars since the newest stored:
            # a bar that closes after this point arrives on the stream, one before is in
            # the answer, and one in both is the same row.
            report = await self.db(self._snapshot, pairs=listed)
            self.health.snapshots += 1
            self.health.last_snapshot_ok = bool(report["ok"])
            self.health.save()
            stopper = asyncio.create_task(self.stop.wait())
            beat = asyncio.create_task(self._heartbeat(pairs))
            done, _ = await asyncio.wait(
                [*watchers, stopper, beat], return_when=asyncio.FIRST_COMPLETED
            )
            stopper.cancel()
            beat.cancel()
            for task in done:
                if task in watchers or task is beat:
                    task.result()  # raises what broke the connection (or _PairsChanged)
        finally:
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)

    async def _watch(self, client: Any, market: Market, timeframe: str) -> None:
        # ccxt wakes only a caller that is waiting: an update that arrives while nobody
        # awaits watch_ohlcv is kept in its cache and handed over with the next one. So
        # this loop goes straight back to waiting and a second task does the database work.
        heard: asyncio.Queue[list[Any]] = asyncio.Queue()
        ingest = asyncio.create_task(self._ingest(heard, market, timeframe))
        try:
            while True:
                entries = await client.watch_ohlcv(market.symbol, timeframe)
                # Copies: ccxt updates a forming bar's list in place.
                heard.put_nowait([list(e) if isinstance(e, list) else e for e in entries])
                if ingest.done():
                    ingest.result()
        finally:
            ingest.cancel()
            await asyncio.gather(ingest, return_exceptions=True)

    async def _ingest(
        self, heard: asyncio.Queue[list[Any]], market: Market, timeframe: str
    ) -> None:
        closer = BarCloser(timeframe)
        while True:
            entries = await heard.get()
            closed = closer.feed(entries, int(time.time() * 1000))
            self.health.events += len(entries)
            self.health.last_event_at = timezone.now().isoformat()
            if closed:
                try:
                    report = await self.db(
                        stream_bars_ingest, market=market, timeframe=timeframe, bars=closed
                    )
                except Exception:
                    # Beat's ingest stores whatever the stream could not.
                    logger.exception("market stream bars of %s not ingested", market.symbol)
                else:
                    self.health.bars_stored += report.inserted
                    self.health.rejected += len(report.rejected)
                    if report.rejected:
                        r = report.rejected[-1]
                        self.health.last_rejection = (
                            f"{market.symbol} {timeframe} {r.open_time}: {r.reason}"
                        )[:300]
            self.health.save()

    async def _heartbeat(self, pairs: list[tuple[Market, str]]) -> None:
        refresh = stream_setting("QT_STREAM_REFRESH_S", 30.0)
        wanted = {(m.pk, tf) for m, tf in pairs}
        loop = asyncio.get_running_loop()
        checked = loop.time()
        while True:
            await asyncio.sleep(min(15.0, refresh))
            self.health.save()
            if loop.time() - checked >= refresh:
                checked = loop.time()
                now = {(m.pk, tf) for m, tf in await self.db(stream_pairs)}
                if now != wanted:
                    raise _PairsChanged

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)


def _connection_close() -> None:
    # Looked up here, in the database thread: `connection` is per thread.
    connection.close()


def market_stream_enabled() -> bool:
    """Whether `runplatform` runs the market stream: ccxt data (not replay) and not off."""
    return settings.QT_MARKET_SOURCE == "ccxt" and bool(stream_setting("QT_MARKET_STREAM", 1))


class LoopRunner:
    """An asyncio loop of its own for a stream: `run()` blocks, `start()` threads, `stop()`
    ends it from any thread. Subclasses implement `_main(stop)` and set `_ready` once
    their state is readable."""

    thread_name = "stream"

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await self._main(self._stop)

        asyncio.run(main())

    async def _main(self, stop: asyncio.Event) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self._thread = threading.Thread(target=self.run, name=self.thread_name, daemon=True)
        self._thread.start()
        self._ready.wait(timeout=10)
        return self

    def stop(self, timeout: float = 15) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)

    def wait(self) -> None:
        """Block until the runner's loop has ended (after stop())."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)


class MarketStreamRunner(LoopRunner):
    """The market stream on its own asyncio loop."""

    thread_name = "market-stream"

    def __init__(self, *, exchange_code: str | None = None) -> None:
        super().__init__()
        self.exchange_code = exchange_code or settings.QT_EXCHANGE
        self.stream: MarketStream | None = None

    @property
    def health(self) -> MarketStreamHealth | None:
        return self.stream.health if self.stream else None

    async def _main(self, stop: asyncio.Event) -> None:
        self.stream = MarketStream(self.exchange_code, stop)
        self._ready.set()
        while not stop.is_set():
            try:
                await self.stream.run()
            except Exception:
                # Never take the platform down (runplatform stops everything when a child
                # exits): log, then start over after a pause.
                logger.exception("market stream of %s crashed; restarting", self.exchange_code)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=5)
                self.stream = MarketStream(self.exchange_code, stop)
