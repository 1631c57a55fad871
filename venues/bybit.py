"""A loopback Bybit (V5 API, unified trading account): spot and USDT linear perpetuals.

It serves what ccxt's `bybit` class calls to trade (bybit-exchange.github.io/docs/v5):
instruments-info (spot, linear), asset/coin/query-info (load_markets with keys),
user/query-api and account/info (ccxt's unified-account probe), order/create,
order/realtime, order/cancel, execution/list, account/wallet-balance,
account/set-margin-mode, position/set-leverage and position/list. Private requests are
checked as Bybit does: X-BAPI-API-KEY, X-BAPI-TIMESTAMP within X-BAPI-RECV-WINDOW, and
X-BAPI-SIGN = HMAC-SHA256(secret, timestamp + key + recv_window + query or JSON body).
Answers are Bybit's envelope `{"retCode", "retMsg", "result", "retExtInfo", "time"}`.
Spot fills follow loopback_ledger's model, linear ones loopback_venue's FuturesBook.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from venues.binance_api import Reply, json_reply
from venues.bybit_ws import BybitPrivateStream
from venues.data import SymbolSpec
from venues.faults import retry_after_s
from venues.orders import BinanceError, NewOrder, Order, Trade
from venues.server import (
    FuturesBook,
    Request,
    VenueError,
    VenueServer,
    average,
    ledger_kind,
    spot_ledger,
)

API_KEY = "loopback-bybit-key"
API_SECRET = "loopback-bybit-secret"  # noqa: S105

# kind -> (retCode, retMsg): the codes and wording of docs/v5/error.mdx ("UTA" and "Spot
# Trade" tables). Which code a UTA spot duplicate gets (110072 "UTA" or 170141 "Spot Trade")
# the docs do not say: 110072 here for both categories. Which code a quantity off the step
# gets on linear the docs do not say either: 10001 "Request parameter error".
SPOT_ERRORS = {
    "duplicate": (110072, "OrderLinkedID is duplicate"),
    "insufficient": (170131, "Balance insufficient"),
    "lot_size": (170137, "Order volume decimal too long"),
    "min_notional": (170140, "Order value exceeded lower limit"),
    "not_found": (170213, "Order does not exist."),
    "not_open": (170213, "Order does not exist."),
}
LINEAR_ERRORS = {
    "duplicate": (110072, "OrderLinkedID is duplicate"),
    "insufficient": (110007, "Available balance is insufficient"),
    "lot_size": (10001, "Request parameter error"),
    "min_notional": (110094, "Order notional value below the lower limit"),
    "not_found": (110001, "Order does not exist"),
    "not_open": (110001, "Order does not exist"),
    "reduce_only": (110017, "orderQty will be truncated to zero"),
}
COMMON_ERRORS = {
    "auth_key": (10003, "API key is invalid."),
    "auth_sign": (10004, "Error sign, please check your signature generation algorithm."),
    # guide.mdx "HTTP Headers for Authenticated Endpoints": the request is refused unless
    # "server_time - recv_window <= timestamp < server_time + 1000".
    "auth_time": (10002, "The request time exceeds the time window range."),
    "symbol": (10001, "params error: symbol invalid"),
    # error.mdx words 110043 "Set leverage has not been modified."; this venue keeps its
    # older "leverage not modified", which the adapter's "already so" check reads (it should
    # read the code: the docs' text would not match it).
    "leverage_unchanged": (110043, "Set leverage has not been modified."),  # error.mdx
    "bad_request": (10001, "Request parameter error"),
    # rate-limit.mdx "API Rate Limit": '"retCode": 10006, "retMsg": "Too many visits!"'.
    "rate_limit": (10006, "Too many visits!"),
}
STATUS = {
    "NEW": "New",
    "PARTIALLY_FILLED": "PartiallyFilled",
    "FILLED": "Filled",
    "CANCELED": "Cancelled",
    "EXPIRED": "Cancelled",
}
MARGIN_MODES = {"ISOLATED_MARGIN": "isolated", "REGULAR_MARGIN": "cross"}


def spot_spec(symbol: str, base: str, quote: str = "USDT") -> SymbolSpec:
    return SymbolSpec(symbol, base, quote, Decimal("0.01"), Decimal("0.000001"), Decimal("5"))


def linear_spec(symbol: str, base: str, quote: str = "USDT") -> SymbolSpec:
    return SymbolSpec(symbol, base, quote, Decimal("0.10"), Decimal("0.001"), Decimal("5"))


def _ms(value: int) -> str:
    return str(value)


# docs/v5/rate-limit/rate-limit.mdx "API Rate Limit Table" (UTA2.0 Pro), per second per UID:
# (path, category) -> limit; a path without a category row is the same for every category.
UID_LIMITS: dict[tuple[str, str], int] = {
    ("/v5/order/create", "linear"): 10,
    ("/v5/order/create", "spot"): 20,
    ("/v5/order/cancel", "linear"): 10,
    ("/v5/order/cancel", "spot"): 20,
    ("/v5/order/realtime", ""): 50,
    ("/v5/order/history", ""): 50,
    ("/v5/execution/list", ""): 50,
    ("/v5/position/list", ""): 50,
    ("/v5/position/set-leverage", ""): 10,
    ("/v5/account/wallet-balance", ""): 50,
    ("/v5/account/info", ""): 50,
    ("/v5/account/set-margin-mode", ""): 5,
}


@dataclass
class BybitLimits:
    """Bybit's REST limits (docs/v5/rate-limit/rate-limit.mdx), small windows for tests.

    - "HTTP IP limit": "600 requests within a 5-second window per IP"; past it "403, access
      too frequent": "wait for at least 10 minutes. The ban will be lifted automatically."
      (The docs give no body for the 403: plain text here.)
    - "API Rate Limit": "rolling time window per second and UID", per endpoint (the table
      above); past it `"retCode": 10006, "retMsg": "Too many visits!"` in the JSON answer
      (a 200, as every retCode here: the docs name no HTTP status for it). "Every request
      to the API returns" X-Bapi-Limit-Status (remaining), X-Bapi-Limit (the limit) and
      X-Bapi-Limit-Reset-Timestamp ("when your request limit resets if you have exceeded
      your rate_limit. Otherwise, this is just the current timestamp"); here on private
      requests, the ones counted per UID. Refused requests are not counted.
    """

    ip_limit: int = 600
    ip_window_s: float = 5.0
    ban_s: float = 600.0
    window_s: float = 1.0
    uid_limits: Mapping[tuple[str, str], int] = field(default_factory=lambda: dict(UID_LIMITS))
    default_limit: int = 50  # a private path the table above does not list
    clock: Callable[[], float] = time.time
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ip: deque[float] = field(default_factory=deque)
    _banned_until: float = 0.0
    _uid: dict[tuple[str, str], deque[float]] = field(default_factory=dict)
    refused: dict[int, int] = field(default_factory=dict)  # 403 / 10006 -> how many

    def admit_ip(self) -> Reply | None:
        """The 403 of an IP over 600 requests in 5 s (and of every request in its ban)."""
        with self._lock:
            now = self.clock()
            if now < self._banned_until:
                return self._refuse(403)
            while self._ip and self._ip[0] <= now - self.ip_window_s:
                self._ip.popleft()
            if len(self._ip) >= self.ip_limit:
                self._banned_until = now + self.ban_s
                return self._refuse(403)
            self._ip.append(now)
            return None

    def admit_uid(self, path: str, category: str) -> tuple[bool, dict[str, str]]:
        """(admitted, the X-Bapi-Limit headers) for one private request."""
        with self._lock:
            now = self.clock()
            key = (path, category) if (path, category) in self.uid_limits else (path, "")
            limit = self.uid_limits.get(key, self.default_limit)
            seen = self._uid.setdefault(key, deque())
            while seen and seen[0] <= now - self.window_s:
                seen.popleft()
            admitted = len(seen) < limit
            reset = now
            if admitted:
                seen.append(now)
            else:
                reset = seen[0] + self.window_s
                self.refused[10006] = self.refused.get(10006, 0) + 1
            headers = {
                "X-Bapi-Limit-Status": str(limit - len(seen)),
                "X-Bapi-Limit": str(limit),
                "X-Bapi-Limit-Reset-Timestamp": str(int(reset * 1000)),
            }
            return admitted, headers

    def _refuse(self, status: int) -> Reply:
        self.refused[status] = self.refused.get(status, 0) + 1
        return Reply(status, b"access too frequent", "text/plain")


class BybitLoopback(VenueServer):
    """`with BybitLoopback() as ex:` — ccxt.bybit with urls rebased onto ex.url trades here."""

    server_version = "loopback-bybit/1"

    def __init__(
        self,
        *,
        port: int = 0,
        api_key: str = API_KEY,
        api_secret: str = API_SECRET,
        balances: Mapping[str, Decimal | str] | None = None,
        margin: Decimal | str = "100000",
        visibility_lag_s: float = 0.0,
        rate_limits: BybitLimits | None = None,
    ) -> None:
        super().__init__(port=port)
        # Bybit's IP and per-UID limits (BybitLimits); off unless a test passes them.
        self.limits = rate_limits
        # docs/v5/order/create-order.mdx: "This request is asynchronous": an accepted order
        # is not visible to the look-ups for this long (0: at once).
        self.visibility_lag_s = visibility_lag_s
        # The realtime index forgets closed orders from before the last restart
        # (docs/v5/order/open-order.mdx, see `_realtime`); `advance` moves the clock the
        # history's retention rules read, so a test can age orders by days at once.
        self.restarted_at_ms = 0
        self.clock_offset_ms = 0
        self.api_key = api_key
        self.api_secret = api_secret
        self.spot = spot_ledger(
            {"BTCUSDT": spot_spec("BTCUSDT", "BTC")},
            balances if balances is not None else {"USDT": "100000"},
            "0.001",
        )
        self.linear = FuturesBook(
            {"BTCUSDT": linear_spec("BTCUSDT", "BTC")}, wallet=Decimal(str(margin))
        )
        self.margin_mode = "REGULAR_MARGIN"  # account-wide on a unified account
        # The private websocket stream (venues.bybit_ws) hears every spot order change.
        self.ws = BybitPrivateStream(self)
        self.spot.listeners.append(self.ws.order_event)

    def close(self) -> None:
        self.ws.close()
        super().close()

    def restart(self) -> None:
        """A Bybit service restart: the realtime index loses every closed order.

        docs/v5/order/open-order.mdx (openOnly): "If the Bybit service is restarted due to
        an update, this part of the data will be cleared and accumulated again, but the
        order records will still be queried in order history".
        """
        self.restarted_at_ms = int(time.time() * 1000)

    def advance(self, seconds: float) -> None:
        """Move the venue's clock forward (for the history's 24 h / 7 day retention)."""
        self.clock_offset_ms += int(seconds * 1000)

    def _now_ms(self) -> int:
        return int(time.time() * 1000) + self.clock_offset_ms

    def set_price(self, symbol: str, price: Decimal | str) -> None:
        self.spot.set_price(symbol, Decimal(str(price)))
        self.linear.set_price(symbol, price)

    # Dispatch.

    def route(self, request: Request) -> Reply:
        entry = ROUTES.get((request.method, request.path))
        if entry is None:
            return Reply(404, b"", "text/plain")
        if self.limits is not None:
            banned = self.limits.admit_ip()
            if banned is not None:
                return banned
        private, endpoint = entry
        params = request.params
        category = str(params.get("category", ""))
        headers: dict[str, str] = {}
        if private:
            self._authenticate(request)
            if self.limits is not None:
                admitted, headers = self.limits.admit_uid(request.path, category)
                if not admitted:
                    reply = self.error_reply(VenueError("rate_limit"))
                    reply.headers.update(headers)
                    return reply
        try:
            reply = self._ok(endpoint(self, params))
        except BinanceError as exc:  # the spot ledger's refusal
            reply = self.error_reply(VenueError(ledger_kind(exc), exc.msg, "spot"))
        except VenueError as exc:
            exc.context = exc.context or category
            reply = self.error_reply(exc)
        reply.headers.update(headers)
        return reply

    def error_reply(self, exc: VenueError) -> Reply:
        """A refusal as a retCode in the envelope, with HTTP 200.

        guide.mdx "Common response parameters": "retCode | Success/Error code"; error.mdx
        lists HTTP codes (400, 401, 403, 404, 429) apart from the retCodes, and
        rate-limit.mdx finds 10006 "in the JSON response". The docs never say in words
        that a refusal is an HTTP 200; this venue answers every retCode with one.
        """
        specific = LINEAR_ERRORS if exc.context == "linear" else SPOT_ERRORS
        table = {**COMMON_ERRORS, **specific}
        code, msg = table.get(exc.kind, COMMON_ERRORS["bad_request"])
        body = {"retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {}}
        return json_reply(200, {**body, "time": int(time.time() * 1000)})

    def fault_reply(self, kind: str, params: Mapping[str, Any]) -> Reply:
        """An injected fault in Bybit's envelope.

        error.mdx "HTTP Code": "429 | System level frequency protection. Please retry when
        encounter this"; rate-limit.mdx: retCode 10006 "Too many visits!" with
        X-Bapi-Limit-Status / X-Bapi-Limit / X-Bapi-Limit-Reset-Timestamp (Retry-After is
        HTTP's own, not Bybit's); "HTTP IP limit": '"403, access too frequent"'. A 5xx
        carries error.mdx's "10016 | Server error." (WS OE: "internal server error;
        Service is restarting").
        """
        now = int(time.time() * 1000)
        retry = retry_after_s(dict(params))
        if kind == "ip_ban_418":
            return Reply(403, b"access too frequent", "text/plain", {"Retry-After": str(retry)})
        if kind == "rate_limit_429":
            status, code, msg = 429, 10006, "Too many visits!"
        else:
            status, code, msg = int(params["status"]), 10016, "Server error."
        body = {"retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {}, "time": now}
        headers = {
            "X-Bapi-Limit": "10",
            "X-Bapi-Limit-Status": "0",
            "X-Bapi-Limit-Reset-Timestamp": str(now + retry * 1000),
            "Retry-After": str(retry),
        }
        return json_reply(status, body, headers if status == 429 else None)

    def _ok(self, result: object) -> Reply:
        body = {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}}
        return json_reply(200, {**body, "time": int(time.time() * 1000)})

    def _authenticate(self, request: Request) -> None:
        headers = request.headers
        key = headers.get("x-bapi-api-key", "")
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            raise VenueError("auth_key")
        timestamp = headers.get("x-bapi-timestamp", "")
        window = headers.get("x-bapi-recv-window", "5000")
        payload = request.body if request.method == "POST" else request.query
        expected = hmac.new(
            self.api_secret.encode(), (timestamp + key + window + payload).encode(), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected, headers.get("x-bapi-sign", "")):
            raise VenueError("auth_sign")
        now = int(time.time() * 1000)
        if not timestamp.isdigit() or not (now - int(window) <= int(timestamp) < now + 1000):
            raise VenueError("auth_time")

    # Shapes.

    def _order_json(self, order: Order, category: str) -> dict[str, object]:
        body: dict[str, object] = {
            "orderId": str(order.order_id),
            "orderLinkId": order.client_order_id,
            "blockTradeId": "",
            "symbol": order.spec.symbol,
            "price": f"{order.price}" if order.price else "0",
            "qty": f"{order.orig_qty}",
            "side": order.side.capitalize(),
            "isLeverage": "",
            "positionIdx": 0,
            "orderStatus": STATUS[order.status],
            "cancelType": "CancelByUser" if order.status == "CANCELED" else "UNKNOWN",
            "rejectReason": "EC_NoError",
            "avgPrice": f"{average(order)}" if order.executed_qty else "",
            "leavesQty": f"{order.remaining if order.is_open else 0}",
            "leavesValue": "0",
            "cumExecQty": f"{order.executed_qty}",
            "cumExecValue": f"{order.cum_quote}",
            "cumExecFee": "0",
            "timeInForce": "IOC" if order.type == "MARKET" else "GTC",
            "orderType": order.type.capitalize(),
            "stopOrderType": "",
            "orderIv": "",
            "triggerPrice": "0",
            "takeProfit": "0",
            "stopLoss": "0",
            "triggerDirection": 0,
            "reduceOnly": False,
            "closeOnTrigger": False,
            "createdTime": _ms(order.time),
            "updatedTime": _ms(order.update_time),
        }
        if category == "spot":
            body["marketUnit"] = "baseCoin" if order.type == "MARKET" else ""
        else:
            body["tpslMode"] = ""
        return body

    def _execution_json(self, trade: Trade, order: Order, category: str) -> dict[str, object]:
        return {
            "symbol": trade.symbol,
            "orderId": str(order.order_id),
            "orderLinkId": order.client_order_id,
            "side": trade.side.capitalize(),
            "orderPrice": f"{order.price}",
            "orderQty": f"{order.orig_qty}",
            "leavesQty": f"{order.remaining}",
            "createType": "CreateByUser",
            "orderType": order.type.capitalize(),
            "execFee": f"{trade.commission}",
            "feeCurrency": trade.commission_asset,
            "execId": f"{category}-{trade.id}",
            "execPrice": f"{trade.price}",
            "execQty": f"{trade.qty}",
            "execType": "Trade",
            "execValue": f"{trade.price * trade.qty}",
            "execTime": _ms(trade.time),
            "isMaker": trade.is_maker,
            "feeRate": "0.001" if category == "spot" else "0.0005",
            "seq": trade.id,
        }

    # Endpoints.

    def _category(self, params: Mapping[str, Any]) -> str:
        category = str(params.get("category", ""))
        if category not in ("spot", "linear"):
            raise VenueError("bad_request", f"category {category!r} is not served here")
        return category

    def _instruments(self, params: Mapping[str, Any]) -> object:
        category = self._category(params)
        if params.get("status") == "PreLaunch":
            return {"category": category, "list": [], "nextPageCursor": ""}
        rows: list[dict[str, object]] = []
        if category == "spot":
            for spec in self.spot.specs.values():
                rows.append(
                    {
                        "symbol": spec.symbol,
                        "baseCoin": spec.base,
                        "quoteCoin": spec.quote,
                        "innovation": "0",
                        "status": "Trading",
                        "marginTrading": "none",
                        "stTag": "0",
                        "lotSizeFilter": {
                            "basePrecision": f"{spec.step_size}",
                            "quotePrecision": "0.00000001",
                            "minOrderQty": f"{spec.step_size}",
                            "maxOrderQty": "71.73956243",
                            "minOrderAmt": f"{spec.min_notional}",
                            "maxOrderAmt": "2000000",
                        },
                        "priceFilter": {"tickSize": f"{spec.tick_size}"},
                        "riskParameters": {
                            "priceLimitRatioX": "0.05",
                            "priceLimitRatioY": "0.05",
                        },
                    }
                )
        else:
            for spec in self.linear.specs.values():
                rows.append(
                    {
                        "symbol": spec.symbol,
                        "contractType": "LinearPerpetual",
                        "status": "Trading",
                        "baseCoin": spec.base,
                        "quoteCoin": spec.quote,
                        "launchTime": "1585526400000",
                        "deliveryTime": "0",
                        "deliveryFeeRate": "",
                        "priceScale": "2",
                        "leverageFilter": {
                            "minLeverage": "1",
                            "maxLeverage": "100.00",
                            "leverageStep": "0.01",
                        },
                        "priceFilter": {
                            "minPrice": f"{spec.tick_size}",
                            "maxPrice": "1999999.80",
                            "tickSize": f"{spec.tick_size}",
                        },
                        "lotSizeFilter": {
                            "maxOrderQty": "1190.000",
                            "minOrderQty": f"{spec.step_size}",
                            "qtyStep": f"{spec.step_size}",
                            "postOnlyMaxOrderQty": "1190.000",
                            "maxMktOrderQty": "500.000",
                            "minNotionalValue": f"{spec.min_notional}",
                        },
                        "unifiedMarginTrade": True,
                        "fundingInterval": 480,
                        "settleCoin": spec.quote,
                        "copyTrading": "both",
                        "upperFundingRate": "0.00375",
                        "lowerFundingRate": "-0.00375",
                    }
                )
        return {"category": category, "list": rows, "nextPageCursor": ""}

    def _coins(self, params: Mapping[str, Any]) -> object:
        coins = sorted(self.spot.free)
        return {
            "rows": [
                {
                    "name": coin,
                    "coin": coin,
                    "remainAmount": "1000000",
                    "chains": [
                        {
                            "chainType": coin,
                            "confirmation": "1",
                            "withdrawFee": "0",
                            "depositMin": "0",
                            "withdrawMin": "0",
                            "chain": coin,
                            "chainDeposit": "1",
                            "chainWithdraw": "1",
                            "minAccuracy": "8",
                            "withdrawPercentageFee": "0",
                        }
                    ],
                }
                for coin in coins
            ]
        }

    def _query_api(self, params: Mapping[str, Any]) -> object:
        return {
            "id": "1",
            "note": "loopback",
            "apiKey": self.api_key,
            "readOnly": 0,
            "secret": "",
            "permissions": {"Spot": ["SpotTrade"], "ContractTrade": ["Order", "Position"]},
            "ips": ["*"],
            "type": 1,
            "unified": 0,
            "uta": 1,
            "userID": 1,
            "isMaster": True,
        }

    def _account_info(self, params: Mapping[str, Any]) -> object:
        return {
            "unifiedMarginStatus": 6,
            "marginMode": self.margin_mode,
            "isMasterTrader": False,
            "spotHedgingStatus": "OFF",
            "updatedTime": _ms(int(time.time() * 1000)),
        }

    def _create(self, params: Mapping[str, Any]) -> object:
        category = self._category(params)
        try:
            side = str(params["side"]).upper()
            kind = str(params["orderType"]).upper()
            qty = Decimal(str(params["qty"]))
            price = Decimal(str(params["price"])) if params.get("price") else None
        except (KeyError, ArithmeticError) as exc:
            raise VenueError("bad_request", f"params error: {exc}") from None
        link_id = str(params.get("orderLinkId") or "")
        symbol = str(params.get("symbol", ""))
        if category == "spot":
            if params.get("marketUnit", "baseCoin") != "baseCoin":
                raise VenueError("bad_request", "marketUnit quoteCoin is not served here")
            new = NewOrder(
                symbol=symbol,
                side=side,
                type=kind,
                quantity=qty,
                price=price,
                client_order_id=link_id or None,
            )
            placed = int(str(self.spot.place(new)["orderId"]))
            order = self.spot.orders[placed]
        else:
            order = self.linear.place(
                symbol=symbol,
                side=side,
                type=kind,
                qty=qty,
                price=price,
                client_id=link_id,
                reduce_only=bool(params.get("reduceOnly")),
            )
        return {"orderId": str(order.order_id), "orderLinkId": link_id}

    def _find(self, category: str, params: Mapping[str, Any]) -> Order | None:
        symbol = str(params.get("symbol", ""))
        order_id = params.get("orderId")
        link_id = params.get("orderLinkId")
        if order_id is not None:
            # Bybit looks up by orderId first, and only by it when it is sent.
            if not str(order_id).isdigit():
                return None
            link_id = None
        oid = int(order_id) if order_id is not None else None
        if category == "linear":
            return self.linear.find(symbol, oid, link_id)
        if not symbol:
            # open-order.mdx: symbol is optional (required "For linear" only).
            with self.spot.lock:
                return next(
                    (
                        o
                        for o in reversed(self.spot.orders.values())
                        if (oid is None or o.order_id == oid)
                        and (link_id is None or o.client_order_id == link_id)
                    ),
                    None,
                )
        try:
            return self.spot.order(symbol, oid, link_id)
        except BinanceError:
            return None

    def _book(self, category: str) -> dict[int, Order]:
        return self.spot.orders if category == "spot" else self.linear.orders

    def _visible(self, order: Order) -> bool:
        """Accepted long enough ago for the asynchronous create to show (create-order.mdx)."""
        return time.time() * 1000 - order.time >= self.visibility_lag_s * 1000

    def _realtime(self, params: Mapping[str, Any]) -> object:
        """GET /v5/order/realtime (docs/v5/order/open-order.mdx, "Get Open & Closed Orders").

        Open orders, and "recent 500 closed status (Cancelled, Filled) orders": "a maximum
        of recent 500 closed status records are kept under each account each category";
        after a restart "filled, cancelled, and rejected orders of Unified account should
        only be queried through order history". openOnly "will be ignored when query by
        orderId or orderLinkId", so a look-up by id sees the same open + recent-closed set.
        """
        category = self._category(params)
        with self.spot.lock:
            self.spot.settle()
            book = self._book(category)
            closed = sorted(
                (o for o in book.values() if not o.is_open),
                key=lambda o: (o.update_time, o.order_id),
                reverse=True,
            )
            recent = {o.order_id for o in closed[:500] if o.update_time > self.restarted_at_ms}
            indexed = [
                o for o in book.values() if (o.is_open or o.order_id in recent) and self._visible(o)
            ]
        if "orderId" in params or "orderLinkId" in params:
            found = self._find(category, params)
            orders = [found] if found is not None and found in indexed else []
        else:
            symbol = params.get("symbol")
            open_only = str(params.get("openOnly", "0")) == "0"
            orders = [
                o
                for o in indexed
                if symbol in (None, o.spec.symbol) and (o.is_open or not open_only)
            ]
        orders.sort(key=lambda o: (o.time, o.order_id), reverse=True)
        return {
            "category": category,
            "list": [self._order_json(o, category) for o in orders],
            "nextPageCursor": "",
        }

    def _history(self, params: Mapping[str, Any]) -> object:
        """GET /v5/order/history (docs/v5/order/order-list.mdx, "Get Order History").

        Closed orders only, and as that page's rules say: "last 7 days: support querying
        all closed status except Cancelled, Rejected, Deactivated"; "last 24 hours: the
        orders with Cancelled (fully cancelled order), Rejected, Deactivated can be query";
        "beyond 7 days: supports querying orders which have fills only". The window is
        startTime..endTime, at most 7 days, the last 7 days by default. "As order
        creation/cancellation is asynchronous, the data returned from this endpoint may
        delay": an order shows once `visibility_lag_s` has passed.
        """
        category = self._category(params)
        now = self._now_ms()
        week = 7 * 86_400_000
        start, end = params.get("startTime"), params.get("endTime")
        if start is not None and end is not None:
            start_ms, end_ms = int(start), int(end)
            if end_ms - start_ms > week:
                raise VenueError("bad_request", "endTime - startTime must be <= 7 days")
        elif start is not None:
            start_ms, end_ms = int(start), int(start) + week
        elif end is not None:
            start_ms, end_ms = int(end) - week, int(end)
        else:
            start_ms, end_ms = now - week, now
        with self.spot.lock:
            self.spot.settle()
            if "orderId" in params or "orderLinkId" in params:
                found = self._find(category, params)
                candidates = [found] if found is not None else []
            else:
                candidates = list(self._book(category).values())
            rows = []
            for o in candidates:
                age = now - o.update_time
                kept = bool(o.executed_qty) or age <= 86_400_000
                in_window = start_ms <= o.time + self.clock_offset_ms <= end_ms
                symbol_ok = params.get("symbol") in (None, o.spec.symbol)
                if not o.is_open and kept and in_window and symbol_ok and self._visible(o):
                    rows.append(o)
        rows.sort(key=lambda o: (o.time, o.order_id), reverse=True)
        return {
            "category": category,
            "list": [self._order_json(o, category) for o in rows[:50]],
            "nextPageCursor": "",
        }

    def _cancel(self, params: Mapping[str, Any]) -> object:
        category = self._category(params)
        order = self._find(category, params)
        if order is None or not order.is_open:
            raise VenueError("not_found")
        if category == "spot":
            self.spot.cancel(order.spec.symbol, order.order_id, None, None)
        else:
            self.linear.cancel(order)
        return {"orderId": str(order.order_id), "orderLinkId": order.client_order_id}

    def _executions(self, params: Mapping[str, Any]) -> object:
        category = self._category(params)
        symbol = params.get("symbol")
        order = (
            self._find(category, params)
            if params.get("orderId") or params.get("orderLinkId")
            else None
        )
        trades: list[Trade] = self.spot.trades if category == "spot" else self.linear.trades
        orders: dict[int, Order] = self.spot.orders if category == "spot" else self.linear.orders
        chosen = [
            t
            for t in trades
            if symbol in (None, t.symbol)
            and (order is None or t.order_id == order.order_id)
            and self._visible(orders[t.order_id])
        ]
        if (params.get("orderId") or params.get("orderLinkId")) and order is None:
            chosen = []
        return {
            "category": category,
            "list": [self._execution_json(t, orders[t.order_id], category) for t in chosen],
            "nextPageCursor": "",
        }

    def _wallet(self, params: Mapping[str, Any]) -> object:
        if params.get("accountType") != "UNIFIED":
            raise VenueError("bad_request", "accountType only support UNIFIED")
        coins = []
        # One unified wallet: the spot book's coins, with the linear margin in USDT.
        for coin, amounts in self.spot.balances().items():
            free, locked = Decimal(amounts["free"]), Decimal(amounts["locked"])
            total = free + locked
            if coin == "USDT":
                with self.linear.lock:
                    total += self.linear.wallet
                    free += self.linear.available()
                    im = self.linear.used_margin()
            else:
                im = Decimal(0)
            coins.append(
                {
                    "coin": coin,
                    "equity": f"{total}",
                    "walletBalance": f"{total}",
                    "locked": f"{locked}",
                    "totalOrderIM": "0",
                    "totalPositionIM": f"{im}",
                    "availableToWithdraw": "",
                    "borrowAmount": "0",
                    "accruedInterest": "0",
                    "unrealisedPnl": "0",
                    "usdValue": f"{total}",
                }
            )
        return {"list": [{"accountType": "UNIFIED", "coin": coins, "totalEquity": "0"}]}

    def _set_margin_mode(self, params: Mapping[str, Any]) -> object:
        mode = str(params.get("setMarginMode", ""))
        if mode not in MARGIN_MODES:
            raise VenueError("bad_request", "setMarginMode invalid")
        self.margin_mode = mode
        with self.linear.lock:
            for symbol in self.linear.specs:
                self.linear.position(symbol).margin_mode = MARGIN_MODES[mode]
        return {"reasons": []}

    def _set_leverage(self, params: Mapping[str, Any]) -> object:
        if params.get("category") != "linear":
            raise VenueError("bad_request", "category only support linear or inverse")
        buy, sell = str(params.get("buyLeverage", "")), str(params.get("sellLeverage", ""))
        if buy != sell:
            raise VenueError("bad_request", "buy leverage must equal sell leverage in one-way mode")
        leverage = int(Decimal(buy))
        with self.linear.lock:
            position = self.linear.position(str(params.get("symbol", "")))
            if position.leverage == leverage:
                raise VenueError("leverage_unchanged")
            position.leverage = leverage
        return {}

    def _positions(self, params: Mapping[str, Any]) -> object:
        self._category(params)
        rows = []
        with self.linear.lock:
            for symbol, position in self.linear.positions.items():
                if params.get("symbol") not in (None, symbol):
                    continue
                rows.append(
                    {
                        "positionIdx": 0,
                        "symbol": symbol,
                        "side": "Buy" if position.qty > 0 else "Sell" if position.qty < 0 else "",
                        "size": f"{abs(position.qty)}",
                        "avgPrice": f"{position.entry}",
                        "positionValue": f"{abs(position.qty) * position.entry}",
                        "tradeMode": 1 if position.margin_mode == "isolated" else 0,
                        "leverage": f"{position.leverage}",
                        "markPrice": f"{self.linear.prices.get(symbol, position.entry)}",
                        "unrealisedPnl": "0",
                        "cumRealisedPnl": f"{position.realized}",
                        "positionStatus": "Normal",
                        "createdTime": _ms(position.updated),
                        "updatedTime": _ms(position.updated),
                    }
                )
        return {"category": "linear", "list": rows, "nextPageCursor": ""}


Endpoint = Callable[[BybitLoopback, Mapping[str, Any]], object]
# (method, path) -> (private, endpoint)
ROUTES: dict[tuple[str, str], tuple[bool, Endpoint]] = {
    ("GET", "/v5/market/instruments-info"): (False, BybitLoopback._instruments),
    ("GET", "/v5/asset/coin/query-info"): (True, BybitLoopback._coins),
    ("GET", "/v5/user/query-api"): (True, BybitLoopback._query_api),
    ("GET", "/v5/account/info"): (True, BybitLoopback._account_info),
    ("POST", "/v5/order/create"): (True, BybitLoopback._create),
    ("GET", "/v5/order/realtime"): (True, BybitLoopback._realtime),
    ("GET", "/v5/order/history"): (True, BybitLoopback._history),
    ("POST", "/v5/order/cancel"): (True, BybitLoopback._cancel),
    ("GET", "/v5/execution/list"): (True, BybitLoopback._executions),
    ("GET", "/v5/account/wallet-balance"): (True, BybitLoopback._wallet),
    ("POST", "/v5/account/set-margin-mode"): (True, BybitLoopback._set_margin_mode),
    ("POST", "/v5/position/set-leverage"): (True, BybitLoopback._set_leverage),
    ("GET", "/v5/position/list"): (True, BybitLoopback._positions),
}


if __name__ == "__main__":  # python -m venues.bybit --port 9100: a local sandbox
    from venues.transport import sandbox

    raise SystemExit(sandbox(BybitLoopback))
