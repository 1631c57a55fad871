"""The loopback Bybit's private websocket stream (V5): order and execution pushes.

What ccxt.pro's `bybit` (ccxt 4.5, ccxt/pro/bybit.py) asks of it, served as Bybit's docs
describe (github.com/bybit-exchange/docs at 072c197):

- ``ws://HOST:PORT/v5/private`` — docs/v5/websocket/wss-authentication.mdx (slug
  /v5/ws/connect): the private stream's one URL (``wss://stream[-testnet].bybit.com``).
  ccxt picks ``urls.api.ws.private.contract`` for spot too on a unified account.
- Auth, same page: ``{"op": "auth", "args": [apiKey, expires, signature]}`` with
  signature = hex HMAC-SHA256(secret, "GET/realtime" + expires) and expires in the
  future; answered ``{"success": true, "ret_msg": "", "op": "auth", "conn_id": ...}``.
  Refusals (a bad signature, a subscribe before auth, an unknown op) are not worded in
  the docs: ``"success": false`` with ccxt's handle_error_message examples' ret_msg.
- Subscribe, same page: ``{"op": "subscribe", "args": ["order", "execution"]}``
  answered ``{"success": true, "ret_msg": "", "op": "subscribe", "conn_id": ...}``;
  the all-in-one topics and the categorised ones (``order.spot``) both work
  (docs/v5/websocket/private/order.mdx, execution.mdx).
- Heartbeat, same page: ``{"req_id": "1", "op": "ping"}`` answered on the private
  stream ``{"req_id": "1", "op": "pong", "args": ["<ms>"], "conn_id": ...}``. Bybit
  recommends a ping every 20 s; ccxt sends one every 18 s (keepAlive 18000).
- Pushes: ``{"id", "topic": "order", "creationTime", "data": [...]}`` with the fields of
  order.mdx (orderId, orderLinkId, orderStatus New/PartiallyFilled/Filled/Cancelled,
  cumExecQty, avgPrice, ...), and ``{"topic": "execution", ...}`` with execution.mdx's
  (execId, execPrice, execQty, execFee, feeCurrency, execTime in ms, ...). These are the
  REST shapes of the loopback (order/realtime, execution/list), the same names Bybit
  uses, with ``category`` added as the stream carries it; so a fill heard here and over
  REST has one execId. ccxt reads the fee currency from ``feeCoin``; Bybit's docs name
  it ``feeCurrency`` (sent here), so ccxt falls back to its own guess from the side.

Only the spot book is pushed (the ledger's listeners); linear orders are not streamed.
Bybit serves REST (api.bybit.com) and the stream (stream.bybit.com) on different hosts;
here the stream is mounted on the venue's own server (venues.transport), so an account
whose api_url_override is the venue's `url` trades and streams on one base URL, as
`ws_client_rebase` expects.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from typing import TYPE_CHECKING

from venues.orders import Order, Trade
from venues.transport import Connection, Json, TopicEndpoint

if TYPE_CHECKING:
    from venues.bybit import BybitLoopback

PRIVATE_PATH = "/v5/private"
TOPICS = ("order", "execution")


def _ms() -> int:
    return int(time.time() * 1000)


class BybitPrivateStream(TopicEndpoint):
    """`venue.ws`: the private stream, on the venue's port."""

    paths = (PRIVATE_PATH,)

    def __init__(self, venue: BybitLoopback) -> None:
        super().__init__(venue)
        self.venue = venue

    # Client messages.

    def received(self, conn: Connection, message: Json) -> None:
        op = message.get("op")
        args = message.get("args") or []
        answer: Json = {"conn_id": conn.id, "op": op}
        if "req_id" in message:
            answer["req_id"] = message["req_id"]
        if op == "ping":
            conn.send({**answer, "op": "pong", "args": [str(_ms())]})
        elif op == "auth":
            conn.authed = self._auth_ok(args)
            error = "" if conn.authed else "error:USVC1111"
            conn.send({**answer, "success": conn.authed, "ret_msg": error})
        elif op in ("subscribe", "unsubscribe"):
            if not conn.authed:
                conn.send({**answer, "success": False, "ret_msg": "Request not authorized"})
                return
            topics = {str(t) for t in args}
            if op == "subscribe":
                conn.topics |= topics
            else:
                conn.topics -= topics
            conn.send({**answer, "success": True, "ret_msg": ""})
        else:
            request = {"op": op, "args": args or None}
            conn.send(
                {**answer, "success": False, "ret_msg": "error:invalid op", "request": request}
            )

    def _auth_ok(self, args: list[object]) -> bool:
        if len(args) != 3:
            return False
        key, expires, signature = (str(a) for a in args)
        expected = hmac.new(
            self.venue.api_secret.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256
        ).hexdigest()
        return (
            hmac.compare_digest(key.encode(), self.venue.api_key.encode())
            and hmac.compare_digest(signature.encode(), expected.encode())
            and expires.isdigit()
            and int(expires) > _ms()
        )

    # Pushes (a ledger listener: called in the REST thread, under the ledger's lock).

    def order_event(
        self, order: Order, exec_type: str, trade: Trade | None, cancel_id: str | None
    ) -> None:
        if trade is not None:
            execution = self.venue._execution_json(trade, order, "spot")
            self._push("execution", {"category": "spot", **execution})
        self._push("order", {"category": "spot", **self.venue._order_json(order, "spot")})

    def _push(self, topic: str, item: Json) -> None:
        message = {"id": uuid.uuid4().hex, "topic": topic, "creationTime": _ms(), "data": [item]}
        categorised = f"{topic}.{item['category']}"

        def wants(conn: Connection) -> bool:
            return conn.authed and (topic in conn.topics or categorised in conn.topics)

        self.push(wants, message)
