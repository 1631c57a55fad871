"""The loopback Binance's websocket side: the user data stream and kline streams on its port.

What ccxt.pro's `binance` (ccxt 4.5, ccxt/pro/binance.py) asks of Binance spot, served as
https://developers.binance.com describes it (github.com/binance/binance-spot-api-docs):

- User data on the WebSocket API, ``ws://HOST:PORT/ws-api/v3`` (what watch_orders and
  watch_my_trades use for spot): the request
  ``{"id": "1", "method": "userDataStream.subscribe.signature",
  "params": {"apiKey", "timestamp", "signature"}}`` is answered
  ``{"id": "1", "status": 200, "result": {"subscriptionId": 0}}``, then every order change
  arrives as ``{"subscriptionId": 0, "event": {"e": "executionReport", ...}}``.
- No listenKey: CHANGELOG 2026-01-21, "POST/PUT/DELETE /api/v3/userDataStream" and the
  WebSocket API's userDataStream.start/ping/stop "will no longer be available starting from
  2026-02-20": the REST paths answer as any unknown path does (404), ``/ws/<listenKey>`` is
  no websocket endpoint, and the methods are unknown methods.
- Market streams: ``ws://HOST:PORT/ws[/<n>]`` takes
  ``{"method": "SUBSCRIBE", "params": ["btcusdt@kline_1m"], "id": 1}`` (answered
  ``{"result": null, "id": 1}``); ``ws://HOST:PORT/ws/btcusdt@kline_1m`` subscribes at once.
  Klines are pushed by `push_klines` (replayed from the CSV store or made up by a test).

Connections live as web-socket-api.md and web-socket-streams.md say: "The WebSocket server
will send a ping frame every 20 seconds. If the WebSocket server does not receive a pong
frame back from the connection within a minute the connection will be disconnected", and "A
single connection ... is only valid for 24 hours; expect to be disconnected after the
24-hour mark" (the hours are a constructor parameter, so a test can reach the cut-off).

executionReport events carry what Binance sends: client id ``c`` (on a cancel, the cancel's
id, the order's own in ``C``), execution type ``x``, status ``X``, trade id ``t``, last qty
``l`` and price ``L``, cumulative ``z``/``Z``, commission ``n``/``N``.

Faults: `drop_all()` closes every websocket from the server side (close frame 1001);
`refuse = True` answers every upgrade with 503. Both also through
``POST /_control/ws {"drop": true, "refuse": false}``. The transport is venues.transport.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from venues.data import INTERVAL_MS, Kline, fmt
from venues.orders import ZERO, Json, Order, Trade
from venues.transport import Connection, Endpoint, LoopServer

logger = logging.getLogger(__name__)

MAX_RECV_WINDOW = 60_000
SETTLE_EVERY_S = 0.05
PING_INTERVAL_S = 20.0
PONG_TIMEOUT_S = 60.0
MAX_LIFETIME_S = 24 * 3600.0


def execution_report(
    order: Order, exec_type: str, trade: Trade | None, cancel_id: str | None, now_ms: int
) -> Json:
    """One executionReport, as Binance's user data stream sends it for this change."""
    last_qty = trade.qty if trade else ZERO
    last_price = trade.price if trade else ZERO
    canceled = exec_type == "CANCELED"
    return {
        "e": "executionReport",
        "E": now_ms,
        "s": order.spec.symbol,
        "c": cancel_id if canceled and cancel_id else order.client_order_id,
        "S": order.side,
        "o": order.type,
        "f": order.time_in_force,
        "q": fmt(order.orig_qty),
        "p": fmt(order.price),
        "P": fmt(ZERO),
        "F": fmt(ZERO),
        "g": -1,
        "C": order.client_order_id if canceled else "",
        "x": exec_type,
        "X": order.status,
        "r": "NONE",
        "i": order.order_id,
        "l": fmt(last_qty),
        "z": fmt(order.executed_qty),
        "L": fmt(last_price),
        "n": fmt(trade.commission) if trade else "0",
        "N": trade.commission_asset if trade else None,
        "T": trade.time if trade else order.update_time,
        "t": trade.id if trade else -1,
        "v": 0,
        "I": order.order_id * 10 + (trade.id if trade else 0),
        "w": order.is_open,
        "m": bool(trade and trade.is_maker),
        "M": False,
        "O": order.time,
        "Z": fmt(order.cum_quote),
        "Y": fmt(last_qty * last_price),
        "Q": fmt(order.orig_quote_qty),
        "W": order.time,
        "V": "EXPIRE_MAKER",
    }


def kline_event(symbol: str, interval: str, row: Kline, *, closed: bool, now_ms: int) -> Json:
    """A `<symbol>@kline_<interval>` event for one kline row (Binance's REST shape)."""
    open_ms = int(str(row[0]))
    return {
        "e": "kline",
        "E": now_ms,
        "s": symbol,
        "k": {
            "t": open_ms,
            "T": open_ms + INTERVAL_MS[interval] - 1,
            "s": symbol,
            "i": interval,
            "f": -1,
            "L": -1,
            "o": str(row[1]),
            "c": str(row[4]),
            "h": str(row[2]),
            "l": str(row[3]),
            "v": str(row[5]),
            "n": int(str(row[8])) if len(row) > 8 else 0,
            "x": closed,
            "q": str(row[7]) if len(row) > 7 else "0",
            "V": str(row[9]) if len(row) > 9 else "0",
            "Q": str(row[10]) if len(row) > 10 else "0",
            "B": "0",
        },
    }


class WsHub(Endpoint):
    """Every websocket of one loopback exchange, the events they get, and the ws faults."""

    def __init__(
        self,
        host: LoopServer,
        *,
        api_key: str,
        api_secret: str,
        settle: Callable[[], None],
        clock: Callable[[], float] = time.time,
        ping_interval_s: float | None = PING_INTERVAL_S,
        pong_timeout_s: float = PONG_TIMEOUT_S,
        max_lifetime_s: float | None = MAX_LIFETIME_S,
    ) -> None:
        super().__init__(
            host,
            ping_interval_s=ping_interval_s,
            pong_timeout_s=pong_timeout_s,
            max_lifetime_s=max_lifetime_s,
        )
        self.api_key = api_key
        self.api_secret = api_secret
        self._settle = settle
        self._clock = clock
        self._settling = False

    # Events from the ledger and the test.

    def order_event(
        self, order: Order, exec_type: str, trade: Trade | None, cancel_id: str | None
    ) -> None:
        """Ledger listener: build the event now (the order changes later), send it later."""
        if not self.count(lambda conn: bool(conn.subscriptions)):
            return  # nobody listening: nothing queues up (a chaos run places thousands)
        now_ms = int(self._clock() * 1000)
        event = execution_report(order, exec_type, trade, cancel_id, now_ms)
        self.deliver(
            lambda conn: [{"subscriptionId": s, "event": event} for s in sorted(conn.subscriptions)]
        )

    def push_klines(
        self, symbol: str, interval: str, rows: list[Kline], *, closed: bool = True
    ) -> int:
        """Send these klines to `<symbol>@kline_<interval>` subscribers; returns how many."""
        if interval not in INTERVAL_MS:
            raise ValueError(f"unknown kline interval {interval!r}")
        symbol = symbol.replace("/", "").upper()
        stream = f"{symbol.lower()}@kline_{interval}"
        now_ms = int(self._clock() * 1000)
        events = [kline_event(symbol, interval, row, closed=closed, now_ms=now_ms) for row in rows]
        self.deliver(lambda conn: events if stream in conn.topics else [])
        return len(rows)

    # Faults and state.

    def subscribers(self) -> dict[str, int]:
        conns = self.connections()
        return {
            "user": sum(1 for c in conns if c.subscriptions),
            "market": sum(1 for c in conns if c.topics),
            "connections": len(conns),
        }

    def state(self) -> Json:
        return {"refuse": self.refuse, **self.counters, **self.subscribers()}

    def control(self, data: dict[str, Any]) -> Json:
        """POST /_control/ws: {"refuse": bool, "drop": bool, "klines": {...}}."""
        if "refuse" in data:
            self.refuse = bool(data["refuse"])
        if data.get("drop"):
            self.drop_all()
        if "klines" in data:
            spec = data["klines"]
            self.push_klines(str(spec["symbol"]), str(spec["interval"]), list(spec["rows"]))
        return self.state()

    # Serving a connection (on the loop thread).

    def accepts(self, path: str) -> bool:
        return _route(path) is not None

    async def opened(self, conn: Connection, request: web.Request) -> bool:
        kind, streams = _route(conn.path) or ("", [])
        conn.kind = kind
        conn.topics.update(streams)
        return True

    def malformed(self, conn: Connection) -> None:
        conn.send({"status": 400, "error": {"code": -1100, "msg": "Malformed JSON"}})

    def received(self, conn: Connection, message: Json) -> None:
        request_id = message.get("id")
        method = str(message.get("method", ""))
        params = message.get("params")
        if conn.kind == "api":
            conn.send({"id": request_id, **self._api_answer(conn, method, params)})
        else:
            conn.send({"id": request_id, **self._market_answer(conn, method, params)})

    def _api_answer(self, conn: Connection, method: str, params: object) -> Json:
        if not isinstance(params, dict):
            params = {}
        if method == "userDataStream.subscribe.signature":
            error = self._authenticate(params)
            if error is not None:
                return {"status": 401 if error[0] in (-2014, -2015) else 400, "error": error[1]}
            subscription = conn.next_subscription
            conn.next_subscription += 1
            conn.subscriptions.add(subscription)
            self._settle_while_subscribed()
            return {"status": 200, "result": {"subscriptionId": subscription}}
        if method == "userDataStream.unsubscribe":
            if "subscriptionId" in params:
                conn.subscriptions.discard(int(params["subscriptionId"]))
            else:
                conn.subscriptions.clear()
            return {"status": 200, "result": {}}
        if method == "ping":
            return {"status": 200, "result": {}}
        if method == "time":
            return {"status": 200, "result": {"serverTime": int(self._clock() * 1000)}}
        return {"status": 400, "error": {"code": -1100, "msg": f"Unknown method '{method}'."}}

    def _authenticate(self, params: dict[str, Any]) -> tuple[int, Json] | None:
        """Binance's ws-api signature: HMAC-SHA256 of the sorted key=value&... parameters."""
        api_key = str(params.get("apiKey") or "")
        if not api_key:
            return -2014, {"code": -2014, "msg": "API-key format invalid."}
        if not hmac.compare_digest(api_key.encode(), self.api_key.encode()):
            msg = "Invalid API-key, IP, or permissions for action."
            return -2015, {"code": -2015, "msg": msg}
        payload = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "signature")
        expected = hmac.new(self.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, str(params.get("signature", "")).lower()):
            return -1022, {"code": -1022, "msg": "Signature for this request is not valid."}
        try:
            timestamp = int(params.get("timestamp", 0))
            recv_window = int(params.get("recvWindow", 5000))
        except (TypeError, ValueError):
            return -1100, {"code": -1100, "msg": "Illegal characters found in a parameter."}
        now_ms = int(self._clock() * 1000)
        if recv_window > MAX_RECV_WINDOW or not (
            now_ms - recv_window <= timestamp <= now_ms + 1000
        ):
            msg = "Timestamp for this request is outside of the recvWindow."
            return -1021, {"code": -1021, "msg": msg}
        return None

    def _market_answer(self, conn: Connection, method: str, params: object) -> Json:
        names = [str(p).lower() for p in params] if isinstance(params, list) else []
        if method == "SUBSCRIBE":
            conn.topics.update(names)
            return {"result": None}
        if method == "UNSUBSCRIBE":
            conn.topics.difference_update(names)
            return {"result": None}
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": sorted(conn.topics)}
        return {"error": {"code": 1, "msg": f"Invalid request: unknown method {method!r}"}}

    # Delayed and interval fills happen lazily in the ledger; a listening user stream should
    # hear them when they are due, as on Binance.

    def _settle_while_subscribed(self) -> None:
        if not self._settling:
            self._settling = True
            self.host.spawn(self._settle_loop())

    async def _settle_loop(self) -> None:
        try:
            while self.count(lambda conn: bool(conn.subscriptions)):
                await asyncio.sleep(SETTLE_EVERY_S)
                try:
                    await self.host.in_thread(self._settle)
                except Exception:
                    logger.exception("loopback ws: settling due fills failed")
        finally:
            self._settling = False


def _route(path: str) -> tuple[str, list[str]] | None:
    """("api" or "market", streams subscribed by the path) for a websocket path, or None."""
    if path == "/ws-api/v3":
        return "api", []
    if path in ("/ws", "/stream"):
        return "market", []
    if path.startswith("/ws/"):
        rest = path[len("/ws/") :]
        if "@" in rest:
            return "market", [s.lower() for s in rest.split("/") if s]
        if rest.isdigit():  # ccxt spreads subscriptions over /ws/0, /ws/1, ...
            return "market", []
    return None
