"""The loopback Binance USDⓈ-M futures user data stream: listenKey and ORDER_TRADE_UPDATE.

Served as Binance's USDⓈ-M futures docs describe it (developers.binance.com/docs/derivatives/
usds-margined-futures/user-data-streams/...):

- Connect, "User Data Streams Connect": "A User Data Stream listenKey is valid for 60
  minutes after creation." "Doing a PUT on a listenKey will extend its validity for 60
  minutes, if response -1125 error "This listenKey does not exist." Please use POST
  /fapi/v1/listenKey to recreate listenKey." "Doing a POST on an account with an active
  listenKey will return the currently active listenKey and extend its validity for 60
  minutes." "User Data Streams are accessed at /ws/<listenKey>". "A single connection is
  only valid for 24 hours; expect to be disconnected at the 24 hour mark". The validity
  and the cut-off are constructor parameters, so a test can reach them.
- Keepalive-User-Data-Stream: PUT /fapi/v1/listenKey, no parameters (one key per account),
  answered ``{"listenKey": ...}``. The three listenKey calls are USER_STREAM: the API key
  header, no signature (ccxt signs them so: binance.sign, path "listenKey").
- Event-User-Data-Stream-Expired: when a connected key expires the stream sends
  ``{"e": "listenKeyExpired", "E", "listenKey"}`` and "No more user data event will be
  updated after this event received until a new valid listenKey used"; "This event is not
  related to the websocket disconnection": the socket stays open.
- Event-Order-Update: ``{"e": "ORDER_TRADE_UPDATE", "E": event time, "T": transaction
  time, "o": {"s", "c", "S", "o", "f", "q", "p", "ap", "sp", "x", "X", "i", "l", "z", "L",
  "N", "n", "T": order trade time, "t": trade id, "b", "a", "m", "R", "wt", "ot", "ps",
  "cp", "rp", "pP", "si", "ss", "V", "pm", "gtd"}}`` for every change of the book: x NEW,
  TRADE (one per fill, t and n/N the REST userTrades' id and commission, so a fill heard
  here and over REST is one trade), CANCELED. "N"/"n": "will not push if no commission".

What ccxt.pro's `binanceusdm` (ccxt 4.5.90, ccxt/pro/binance.py) does with it: its
authenticate() POSTs /fapi/v1/listenKey, keep_alive_listen_key() PUTs it every 20 minutes
(listenKeyRefreshRate), and watch_orders / watch_my_trades open
``<urls.api.ws.linear minus /ws>/private/ws?listenKey=<key>`` (get_private_ws_url), not
the docs' /ws/<listenKey> and not the WebSocket API (ws-fapi). That is Binance's newer
routed path: "fstream.binance.com splits into three routed paths ... /private | User data"
(developers.binance.com/docs/products/caas/market-data-streams). Both paths are served
here. ccxt reads the order from "o" (clientOrderId from "c"), the trade from the same
object when x is TRADE (id t, time o.T, price L, amount l, fee n/N), and needs "ps" to
take BTCUSDT for the swap. It has no handler for listenKeyExpired (ignored).

Not in the docs, so chosen here: a websocket opened with an unknown or expired key is
closed at once (a normal close). ACCOUNT_UPDATE (balances and positions) is not pushed; positions
are read over REST (v3 positionRisk). Server pings are not modelled.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from venues.data import fmt
from venues.orders import ZERO, BinanceError, Order, Trade
from venues.transport import Connection, Endpoint, Json, LoopServer

if TYPE_CHECKING:
    from venues.server import FuturesBook

LISTEN_KEY_PATH = "/fapi/v1/listenKey"
ROUTED_PATH = "/private/ws"  # ccxt's: ?listenKey=<key>
VALIDITY_S = 3600.0
MAX_LIFETIME_S = 24 * 3600.0
NO_SUCH_KEY = (-1125, "This listenKey does not exist.")


def _ms(clock: Callable[[], float]) -> int:
    return int(clock() * 1000)


def order_trade_update(order: Order, exec_type: str, trade: Trade | None, now_ms: int) -> Json:
    """One ORDER_TRADE_UPDATE (Event-Order-Update's "Response Example") for this change."""
    # Amounts are written as venues.binance_futures' REST answers write them.
    average = order.cum_quote / order.executed_qty if order.executed_qty else ZERO
    at_ms = trade.time if trade is not None else order.update_time
    body: Json = {
        "s": order.spec.symbol,
        "c": order.client_order_id,
        "S": order.side,
        "o": order.type,
        "f": order.time_in_force,
        "q": f"{order.orig_qty}",
        "p": f"{order.price}",
        "ap": f"{average}",
        "sp": "0",
        "x": exec_type,
        "X": order.status,
        "i": order.order_id,
        "l": f"{trade.qty if trade is not None else ZERO}",
        "z": f"{order.executed_qty}",
        "L": f"{trade.price if trade is not None else ZERO}",
        "T": at_ms,
        "t": trade.id if trade is not None else 0,
        "b": "0",
        "a": "0",
        "m": bool(trade is not None and trade.is_maker),
        "R": False,
        "wt": "CONTRACT_PRICE",
        "ot": order.type,
        "ps": "BOTH",  # one-way mode
        "cp": False,
        "rp": "0",
        "pP": False,
        "si": 0,
        "ss": 0,
        "V": "EXPIRE_MAKER",
        "pm": "NONE",
        "gtd": 0,
    }
    if trade is not None:  # "N"/"n": "will not push if no commission"
        body |= {"N": trade.commission_asset, "n": fmt(trade.commission)}
    return {"e": "ORDER_TRADE_UPDATE", "E": now_ms, "T": at_ms, "o": body}


class FuturesUserStream(Endpoint):
    """`venue.ws`: the account's listenKey and its user data stream, on the venue's port."""

    def __init__(
        self,
        host: LoopServer,
        *,
        api_key: str,
        listen_key_validity_s: float = VALIDITY_S,
        max_lifetime_s: float | None = MAX_LIFETIME_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(host, max_lifetime_s=max_lifetime_s)
        self.api_key = api_key
        self.validity_s = listen_key_validity_s
        self.clock = clock
        self.listen_key: str | None = None
        self.expires_at = 0.0
        self._key_lock = threading.Lock()

    def hear(self, book: FuturesBook) -> None:
        book.listeners.append(self.order_event)

    # The listenKey (REST, on a worker thread).

    def active_key(self) -> str | None:
        with self._key_lock:
            if self.listen_key is not None and self.clock() < self.expires_at:
                return self.listen_key
            return None

    def listen_key_call(self, method: str, api_key: str | None) -> Json:
        """POST / PUT / DELETE /fapi/v1/listenKey (USER_STREAM: the key header only)."""
        if not api_key:
            raise BinanceError(-2014, "API-key format invalid.", 401)
        if not secrets.compare_digest(api_key, self.api_key):
            raise BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        with self._key_lock:
            active = self.listen_key is not None and self.clock() < self.expires_at
            if method == "POST":
                if not active:
                    self.listen_key = secrets.token_urlsafe(48)
                self.expires_at = self.clock() + self.validity_s
                return {"listenKey": self.listen_key}
            if not active:
                raise BinanceError(*NO_SUCH_KEY)
            if method == "PUT":
                self.expires_at = self.clock() + self.validity_s
                return {"listenKey": self.listen_key}
            self.listen_key = None  # DELETE: "close the stream and invalidate the listenKey"
        self.drop_all(1000, "listenKey closed")
        return {}

    # Connections (loop thread).

    def accepts(self, path: str) -> bool:
        return path == ROUTED_PATH or (path.startswith("/ws/") and path.count("/") == 2)

    async def opened(self, conn: Connection, request: web.Request) -> bool:
        key = request.query.get("listenKey", "") if conn.path == ROUTED_PATH else conn.path[4:]
        if not key or key != self.active_key():
            conn.close()
            return False
        conn.kind = key
        conn.authed = True
        self.host.spawn(self._expire_key(conn))
        return True

    def received(self, conn: Connection, message: Json) -> None:
        """The user data stream takes no requests; what a client sends is ignored."""

    async def _expire_key(self, conn: Connection) -> None:
        while not conn.ws.closed:
            with self._key_lock:
                left = self.expires_at - self.clock() if self.listen_key == conn.kind else 0.0
            if left <= 0:
                conn.authed = False  # no more user data on this socket
                event = {"e": "listenKeyExpired", "E": _ms(self.clock), "listenKey": conn.kind}
                conn.send(event)
                return
            await asyncio.sleep(min(left, 1.0))

    # Pushes (a FuturesBook listener: the REST thread, under the book's lock).

    def order_event(
        self, order: Order, exec_type: str, trade: Trade | None, cancel_id: str | None
    ) -> None:
        if not self.count(lambda conn: conn.authed):
            return
        event = order_trade_update(order, exec_type, trade, _ms(self.clock))
        self.push(lambda conn: conn.authed and conn.kind == self.listen_key, event)
