"""The loopback Binance's websocket side: user data and kline streams on the same port.

What ccxt.pro's `binance` (ccxt 4.5, ccxt/pro/binance.py) asks of Binance spot, served as
https://developers.binance.com describes it:

- User data on the WebSocket API, ``ws://HOST:PORT/ws-api/v3`` (what watch_orders and
  watch_my_trades use for spot): the request
  ``{"id": "1", "method": "userDataStream.subscribe.signature",
  "params": {"apiKey", "timestamp", "signature"}}`` is answered
  ``{"id": "1", "status": 200, "result": {"subscriptionId": 0}}``, then every order change
  arrives as ``{"subscriptionId": 0, "event": {"e": "executionReport", ...}}``.
- The listenKey flow older clients use: ``POST/PUT/DELETE /api/v3/userDataStream``
  (X-MBX-APIKEY) hands out a key; ``ws://HOST:PORT/ws/<listenKey>`` carries the bare
  executionReport events.
- Market streams: ``ws://HOST:PORT/ws[/<n>]`` takes
  ``{"method": "SUBSCRIBE", "params": ["btcusdt@kline_1m"], "id": 1}`` (answered
  ``{"result": null, "id": 1}``); ``ws://HOST:PORT/ws/btcusdt@kline_1m`` subscribes at once.
  Klines are pushed by `push_klines` (replayed from the CSV store or made up by a test).

executionReport events carry what Binance sends: client id ``c`` (on a cancel, the cancel's
id, the order's own in ``C``), execution type ``x``, status ``X``, trade id ``t``, last qty
``l`` and price ``L``, cumulative ``z``/``Z``, commission ``n``/``N``.

Faults: `drop_all()` closes every websocket from the server side (close frame 1001, then
the socket); `refuse = True` answers every upgrade with 503. Both also through
``POST /_control/ws {"drop": true, "refuse": false}``.

The protocol is RFC 6455 written against the standard library (no extensions, so ccxt's
offer of permessage-deflate is declined), so the exchange still runs without Django or any
third-party package. A connection holds one server thread; sends go through a dispatcher
thread, so a slow reader never holds the ledger's lock.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import queue
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from venues.binance_api import Reply, json_reply
from venues.data import INTERVAL_MS, Kline, fmt
from venues.orders import ZERO, Json, Order, Trade

logger = logging.getLogger(__name__)

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_FRAME = 1 << 20
LISTEN_KEY_TTL_S = 3600.0
MAX_RECV_WINDOW = 60_000
SETTLE_EVERY_S = 0.05


class _Closed(Exception):
    pass


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


@dataclass(eq=False)
class WsConnection:
    """One upgraded socket: what it listens to, and a lock so frames never interleave."""

    sock: socket.socket
    reader: Any  # the handler's buffered rfile
    path: str
    kind: str  # "api" (ws-api), "user" (listenKey) or "market"
    listen_key: str | None = None
    user_subscriptions: set[int] = field(default_factory=set)
    streams: set[str] = field(default_factory=set)
    next_subscription: int = 0
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send_text(self, payload: object) -> None:
        self._send(OP_TEXT, json.dumps(payload).encode())

    def send_close(self, code: int, reason: str = "") -> None:
        self._send(OP_CLOSE, struct.pack("!H", code) + reason.encode()[:120])

    def _send(self, opcode: int, data: bytes) -> None:
        size = len(data)
        if size < 126:
            header = struct.pack("!BB", 0x80 | opcode, size)
        elif size < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 126, size)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 127, size)
        with self.lock:
            if self.closed:
                raise _Closed
            try:
                self.sock.sendall(header + data)
            except OSError as exc:
                self.closed = True
                raise _Closed from exc

    def receive(self) -> tuple[int, bytes]:
        """The next whole message (continuations joined); raises _Closed at the end."""
        opcode, message = None, b""
        while True:
            head = self._read(2)
            fin, op = head[0] & 0x80, head[0] & 0x0F
            masked, size = head[1] & 0x80, head[1] & 0x7F
            if size == 126:
                size = struct.unpack("!H", self._read(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", self._read(8))[0]
            if size > MAX_FRAME:
                raise _Closed
            mask = self._read(4) if masked else b""
            data = self._read(size)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            if op >= OP_CLOSE:  # control frames come whole, even between fragments
                return op, data
            if op != OP_CONT:
                opcode, message = op, b""
            message += data
            if fin and opcode is not None:
                return opcode, message

    def _read(self, size: int) -> bytes:
        try:
            data: bytes = self.reader.read(size) if size else b""
        except (OSError, ValueError) as exc:
            raise _Closed from exc
        if len(data) < size:
            raise _Closed
        return data

    def shutdown(self) -> None:
        with self.lock:
            self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)


class WsHub:
    """Every websocket of one loopback exchange, the events they get, and the ws faults."""

    def __init__(
        self,
        *,
        api_key: str,
        api_secret: str,
        settle: Callable[[], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.refuse = False
        self.counters = {"connections": 0, "refused": 0, "dropped": 0, "events": 0}
        self._settle = settle
        self._clock = clock
        self._lock = threading.Lock()
        self._connections: set[WsConnection] = set()
        self._listen_keys: dict[str, float] = {}
        self._outbox: queue.Queue[tuple[str, str, Json] | None] = queue.Queue()
        self._dispatcher: threading.Thread | None = None
        self._stopping = threading.Event()

    # Events from the ledger and the test.

    def order_event(
        self, order: Order, exec_type: str, trade: Trade | None, cancel_id: str | None
    ) -> None:
        """Ledger listener: build the event now (the order changes later), send it later."""
        if not self._connections:
            return  # nobody listening: nothing queues up (a chaos run places thousands)
        now_ms = int(self._clock() * 1000)
        self._outbox.put(("user", "", execution_report(order, exec_type, trade, cancel_id, now_ms)))

    def push_klines(
        self, symbol: str, interval: str, rows: list[Kline], *, closed: bool = True
    ) -> int:
        """Send these klines to `<symbol>@kline_<interval>` subscribers; returns how many."""
        if interval not in INTERVAL_MS:
            raise ValueError(f"unknown kline interval {interval!r}")
        symbol = symbol.replace("/", "").upper()
        stream = f"{symbol.lower()}@kline_{interval}"
        now_ms = int(self._clock() * 1000)
        for row in rows:
            self._outbox.put(
                ("market", stream, kline_event(symbol, interval, row, closed=closed, now_ms=now_ms))
            )
        return len(rows)

    # Faults and state.

    def drop_all(self, code: int = 1001, reason: str = "going away") -> int:
        """Close every websocket from the server side (Binance does so on maintenance)."""
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(_Closed):
                conn.send_close(code, reason)
            conn.shutdown()
        self.counters["dropped"] += len(connections)
        return len(connections)

    def subscribers(self) -> dict[str, int]:
        with self._lock:
            conns = list(self._connections)
        return {
            "user": sum(1 for c in conns if c.user_subscriptions or c.listen_key),
            "market": sum(1 for c in conns if c.streams),
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

    def close(self) -> None:
        self._stopping.set()
        self._outbox.put(None)
        self.drop_all()
        if self._dispatcher is not None:
            self._dispatcher.join(timeout=5)

    # The listenKey REST endpoints.

    def listen_key_reply(self, method: str, query: str, body: str, api_key: str | None) -> Reply:
        """POST/PUT/DELETE /api/v3/userDataStream: only the API key, no signature."""
        if not api_key:
            return json_reply(401, {"code": -2014, "msg": "API-key format invalid."})
        if not hmac.compare_digest(api_key.encode(), self.api_key.encode()):
            msg = "Invalid API-key, IP, or permissions for action."
            return json_reply(401, {"code": -2015, "msg": msg})
        params = dict(parse_qsl(body))
        params.update(parse_qsl(query))
        now = self._clock()
        with self._lock:
            if method == "POST":
                key = secrets.token_hex(32)
                self._listen_keys[key] = now + LISTEN_KEY_TTL_S
                return json_reply(200, {"listenKey": key})
            key = params.get("listenKey", "")
            if not key:
                msg = "Mandatory parameter 'listenKey' was not sent, was empty/null, or malformed."
                return json_reply(400, {"code": -1102, "msg": msg})
            if self._listen_keys.get(key, 0) < now:
                return json_reply(400, {"code": -1125, "msg": "This listenKey does not exist."})
            if method == "PUT":
                self._listen_keys[key] = now + LISTEN_KEY_TTL_S
                return json_reply(200, {})
            if method == "DELETE":
                del self._listen_keys[key]
                doomed = [c for c in self._connections if c.listen_key == key]
            else:
                return json_reply(405, {"code": -1000, "msg": f"{method} not allowed"})
        for conn in doomed:
            conn.shutdown()
        return json_reply(200, {})

    # Serving an upgraded connection (runs on the HTTP handler's thread until it closes).

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        handler.close_connection = True
        path = urlsplit(handler.path).path.rstrip("/")
        kind, listen_key, streams = self._route(path)
        key = handler.headers.get("Sec-WebSocket-Key", "")
        if kind is None or not key:
            _plain(handler, 404, "no websocket endpoint here")
            return
        if self.refuse:
            self.counters["refused"] += 1
            _plain(handler, 503, "websocket connections refused (fault)")
            return
        # RFC 6455's handshake digest is SHA-1; it proves nothing beyond speaking websocket.
        digest = hashlib.sha1((key + GUID).encode(), usedforsecurity=False).digest()
        accept = base64.b64encode(digest).decode()
        handler.wfile.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\n"
                "Upgrade: websocket\r\n"
                "Connection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )
        handler.wfile.flush()
        conn = WsConnection(
            sock=handler.connection,
            reader=handler.rfile,
            path=path,
            kind=kind,
            listen_key=listen_key,
            streams=set(streams),
        )
        self._start_dispatcher()
        with self._lock:
            self._connections.add(conn)
            self.counters["connections"] += 1
        try:
            self._read_loop(conn)
        finally:
            with self._lock:
                self._connections.discard(conn)
            conn.shutdown()

    def _route(self, path: str) -> tuple[str | None, str | None, list[str]]:
        if path == "/ws-api/v3":
            return "api", None, []
        if path in ("/ws", "/stream"):
            return "market", None, []
        if path.startswith("/ws/"):
            rest = path[len("/ws/") :]
            with self._lock:
                if self._listen_keys.get(rest, 0) >= self._clock():
                    return "user", rest, []
            if "@" in rest:
                return "market", None, [s.lower() for s in rest.split("/") if s]
            if rest.isdigit():  # ccxt spreads subscriptions over /ws/0, /ws/1, ...
                return "market", None, []
        return None, None, []

    def _read_loop(self, conn: WsConnection) -> None:
        while not self._stopping.is_set():
            try:
                opcode, data = conn.receive()
                if opcode == OP_CLOSE:
                    conn.send_close(1000)
                    return
                if opcode == OP_PING:
                    conn._send(OP_PONG, data)
                    continue
                if opcode != OP_TEXT:
                    continue
                self._request(conn, data)
            except _Closed:
                return

    def _request(self, conn: WsConnection, data: bytes) -> None:
        try:
            message = json.loads(data)
            if not isinstance(message, dict):
                raise ValueError("not an object")
        except ValueError:
            conn.send_text({"status": 400, "error": {"code": -1100, "msg": "Malformed JSON"}})
            return
        request_id = message.get("id")
        method = str(message.get("method", ""))
        params = message.get("params")
        if conn.kind == "api":
            conn.send_text({"id": request_id, **self._api_answer(conn, method, params)})
        elif conn.kind == "market":
            conn.send_text({"id": request_id, **self._market_answer(conn, method, params)})

    def _api_answer(self, conn: WsConnection, method: str, params: object) -> Json:
        if not isinstance(params, dict):
            params = {}
        if method == "userDataStream.subscribe.signature":
            error = self._authenticate(params)
            if error is not None:
                return {"status": 401 if error[0] in (-2014, -2015) else 400, "error": error[1]}
            with self._lock:
                subscription = conn.next_subscription
                conn.next_subscription += 1
                conn.user_subscriptions.add(subscription)
            return {"status": 200, "result": {"subscriptionId": subscription}}
        if method == "userDataStream.unsubscribe":
            with self._lock:
                if "subscriptionId" in params:
                    conn.user_subscriptions.discard(int(params["subscriptionId"]))
                else:
                    conn.user_subscriptions.clear()
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

    def _market_answer(self, conn: WsConnection, method: str, params: object) -> Json:
        names = [str(p).lower() for p in params] if isinstance(params, list) else []
        with self._lock:
            if method == "SUBSCRIBE":
                conn.streams.update(names)
                return {"result": None}
            if method == "UNSUBSCRIBE":
                conn.streams.difference_update(names)
                return {"result": None}
            if method == "LIST_SUBSCRIPTIONS":
                return {"result": sorted(conn.streams)}
        return {"error": {"code": 1, "msg": f"Invalid request: unknown method {method!r}"}}

    # Sending.

    def _start_dispatcher(self) -> None:
        with self._lock:
            if self._dispatcher is None and not self._stopping.is_set():
                self._dispatcher = threading.Thread(
                    target=self._dispatch, name="loopback-ws-dispatch", daemon=True
                )
                self._dispatcher.start()

    def _dispatch(self) -> None:
        while not self._stopping.is_set():
            try:
                item = self._outbox.get(timeout=SETTLE_EVERY_S)
            except queue.Empty:
                # Delayed and interval fills happen lazily in the ledger; a listening
                # user stream should hear them when they are due, as on Binance.
                if self.subscribers()["user"]:
                    try:
                        self._settle()
                    except Exception:
                        logger.exception("loopback ws: settling due fills failed")
                continue
            if item is None:
                return
            scope, stream, event = item
            with self._lock:
                targets = list(self._connections)
            for conn in targets:
                try:
                    if scope == "user" and conn.listen_key:
                        conn.send_text(event)
                    elif scope == "user":
                        for subscription in sorted(conn.user_subscriptions):
                            conn.send_text({"subscriptionId": subscription, "event": event})
                    elif scope == "market" and stream in conn.streams:
                        conn.send_text(event)
                    else:
                        continue
                    self.counters["events"] += 1
                except _Closed:
                    conn.shutdown()


def _plain(handler: BaseHTTPRequestHandler, status: int, text: str) -> None:
    body = text.encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "text/plain")
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.wfile.write(body)
