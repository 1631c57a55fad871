"""The loopback KuCoin's private websocket (classic account): order change pushes.

What ccxt.pro's `kucoin` (ccxt 4.5, ccxt/pro/kucoin.py) asks of it on a classic (not
unified) account, served as KuCoin's docs describe (github.com/Kucoin/kucoin-api-docs
source/localizable/index.html.md at 7f01bbe, "Websocket Feed" and "Private Order Change";
the topic schemas in github.com/Kucoin/kucoin-universal-sdk spec/ws/openapi-spot-private.json
at 78c90c7):

- Apply connect token: ``POST /api/v1/bullet-private`` (signed like any private REST
  call; routed in venues.kucoin) answers ``{"token", "instanceServers": [{"endpoint",
  "protocol": "websocket", "encrypt", "pingInterval", "pingTimeout"}]}``. The endpoint is
  dynamic ("It is recommended to use a dynamic URL"), so this server's own address is
  handed out and no URL rebasing is needed. ccxt connects to
  ``<endpoint>?token=...&privateChannel=true&connectId=private``.
- Create connection: the server's first message is ``{"id": <connectId>, "type":
  "welcome"}``; an unknown token gets ``{"id": <connectId>, "type": "error", ...}``
  ("Both the id of the welcome message and the id of the error message are connectId")
  and the socket is closed. The error's code and words are not in the docs: 401 and
  "token is invalid" here.
- Ping: ``{"id", "type": "ping"}`` answered ``{"id", "type": "pong"}``; ccxt pings every
  pingInterval (18 s, as the docs' example hands out).
- Subscribe: ``{"id", "type": "subscribe", "topic", "privateChannel": true, "response":
  true}`` answered ``{"id", "type": "ack"}`` when response is true. ccxt's watch_orders and
  watch_my_trades both take ``/spotMarket/tradeOrders`` (one subscription); the V2 topic
  ``/spotMarket/tradeOrdersV2`` is served too.
- Pushes: ``{"type": "message", "topic", "subject": "orderChange", "channelType":
  "private", "data"}`` with data.type ``open`` (a limit order entering the book),
  ``match`` (matchPrice, matchSize, tradeId, liquidity, feeType), ``filled`` and
  ``canceled`` (status ``done``); V2 also sends ``received`` (status ``new``) first. Times:
  orderTime in ms, ts in ns. tradeId and orderId are the loopback REST ids, so a fill
  heard here and over REST (/api/v1/hf/fills) is one trade. The docs' order messages
  carry no fee, so neither do these: the fee of a streamed fill is only known over REST.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from aiohttp import web

from venues.orders import Order, Trade
from venues.transport import Connection, Json, TopicEndpoint

if TYPE_CHECKING:
    from venues.kucoin import KucoinLoopback

ENDPOINT_PATH = "/endpoint"
V1, V2 = "/spotMarket/tradeOrders", "/spotMarket/tradeOrdersV2"
PING_INTERVAL_MS = 18000
USER_ID = "633559791e1cbc0001f319bc"  # the docs' example user


class KucoinPrivateStream(TopicEndpoint):
    """`venue.ws`: the private order channel, on the venue's port."""

    paths = (ENDPOINT_PATH,)

    def __init__(self, venue: KucoinLoopback) -> None:
        super().__init__(venue)
        self.venue = venue
        self.tokens: set[str] = set()

    def bullet(self) -> Json:
        """POST /api/v1/bullet-private's data: a fresh token and this server's endpoint."""
        token = secrets.token_urlsafe(24)
        self.tokens.add(token)
        endpoint = "ws" + self.url[len("http") :] + ENDPOINT_PATH
        server = {
            "endpoint": endpoint,
            "encrypt": False,
            "protocol": "websocket",
            "pingInterval": PING_INTERVAL_MS,
            "pingTimeout": 10000,
        }
        return {"token": token, "instanceServers": [server]}

    # Client messages.

    async def opened(self, conn: Connection, request: web.Request) -> bool:
        connect_id = request.query.get("connectId") or conn.id
        if request.query.get("token") not in self.tokens:
            conn.send({"id": connect_id, "type": "error", "code": 401, "data": "token is invalid"})
            conn.close()
            return False
        conn.authed = True
        conn.send({"id": connect_id, "type": "welcome"})
        return True

    def received(self, conn: Connection, message: Json) -> None:
        kind = message.get("type")
        request_id = str(message.get("id", ""))
        if kind == "ping":
            conn.send({"id": request_id, "type": "pong"})
            return
        if kind not in ("subscribe", "unsubscribe"):
            conn.send(
                {"id": request_id, "type": "error", "code": 400, "data": "type is not supported"}
            )
            return
        topics = {t for t in str(message.get("topic", "")).split(",") if t}
        if kind == "subscribe":
            conn.topics |= topics
        else:
            conn.topics -= topics
        if message.get("response"):
            conn.send({"id": request_id, "type": "ack"})

    # Pushes (a ledger listener: called in the REST thread, under the ledger's lock).

    def order_event(
        self, order: Order, exec_type: str, trade: Trade | None, cancel_id: str | None
    ) -> None:
        if exec_type == "NEW":
            self._push(order, "received", "new", versions=(V2,))
            if order.type == "LIMIT":
                self._push(order, "open", "open")
        elif exec_type == "TRADE" and trade is not None:
            # A taker's match says status "match"; a resting (maker) order's says "open".
            self._push(order, "match", "open" if trade.is_maker else "match", trade=trade)
            if order.status == "FILLED":
                self._push(order, "filled", "done")
        elif exec_type in ("CANCELED", "EXPIRED"):
            self._push(order, "canceled", "done")

    def _push(
        self,
        order: Order,
        kind: str,
        status: str,
        *,
        trade: Trade | None = None,
        versions: tuple[str, ...] = (V1, V2),
    ) -> None:
        done = status == "done"
        canceled = kind == "canceled"
        data: Json = {
            "symbol": order.spec.symbol,
            "orderType": order.type.lower(),
            "side": order.side.lower(),
            "orderId": str(order.order_id),
            "type": kind,
            "orderTime": order.time,
            "size": f"{order.orig_qty}",
            "originSize": f"{order.orig_qty}",
            "filledSize": f"{order.executed_qty}",
            "price": f"{order.price}",
            "clientOid": order.client_order_id,
            "remainSize": "0" if done else f"{order.remaining}",
            "canceledSize": f"{order.remaining}" if canceled else "0",
            "status": status,
            "ts": (trade.time if trade is not None else order.update_time) * 1_000_000,
        }
        if trade is not None:
            data |= {
                "liquidity": "maker" if trade.is_maker else "taker",
                "feeType": "makerFee" if trade.is_maker else "takerFee",
                "matchPrice": f"{trade.price}",
                "matchSize": f"{trade.qty}",
                "tradeId": str(trade.id),
            }
        for topic in versions:
            message = {
                "type": "message",
                "topic": topic,
                "subject": "orderChange",
                "channelType": "private",
                "data": dict(data),
            }
            if topic == V2:
                message["userId"] = USER_ID

            def wants(conn: Connection, topic: str = topic) -> bool:
                return conn.authed and topic in conn.topics

            self.push(wants, message)
