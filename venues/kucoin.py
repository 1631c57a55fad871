"""A loopback KuCoin spot (classic account, high-frequency or classic order routes).

It serves what ccxt's `kucoin` class calls to trade spot (www.kucoin.com/docs-new):
load_markets (GET /api/v2/symbols, /api/v3/currencies, /api/v1/market/allTickers for the
fees, and with keys /api/v3/margin/symbols, /api/v1/isolated/symbols,
/api/v1/hf/accounts/opened and /api/ua/v1/account/mode), orders on the high-frequency
routes (/api/v1/hf/orders, .../{orderId}, .../client-order/{clientOid}, /api/v1/hf/fills)
or, for an account that is not high-frequency (`hf=False`), the classic ones
(/api/v1/orders, /api/v1/order/client-order/{clientOid}, /api/v1/fills), and balances
(GET /api/v1/accounts). Private requests are checked as KuCoin does (API key version 2):
KC-API-KEY, KC-API-TIMESTAMP within 5 s, KC-API-PASSPHRASE = base64 HMAC-SHA256(secret,
passphrase) and KC-API-SIGN = base64 HMAC-SHA256(secret, timestamp + method + path with
query + body). Answers are KuCoin's envelope `{"code": "200000", "data": ...}`; refusals
`{"code", "msg"}` with the codes and wording ccxt's kucoin class maps. Fills follow
loopback_ledger's model.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from venues.binance_api import Reply, json_reply
from venues.data import SymbolSpec
from venues.faults import retry_after_s
from venues.kucoin_ws import KucoinPrivateStream
from venues.orders import BinanceError, NewOrder, Order, Trade
from venues.server import (
    PathRoutes,
    Request,
    VenueError,
    VenueServer,
    average,
    spot_ledger,
)

API_KEY = "loopback-kucoin-key"
API_SECRET = "loopback-kucoin-secret"  # noqa: S105
API_PASSPHRASE = "loopback-kucoin-passphrase"  # noqa: S105
TIME_WINDOW_MS = 5000
DAY_MS = 86_400_000

# kind -> (HTTP status, code, msg): KuCoin's answers for the refusals ccxt maps (its
# "exact" table matches the msg first, then the code).
ERRORS = {
    "auth_key": (401, "400003", "KC-API-KEY not exists"),
    "auth_passphrase": (401, "400004", "Invalid KC-API-PASSPHRASE"),
    "auth_sign": (401, "400005", "Invalid KC-API-SIGN"),
    "auth_time": (
        401,
        "400002",
        "KC-API-TIMESTAMP Invalid -- Time differs from server time by more than 5 seconds",
    ),
    # "CLIENT ORDER ID": "Please do not send a repeated client_oid", with no code: the docs
    # are silent on the answer, so this venue keeps its own.
    "duplicate": (400, "126044", "clientOid duplicate"),
    # kucoin-api-docs "System error codes": "200004 | Balance insufficient", and below the
    # table: "If the returned HTTP status code is 200, whereas the operation failed, an
    # error will occur. You can check the above error code for details." So this system
    # code comes in an HTTP 200. (Which other codes do, the docs do not say: the rest keep
    # the HTTP status of the docs' "400 Bad Request" / "401 Unauthorized" rows.)
    "insufficient": (200, "200004", "Balance insufficient"),
    "lot_size": (400, "400100", "Order size increment invalid."),
    "min_size": (400, "400100", "Order size below the minimum requirement."),
    "min_notional": (400, "400100", "Order funds below the minimum requirement."),
    "not_found": (400, "400100", "order not exist."),
    "not_open": (400, "400100", "order_not_exist_or_not_allow_to_cancel"),
    "symbol": (400, "400100", "Unsupported trading pair."),
    "closed": (400, "400100", "Market is closed."),
    "bad_request": (400, "400100", "Parameter error"),
    # docs-new "Rate Limit": "an error message of http code:429, error code:429000" (the
    # docs give no msg).
    "rate_limit": (429, "429000", "Too many requests"),
}


@dataclass
class KucoinLimits:
    """KuCoin's REST rate limit 2.0 (kucoin.com/docs-new "Rate Limit", "Rest Rate Limit").

    "Resource Pool": the spot pool is 4000 per 30 s at VIP0, per UID. "Weight": each
    request takes its weight, "updated every 30s (starting from the arrival time of the
    user's first request)": a fixed window that opens at the first request. "If the quota
    of any resource pool is used up within 30s ... http code:429, error code:429000 will
    be returned, and the request can be re-requested after the length of time displayed
    in the request header." "Request Header": every answer carries "gw-ratelimit-limit"
    (the pool), "gw-ratelimit-remaining" and "gw-ratelimit-reset" (the countdown, ms).
    Private requests count on the spot pool here; the public pool (per IP) is not
    modelled, and every request weighs `weight` (the docs give a weight per endpoint;
    `weights` takes some by path).
    """

    quota: int = 4000
    window_s: float = 30.0
    weight: int = 1
    weights: Mapping[str, int] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _opened: float | None = None
    _used: int = 0
    refused: int = 0

    def admit(self, path: str) -> tuple[bool, dict[str, str]]:
        """(admitted, the gw-ratelimit headers) for one private request."""
        with self._lock:
            now = self.clock()
            if self._opened is None or now >= self._opened + self.window_s:
                self._opened, self._used = now, 0
            cost = self.weights.get(path, self.weight)
            admitted = self._used + cost <= self.quota
            if admitted:
                self._used += cost
            else:
                self.refused += 1
            reset_ms = max(0, int((self._opened + self.window_s - now) * 1000))
            return admitted, {
                "gw-ratelimit-limit": str(self.quota),
                "gw-ratelimit-remaining": str(self.quota - self._used),
                "gw-ratelimit-reset": str(reset_ms),
            }


def spot_spec(symbol: str, base: str, quote: str = "USDT") -> SymbolSpec:
    """KuCoin's BTC-USDT: priceIncrement 0.1, baseIncrement 1e-8, quoteMinSize 0.1."""
    return SymbolSpec(symbol, base, quote, Decimal("0.1"), Decimal("0.00000001"), Decimal("0.1"))


class KucoinLoopback(VenueServer):
    """`with KucoinLoopback() as ex:` — ccxt.kucoin with urls rebased onto ex.url trades here."""

    server_version = "loopback-kucoin/1"

    def __init__(
        self,
        *,
        port: int = 0,
        api_key: str = API_KEY,
        api_secret: str = API_SECRET,
        api_passphrase: str = API_PASSPHRASE,
        balances: Mapping[str, Decimal | str] | None = None,
        hf: bool = True,
        base_min_size: Decimal | str = "0.00001",
        rate_limits: KucoinLimits | None = None,
    ) -> None:
        super().__init__(port=port)
        # The spot resource pool (KucoinLimits); off unless a test passes one.
        self.limits = rate_limits
        # `advance` moves the clock the look-ups' retention rules read (HF by clientOid).
        self.clock_offset_ms = 0
        self.api_key = api_key
        self.api_secret = api_secret
        self.api_passphrase = api_passphrase
        self.hf = hf  # what GET /api/v1/hf/accounts/opened answers
        self.base_min_size = Decimal(str(base_min_size))
        self.spot = spot_ledger(
            {"BTC-USDT": spot_spec("BTC-USDT", "BTC")},
            balances if balances is not None else {"USDT": "100000"},
            "0.001",
        )
        # The private websocket (venues.kucoin_ws) hears every order change.
        self.ws = KucoinPrivateStream(self)
        self.spot.listeners.append(self.ws.order_event)

    def close(self) -> None:
        self.ws.close()
        super().close()

    def set_price(self, symbol: str, price: Decimal | str) -> None:
        """Accepts "BTCUSDT" (as the other venues' tests say it) or KuCoin's "BTC-USDT"."""
        if "-" not in symbol:
            symbol = next(s for s in self.spot.specs if s.replace("-", "") == symbol)
        self.spot.set_price(symbol, Decimal(str(price)))

    # Dispatch.

    def advance(self, seconds: float) -> None:
        """Age every order by `seconds` as far as the look-ups can tell."""
        self.clock_offset_ms += int(seconds * 1000)

    def route(self, request: Request) -> Reply:
        found = ROUTES.match(request.method, request.path)
        if found is None:
            return json_reply(404, {"code": "404000", "msg": "Not Found"})
        (private, hf_only, endpoint), variables = found
        if hf_only is not None and hf_only != self.hf:
            # An account that is not high-frequency cannot use the HF routes, and back.
            raise VenueError("bad_request", "account type does not match the order route")
        headers: dict[str, str] = {}
        if private:
            self._authenticate(request)
            if self.limits is not None:
                admitted, headers = self.limits.admit(request.path)
                if not admitted:
                    reply = self.error_reply(VenueError("rate_limit"))
                    reply.headers.update(headers)
                    return reply
        params = {**request.params, **variables}
        try:
            reply = json_reply(200, {"code": "200000", "data": endpoint(self, params)})
        except VenueError as exc:
            reply = self.error_reply(exc)
        reply.headers.update(headers)
        return reply

    def error_reply(self, exc: VenueError) -> Reply:
        status, code, msg = ERRORS.get(exc.kind, ERRORS["bad_request"])
        return json_reply(status, {"code": code, "msg": msg})

    def fault_reply(self, kind: str, params: Mapping[str, Any]) -> Reply:
        """An injected fault in KuCoin's `{"code", "msg"}` words.

        kucoin.com/docs-new "Rate Limit": "an error message of http code:429, error
        code:429000 will be returned, and the request can be re-requested after the length
        of time displayed in the request header" (gw-ratelimit-reset, ms; Retry-After is
        HTTP's own, not KuCoin's). KC-LEGACY "Request Rate Limit": 1015 is Cloudflare's IP
        limit, "block 30s". KC-LEGACY "Errors": HTTP 500 "Internal Server Error", 503
        "Service Unavailable", system code 500000 "Internal Server Error".
        """
        retry = retry_after_s(dict(params))
        if kind == "rate_limit_429":
            headers = {
                "gw-ratelimit-limit": "4000",
                "gw-ratelimit-remaining": "0",
                "gw-ratelimit-reset": str(retry * 1000),
                "Retry-After": str(retry),
            }
            # The docs give the code only; the wording is ccxt's recorded one.
            msg = "Too many requests. System-level rate limit exceeded."
            return json_reply(429, {"code": "429000", "msg": msg}, headers)
        if kind == "ip_ban_418":
            msg = "cloudflare frequency limit according IP, block 30s"
            return json_reply(403, {"code": "1015", "msg": msg}, {"Retry-After": str(retry)})
        return json_reply(int(params["status"]), {"code": "500000", "msg": "Internal Server Error"})

    def _authenticate(self, request: Request) -> None:
        headers = request.headers
        key = headers.get("kc-api-key", "")
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            raise VenueError("auth_key")
        passphrase = headers.get("kc-api-passphrase", "")
        if headers.get("kc-api-key-version") == "2":
            expected = _b64_hmac(self.api_secret, self.api_passphrase)
        else:
            expected = self.api_passphrase
        if not hmac.compare_digest(passphrase.encode(), expected.encode()):
            raise VenueError("auth_passphrase")
        timestamp = headers.get("kc-api-timestamp", "")
        endpoint = request.path + (f"?{request.query}" if request.query else "")
        payload = timestamp + request.method + endpoint + request.body
        if not hmac.compare_digest(
            headers.get("kc-api-sign", "").encode(),
            _b64_hmac(self.api_secret, payload).encode(),
        ):
            raise VenueError("auth_sign")
        now = int(time.time() * 1000)
        if not timestamp.isdigit() or abs(now - int(timestamp)) > TIME_WINDOW_MS:
            raise VenueError("auth_time")

    # Shapes.

    def _order_json(self, order: Order) -> dict[str, object]:
        open_ = order.is_open
        canceled = order.status in ("CANCELED", "EXPIRED")
        body: dict[str, object] = {
            "id": str(order.order_id),
            "clientOid": order.client_order_id,
            "symbol": order.spec.symbol,
            "opType": "DEAL",
            "type": order.type.lower(),
            "side": order.side.lower(),
            "price": f"{order.price}",
            "size": f"{order.orig_qty}",
            "funds": "0",
            "dealSize": f"{order.executed_qty}",
            "dealFunds": f"{order.cum_quote}",
            "fee": f"{self._fees(order)}",
            "feeCurrency": order.spec.quote,
            "stp": "",
            "timeInForce": order.time_in_force,
            "postOnly": False,
            "hidden": False,
            "iceberg": False,
            "visibleSize": "0",
            "cancelAfter": 0,
            "channel": "API",
            "remark": None,
            "tags": "",
            "cancelExist": canceled,
            "createdAt": order.time,
            "lastUpdatedAt": order.update_time,
            "tradeType": "TRADE",
            "inOrderBook": open_ and order.type == "LIMIT",
            "cancelledSize": f"{order.remaining}" if canceled else "0",
            "cancelledFunds": "0",
            "remainSize": f"{order.remaining}" if open_ else "0",
            "remainFunds": "0",
        }
        if order.executed_qty:
            body["avgDealPrice"] = f"{average(order)}"
        body["active" if self.hf else "isActive"] = open_
        return body

    def _fees(self, order: Order) -> Decimal:
        ids = set(order.trade_ids)
        return sum((t.commission for t in self.spot.trades if t.id in ids), Decimal(0))

    def _fill_json(self, trade: Trade, order: Order) -> dict[str, object]:
        return {
            "id": trade.id,
            "symbol": trade.symbol,
            "tradeId": str(trade.id),
            "orderId": str(order.order_id),
            "counterOrderId": f"counter{trade.id}",
            "side": trade.side.lower(),
            "liquidity": "maker" if trade.is_maker else "taker",
            "forceTaker": False,
            "price": f"{trade.price}",
            "size": f"{trade.qty}",
            "funds": f"{trade.price * trade.qty}",
            "fee": f"{trade.commission}",
            "feeRate": f"{self.spot.fee_rate}",
            "feeCurrency": trade.commission_asset,
            "stop": "",
            "tradeType": "TRADE",
            "type": order.type.lower(),
            "createdAt": trade.time,
        }

    # Endpoints: public.

    def _symbols(self, params: Mapping[str, Any]) -> object:
        return [
            {
                "symbol": spec.symbol,
                "name": spec.symbol,
                "baseCurrency": spec.base,
                "quoteCurrency": spec.quote,
                "feeCurrency": spec.quote,
                "market": "USDS",
                "baseMinSize": f"{self.base_min_size}",
                "quoteMinSize": f"{spec.min_notional}",
                "baseMaxSize": "10000000000",
                "quoteMaxSize": "99999999",
                "baseIncrement": f"{spec.step_size}",
                "quoteIncrement": "0.000001",
                "priceIncrement": f"{spec.tick_size}",
                "priceLimitRate": "0.1",
                "minFunds": f"{spec.min_notional}",
                "isMarginEnabled": False,
                "enableTrading": True,
                "feeCategory": 1,
                "makerFeeCoefficient": "1.00",
                "takerFeeCoefficient": "1.00",
                "st": False,
            }
            for spec in self.spot.specs.values()
        ]

    def _currencies(self, params: Mapping[str, Any]) -> object:
        return [
            {
                "currency": coin,
                "name": coin,
                "fullName": coin,
                "precision": 8,
                "confirms": None,
                "contractAddress": None,
                "isMarginEnabled": False,
                "isDebitEnabled": False,
                "chains": [
                    {
                        "chainName": coin,
                        "chainId": coin.lower(),
                        "withdrawalMinSize": "0",
                        "withdrawalMinFee": "0",
                        "isWithdrawEnabled": True,
                        "isDepositEnabled": True,
                        "confirms": 1,
                        "preConfirms": 1,
                        "contractAddress": "",
                        "withdrawPrecision": 8,
                    }
                ],
            }
            for coin in sorted(self.spot.free)
        ]

    def _all_tickers(self, params: Mapping[str, Any]) -> object:
        with self.spot.lock:
            prices = dict(self.spot.prices)
        rate = f"{self.spot.fee_rate}"
        return {
            "time": int(time.time() * 1000),
            "ticker": [
                {
                    "symbol": symbol,
                    "symbolName": symbol,
                    "last": f"{prices[symbol]}" if symbol in prices else None,
                    "takerFeeRate": rate,
                    "makerFeeRate": rate,
                    "takerCoefficient": "1",
                    "makerCoefficient": "1",
                }
                for symbol in self.spot.specs
            ],
        }

    # Endpoints: account.

    def _margin_symbols(self, params: Mapping[str, Any]) -> object:
        return {"timestamp": int(time.time() * 1000), "items": []}

    def _isolated_symbols(self, params: Mapping[str, Any]) -> object:
        return []

    def _hf_opened(self, params: Mapping[str, Any]) -> object:
        return self.hf

    def _account_mode(self, params: Mapping[str, Any]) -> object:
        return {"selfAccountMode": "CLASSIC"}

    def _accounts(self, params: Mapping[str, Any]) -> object:
        wanted = params.get("type")
        kind = "trade_hf" if self.hf else "trade"
        if wanted not in (None, kind):
            return []
        rows = []
        for coin, amounts in self.spot.balances().items():
            free, locked = Decimal(amounts["free"]), Decimal(amounts["locked"])
            rows.append(
                {
                    "id": f"{kind}-{coin}",
                    "currency": coin,
                    "type": kind,
                    "balance": f"{free + locked}",
                    "available": f"{free}",
                    "holds": f"{locked}",
                }
            )
        return rows

    # Endpoints: orders.

    def _create(self, params: Mapping[str, Any]) -> object:
        client_id = str(params.get("clientOid") or "")
        if not client_id:
            raise VenueError("bad_request", "clientOid is required")
        symbol = str(params.get("symbol", ""))
        if symbol not in self.spot.specs:
            raise VenueError("symbol")
        if params.get("funds"):
            raise VenueError("bad_request", "market orders by funds are not served here")
        try:
            side = str(params["side"]).upper()
            kind = str(params["type"]).upper()
            qty = Decimal(str(params["size"]))
            price = Decimal(str(params["price"])) if kind == "LIMIT" else None
        except (KeyError, ArithmeticError):
            raise VenueError("bad_request") from None
        if side not in ("BUY", "SELL") or kind not in ("LIMIT", "MARKET"):
            raise VenueError("bad_request")
        if qty < self.base_min_size:
            raise VenueError("min_size")
        placed = self.spot.place(
            NewOrder(
                symbol=symbol,
                side=side,
                type=kind,
                quantity=qty,
                price=price,
                time_in_force=str(params.get("timeInForce") or "GTC"),
                client_order_id=client_id,
            )
        )
        return {"orderId": str(placed["orderId"]), "clientOid": client_id}

    def _find(self, params: Mapping[str, Any]) -> Order:
        """By orderId or clientOid; the HF routes also want the symbol, as KuCoin's do."""
        order_id = params.get("orderId")
        client_id = params.get("clientOid")
        symbol = params.get("symbol")
        if self.hf and not symbol:
            raise VenueError("bad_request", "symbol is required")
        with self.spot.lock:
            if order_id is not None:
                found = self.spot.orders.get(int(order_id)) if str(order_id).isdigit() else None
            else:
                found = next(
                    (o for o in self.spot.orders.values() if o.client_order_id == client_id),
                    None,
                )
            if found is None or symbol not in (None, found.spec.symbol):
                raise VenueError("not_found")
            self.spot.settle()
            return found

    def _order(self, params: Mapping[str, Any]) -> object:
        return self._order_json(self._find(params))

    def _hf_by_client_id(self, params: Mapping[str, Any]) -> object:
        """HF GET /api/v1/hf/orders/client-order/{clientOid} ("Get HF order details by
        clientOid"): "If the order is not an active order, you can only get data within the
        time range of 3 * 24 hours"; older ones get the "order does not exist" prompt."""
        order = self._find(params)
        age = int(time.time() * 1000) + self.clock_offset_ms - order.update_time
        if not order.is_open and age > 3 * DAY_MS:
            raise VenueError("not_found")
        return self._order_json(order)

    def _classic_by_client_id(self, params: Mapping[str, Any]) -> object:
        """Classic GET /api/v1/order/client-order/{clientOid} answers active orders only.

        kucoin-api-docs "Get Single Active Order by clientOid": "The system will prompt that
        the order does not exists if the order does not exist or has been settled."
        """
        order = self._find(params)
        if not order.is_open:
            raise VenueError("not_found")
        return self._order_json(order)

    def _cancel(self, params: Mapping[str, Any]) -> object:
        try:
            order = self._find(params)
        except VenueError as exc:
            raise VenueError("not_open") if exc.kind == "not_found" else exc from None
        if not order.is_open:
            raise VenueError("not_open")
        try:
            self.spot.cancel(order.spec.symbol, order.order_id, None, None)
        except BinanceError:
            raise VenueError("not_open") from None
        if not self.hf:
            return {"cancelledOrderIds": [str(order.order_id)]}
        if "clientOid" in params:
            return {"clientOid": order.client_order_id}
        return {"orderId": str(order.order_id)}

    def _active(self, params: Mapping[str, Any]) -> object:
        symbol = params.get("symbol")
        with self.spot.lock:
            self.spot.settle()
            rows = [
                self._order_json(o)
                for o in self.spot.orders.values()
                if o.is_open and symbol in (None, o.spec.symbol)
            ]
        return rows if self.hf else _page(rows)

    def _classic_orders(self, params: Mapping[str, Any]) -> object:
        """Classic GET /api/v1/orders (kucoin-api-docs "List Orders"): status `active` or
        `done` ("done as default"); done orders in a window of at most 7*24 hours ("If you
        specify the end time only, the system will automatically calculate the start time
        as end time minus 7*24 hours, and vice versa")."""
        if params.get("status", "done") == "active":
            return self._active(params)
        return _page(self._done(params))

    def _hf_done(self, params: Mapping[str, Any]) -> object:
        """HF GET /api/v1/hf/orders/done: the symbol's filled and canceled orders."""
        if not params.get("symbol"):
            raise VenueError("bad_request", "symbol is required")
        rows = self._done(params)
        return {"lastId": 0, "items": rows}

    def _done(self, params: Mapping[str, Any]) -> list[dict[str, object]]:
        week = 7 * 86_400_000
        start = int(params["startAt"]) if params.get("startAt") else None
        end = int(params["endAt"]) if params.get("endAt") else None
        if start is None and end is None:
            end = int(time.time() * 1000)
        if start is None:
            start = end - week  # type: ignore[operator]
        if end is None:
            end = start + week
        if end - start > week:
            raise VenueError("bad_request", "the time range cannot exceed 7*24 hours")
        symbol = params.get("symbol")
        with self.spot.lock:
            self.spot.settle()
            return [
                self._order_json(o)
                for o in sorted(self.spot.orders.values(), key=lambda o: -o.order_id)
                if not o.is_open and symbol in (None, o.spec.symbol) and start <= o.time <= end
            ]

    def _fills(self, params: Mapping[str, Any]) -> object:
        symbol = params.get("symbol")
        order_id = params.get("orderId")
        with self.spot.lock:
            self.spot.settle()
            rows = [
                self._fill_json(t, self.spot.orders[t.order_id])
                for t in self.spot.trades
                if symbol in (None, t.symbol) and order_id in (None, str(t.order_id))
            ]
        if self.hf:
            return {"items": rows, "lastId": rows[-1]["id"] if rows else 0}
        return _page(rows)


def _page(items: list[dict[str, object]]) -> dict[str, object]:
    return {
        "currentPage": 1,
        "pageSize": max(50, len(items)),
        "totalNum": len(items),
        "totalPage": 1,
        "items": items,
    }


def _b64_hmac(secret: str, payload: str) -> str:
    digest = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


Endpoint = Callable[[KucoinLoopback, Mapping[str, Any]], object]
# (method, path) -> (private, served only to an HF (True) or classic (False) account, endpoint)
ROUTES: PathRoutes[tuple[bool, bool | None, Endpoint]] = PathRoutes(
    {
        ("GET", "/api/v2/symbols"): (False, None, KucoinLoopback._symbols),
        ("GET", "/api/v3/currencies"): (False, None, KucoinLoopback._currencies),
        ("GET", "/api/v1/market/allTickers"): (False, None, KucoinLoopback._all_tickers),
        ("GET", "/api/v3/margin/symbols"): (True, None, KucoinLoopback._margin_symbols),
        ("GET", "/api/v1/isolated/symbols"): (True, None, KucoinLoopback._isolated_symbols),
        ("GET", "/api/v1/hf/accounts/opened"): (True, None, KucoinLoopback._hf_opened),
        ("GET", "/api/ua/v1/account/mode"): (True, None, KucoinLoopback._account_mode),
        ("GET", "/api/v1/accounts"): (True, None, KucoinLoopback._accounts),
        ("POST", "/api/v1/bullet-private"): (True, None, lambda ex, params: ex.ws.bullet()),
        # High-frequency order routes.
        ("POST", "/api/v1/hf/orders"): (True, True, KucoinLoopback._create),
        ("GET", "/api/v1/hf/orders/active"): (True, True, KucoinLoopback._active),
        ("GET", "/api/v1/hf/orders/done"): (True, True, KucoinLoopback._hf_done),
        ("GET", "/api/v1/hf/orders/{orderId}"): (True, True, KucoinLoopback._order),
        (
            "GET",
            "/api/v1/hf/orders/client-order/{clientOid}",
        ): (True, True, KucoinLoopback._hf_by_client_id),
        ("DELETE", "/api/v1/hf/orders/{orderId}"): (True, True, KucoinLoopback._cancel),
        (
            "DELETE",
            "/api/v1/hf/orders/client-order/{clientOid}",
        ): (True, True, KucoinLoopback._cancel),
        ("GET", "/api/v1/hf/fills"): (True, True, KucoinLoopback._fills),
        # Classic order routes.
        ("POST", "/api/v1/orders"): (True, False, KucoinLoopback._create),
        ("GET", "/api/v1/orders"): (True, False, KucoinLoopback._classic_orders),
        ("GET", "/api/v1/orders/{orderId}"): (True, False, KucoinLoopback._order),
        (
            "GET",
            "/api/v1/order/client-order/{clientOid}",
        ): (True, False, KucoinLoopback._classic_by_client_id),
        ("DELETE", "/api/v1/orders/{orderId}"): (True, False, KucoinLoopback._cancel),
        (
            "DELETE",
            "/api/v1/order/client-order/{clientOid}",
        ): (True, False, KucoinLoopback._cancel),
        ("GET", "/api/v1/fills"): (True, False, KucoinLoopback._fills),
    }
)


if __name__ == "__main__":  # python -m venues.kucoin --port 9100: a local sandbox
    from venues.transport import sandbox

    raise SystemExit(sandbox(KucoinLoopback))
