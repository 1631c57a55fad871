"""A loopback Binance USDⓈ-M futures exchange (fapi), for ccxt's `binanceusdm` class.

It serves what ccxt calls to trade perpetuals (developers.binance.com, "USDⓈ-M Futures"):
exchangeInfo, order (POST/GET/DELETE), openOrders, userTrades, v3 account, v3
positionRisk, leverage and marginType. Signed endpoints are checked exactly as the spot
loopback checks them (X-MBX-APIKEY, HMAC-SHA256 of query and body, timestamp within
recvWindow: loopback_api's SpotApi does it), errors are Binance's `{"code", "msg"}`
with futures codes (-4116 duplicate client id, -4164 notional, -2019 margin, -4046 margin
type unchanged). Fills follow loopback_venue's FuturesBook. The user data stream (listenKey,
ORDER_TRADE_UPDATE) is venues.binance_futures_ws, on this server's port: `ex.ws`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from venues.binance_api import CLIENT_ID, Reply, SpotApi, json_reply
from venues.binance_futures_ws import LISTEN_KEY_PATH, MAX_LIFETIME_S, VALIDITY_S, FuturesUserStream
from venues.data import KlineStore, SymbolSpec, default_data_dir, fmt
from venues.faults import retry_after_s
from venues.orders import BinanceError, Order, Trade
from venues.server import (
    FuturesBook,
    Request,
    VenueError,
    VenueServer,
    average,
    spot_ledger,
)

DAY_MS = 86_400_000

API_KEY = "loopback-binance-futures-key"
API_SECRET = "loopback-binance-futures-secret"  # noqa: S105

# kind -> (code, msg), from the USDⓈ-M futures "Error Codes" page (developers.binance.com
# .../usds-margined-futures/error-code): "-4116 DUPLICATED_CLIENT_ORDER_ID: clientOrderId is
# duplicated" (the page's wording; -4015 is a malformed id, not a duplicate), "-2019
# MARGIN_NOT_SUFFICIEN: Margin is insufficient.", "-2013 NO_SUCH_ORDER: Order does not
# exist.", "-2011 CANCEL_REJECTED ... Unknown order sent". The -1111 and -4164 texts were not
# re-read from that page here.
ERRORS = {
    "duplicate": (-4116, "clientOrderId is duplicated"),
    "insufficient": (-2019, "Margin is insufficient."),
    "lot_size": (-1111, "Precision is over the maximum defined for this asset."),
    "min_notional": (
        -4164,
        "Order's notional must be no smaller than 5 (unless you choose reduce only).",
    ),
    "reduce_only": (-2022, "ReduceOnly Order is rejected."),
    "not_found": (-2013, "Order does not exist."),
    "not_open": (-2011, "Unknown order sent."),
    "symbol": (-1121, "Invalid symbol."),
    "closed": (-1013, "Market is closed."),
}


def perp_spec(symbol: str, base: str, quote: str = "USDT") -> SymbolSpec:
    """BTCUSDT perpetual's real filters: tick 0.10, step 0.001, notional 5 (testnet: 100)."""
    return SymbolSpec(symbol, base, quote, Decimal("0.10"), Decimal("0.001"), Decimal("5"))


class BinanceFuturesLoopback(VenueServer):
    """`with BinanceFuturesLoopback() as ex:` — ccxt.binanceusdm rebased onto ex.url."""

    server_version = "loopback-binance-futures/1"

    def __init__(
        self,
        *,
        port: int = 0,
        api_key: str = API_KEY,
        api_secret: str = API_SECRET,
        margin: Decimal | str = "100000",
        listen_key_validity_s: float = VALIDITY_S,
        ws_max_lifetime_s: float | None = MAX_LIFETIME_S,
    ) -> None:
        super().__init__(port=port)
        self.book = FuturesBook(
            {"BTCUSDT": perp_spec("BTCUSDT", "BTC")},
            wallet=Decimal(str(margin)),
            client_ids_unique="open",
        )
        # `advance` moves the clock the look-ups' retention rules read (see `_forgotten`).
        self.clock_offset_ms = 0
        # Only the signature check of the spot API is used (same scheme on fapi).
        self._signer = SpotApi(
            ledger=spot_ledger({}, {}, "0"),
            data=KlineStore(default_data_dir()),
            api_key=api_key,
            api_secret=api_secret,
        )
        # The user data stream hears every change of the book.
        self.ws = FuturesUserStream(
            self,
            api_key=api_key,
            listen_key_validity_s=listen_key_validity_s,
            max_lifetime_s=ws_max_lifetime_s,
        )
        self.ws.hear(self.book)

    def close(self) -> None:
        self.ws.close()
        super().close()

    def set_price(self, symbol: str, price: Decimal | str) -> None:
        self.book.set_price(symbol, price)

    def route(self, request: Request) -> Reply:
        if request.path == LISTEN_KEY_PATH and request.method in ("POST", "PUT", "DELETE"):
            try:
                answer = self.ws.listen_key_call(
                    request.method, request.headers.get("x-mbx-apikey")
                )
            except BinanceError as exc:
                return json_reply(exc.status, exc.body())
            return json_reply(200, answer)
        entry = ROUTES.get((request.method, request.path))
        if entry is None:
            return Reply(404, b"<html><body><h1>404 Not Found</h1></body></html>", "text/html")
        signed, endpoint = entry
        params = {str(k): str(v) for k, v in request.params.items()}
        try:
            if signed:
                payload = "&".join(
                    p
                    for p in (request.query + "&" + request.body).split("&")
                    if p and not p.startswith("signature=")
                )
                self._signer._authenticate(params, payload, request.headers.get("x-mbx-apikey"))
            return json_reply(200, endpoint(self, params))
        except BinanceError as exc:
            return json_reply(exc.status, exc.body())

    def error_reply(self, exc: VenueError) -> Reply:
        code, msg = ERRORS.get(exc.kind, (-1000, exc.msg))
        return json_reply(400, {"code": code, "msg": msg})

    def fault_reply(self, kind: str, params: Mapping[str, Any]) -> Reply:
        """An injected fault as Binance answers it (the futures error-code page, -1003)."""
        retry = {"Retry-After": str(retry_after_s(dict(params)))}
        if kind == "rate_limit_429":
            msg = (
                "Too many requests; current limit is 2400 requests per minute. Please use the"
                " websocket for live updates to avoid polling the API."
            )
            return json_reply(429, {"code": -1003, "msg": msg}, retry)
        if kind == "ip_ban_418":
            until = int((time.time() + retry_after_s(dict(params))) * 1000)
            return json_reply(
                418,
                {"code": -1003, "msg": f"Way too many requests; IP banned until {until}."},
                retry,
            )
        # A 5xx is the gateway's HTML page, as on spot: the outcome is unknown to the client.
        status = int(params["status"])
        return Reply(
            status,
            f"<html><body><h1>{status} Server Error</h1></body></html>".encode(),
            "text/html",
        )

    # Shapes.

    def _order_json(self, order: Order) -> dict[str, object]:
        return {
            "orderId": order.order_id,
            "symbol": order.spec.symbol,
            "status": order.status,
            "clientOrderId": order.client_order_id,
            "price": f"{order.price}",
            "avgPrice": f"{average(order)}",
            "origQty": f"{order.orig_qty}",
            "executedQty": f"{order.executed_qty}",
            "cumQty": f"{order.executed_qty}",
            "cumQuote": f"{order.cum_quote}",
            "timeInForce": "GTC",
            "type": order.type,
            "reduceOnly": False,
            "closePosition": False,
            "side": order.side,
            "positionSide": "BOTH",
            "stopPrice": "0",
            "workingType": "CONTRACT_PRICE",
            "priceProtect": False,
            "origType": order.type,
            "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": 0,
            "time": order.time,
            "updateTime": order.update_time,
        }

    def _trade_json(self, trade: Trade) -> dict[str, object]:
        return {
            "buyer": trade.side == "BUY",
            "commission": fmt(trade.commission),
            "commissionAsset": trade.commission_asset,
            "id": trade.id,
            "maker": trade.is_maker,
            "orderId": trade.order_id,
            "price": f"{trade.price}",
            "qty": f"{trade.qty}",
            "quoteQty": f"{trade.price * trade.qty}",
            "realizedPnl": "0",
            "side": trade.side,
            "positionSide": "BOTH",
            "symbol": trade.symbol,
            "time": trade.time,
        }

    def _symbol(self, params: Mapping[str, str]) -> str:
        symbol = params.get("symbol", "").upper()
        if symbol not in self.book.specs:
            raise BinanceError(-1121, "Invalid symbol.")
        return symbol

    def advance(self, seconds: float) -> None:
        """Age every order by `seconds` as far as the look-ups can tell."""
        self.clock_offset_ms += int(seconds * 1000)

    def _forgotten(self, order: Order) -> bool:
        """Query Order and All Orders (USDⓈ-M futures REST "Query Order", "All Orders"):
        "These orders will not be found: order status is CANCELED or EXPIRED AND order has
        NO filled trade AND created time + 3 days < current time; order create time + 90
        days < current time"."""
        age = int(time.time() * 1000) + self.clock_offset_ms - order.time
        unfilled_end = order.status in ("CANCELED", "EXPIRED") and not order.executed_qty
        return (unfilled_end and age > 3 * DAY_MS) or age > 90 * DAY_MS

    def _find(self, params: Mapping[str, str]) -> Order:
        symbol = self._symbol(params)
        order_id = params.get("orderId")
        client_id = params.get("origClientOrderId")
        if not order_id and not client_id:
            raise BinanceError(
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        found = self.book.find(symbol, int(order_id) if order_id else None, client_id)
        if found is None or self._forgotten(found):
            raise BinanceError(-2013, "Order does not exist.")
        return found

    def _all_orders(self, params: Mapping[str, str]) -> object:
        """GET /fapi/v1/allOrders ("All Orders"): the same orders are not found as by Query
        Order; the range is at most 7 days, the last 7 days by default."""
        symbol = self._symbol(params)
        now = int(time.time() * 1000) + self.clock_offset_ms
        start = int(params["startTime"]) if params.get("startTime") else None
        end = int(params["endTime"]) if params.get("endTime") else None
        if start is None and end is None:
            start, end = now - 7 * DAY_MS, now
        elif end is None:
            end = start + 7 * DAY_MS  # type: ignore[operator]
        elif start is None:
            start = end - 7 * DAY_MS
        # The docs name no error for a wider range; this venue keeps its first 7 days.
        end = min(end, start + 7 * DAY_MS)  # type: ignore[operator]
        with self.book.lock:
            rows = [
                o
                for o in self.book.orders.values()
                if o.spec.symbol == symbol
                and start <= o.time + self.clock_offset_ms <= end  # type: ignore[operator]
                and not self._forgotten(o)
            ]
            return [self._order_json(o) for o in rows[-int(params.get("limit") or 500) :]]

    # Endpoints.

    def _exchange_info(self, params: Mapping[str, str]) -> object:
        now = int(time.time() * 1000)
        symbols = []
        for spec in self.book.specs.values():
            symbols.append(
                {
                    "symbol": spec.symbol,
                    "pair": spec.symbol,
                    "contractType": "PERPETUAL",
                    "deliveryDate": 4133404800000,
                    "onboardDate": 1569398400000,
                    "status": "TRADING",
                    "maintMarginPercent": "2.5000",
                    "requiredMarginPercent": "5.0000",
                    "baseAsset": spec.base,
                    "quoteAsset": spec.quote,
                    "marginAsset": spec.quote,
                    "pricePrecision": 2,
                    "quantityPrecision": 3,
                    "baseAssetPrecision": 8,
                    "quotePrecision": 8,
                    "underlyingType": "COIN",
                    "underlyingSubType": ["PoW"],
                    "triggerProtect": "0.0500",
                    "liquidationFee": "0.012500",
                    "marketTakeBound": "0.05",
                    "maxMoveOrderLimit": 10000,
                    "filters": [
                        {
                            "filterType": "PRICE_FILTER",
                            "minPrice": f"{spec.tick_size}",
                            "maxPrice": "4529764",
                            "tickSize": f"{spec.tick_size}",
                        },
                        {
                            "filterType": "LOT_SIZE",
                            "minQty": f"{spec.step_size}",
                            "maxQty": "1000",
                            "stepSize": f"{spec.step_size}",
                        },
                        {
                            "filterType": "MARKET_LOT_SIZE",
                            "minQty": f"{spec.step_size}",
                            "maxQty": "120",
                            "stepSize": f"{spec.step_size}",
                        },
                        {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                        {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                        {"filterType": "MIN_NOTIONAL", "notional": f"{spec.min_notional}"},
                        {
                            "filterType": "PERCENT_PRICE",
                            "multiplierUp": "1.0500",
                            "multiplierDown": "0.9500",
                            "multiplierDecimal": "4",
                        },
                    ],
                    "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT"],
                    "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
                }
            )
        return {
            "timezone": "UTC",
            "serverTime": now,
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": 2400,
                },
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            ],
            "exchangeFilters": [],
            "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
            "symbols": symbols,
        }

    def _new_order(self, params: Mapping[str, str]) -> object:
        symbol = self._symbol(params)
        side = params.get("side", "").upper()
        if side not in ("BUY", "SELL"):
            raise BinanceError(-1117, "Invalid side.")
        kind = params.get("type", "").upper()
        if kind not in ("MARKET", "LIMIT"):
            raise BinanceError(-1116, "Invalid orderType.")
        try:
            qty = Decimal(params["quantity"])
            price = Decimal(params["price"]) if kind == "LIMIT" else None
        except (KeyError, InvalidOperation):
            raise BinanceError(
                -1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed."
            ) from None
        client_id = params.get("newClientOrderId") or f"loopback{time.time_ns()}"
        if not CLIENT_ID.match(client_id):
            raise BinanceError(-4015, "Client order id is not valid.")
        order = self.book.place(
            symbol=symbol,
            side=side,
            type=kind,
            qty=qty,
            price=price,
            client_id=client_id,
            reduce_only=params.get("reduceOnly") == "true",
        )
        return self._order_json(order)

    def _query_order(self, params: Mapping[str, str]) -> object:
        return self._order_json(self._find(params))

    def _cancel_order(self, params: Mapping[str, str]) -> object:
        order = self._find(params)
        if not order.is_open:
            raise BinanceError(-2011, "Unknown order sent.")
        return self._order_json(self.book.cancel(order))

    def _open_orders(self, params: Mapping[str, str]) -> object:
        symbol = self._symbol(params) if "symbol" in params else None
        with self.book.lock:
            return [
                self._order_json(o)
                for o in self.book.orders.values()
                if o.is_open and symbol in (None, o.spec.symbol)
            ]

    def _user_trades(self, params: Mapping[str, str]) -> object:
        symbol = self._symbol(params)
        order_id = params.get("orderId")
        with self.book.lock:
            return [
                self._trade_json(t)
                for t in self.book.trades
                if t.symbol == symbol and (not order_id or str(t.order_id) == order_id)
            ]

    def _account(self, params: Mapping[str, str]) -> object:
        with self.book.lock:
            wallet, unrealized = self.book.wallet, self.book.unrealized()
            used, available = self.book.used_margin(), self.book.available()
            asset = {
                "asset": "USDT",
                "walletBalance": f"{wallet}",
                "unrealizedProfit": f"{unrealized}",
                "marginBalance": f"{wallet + unrealized}",
                "maintMargin": "0",
                "initialMargin": f"{used}",
                "positionInitialMargin": f"{used}",
                "openOrderInitialMargin": "0",
                "crossWalletBalance": f"{wallet}",
                "crossUnPnl": f"{unrealized}",
                "availableBalance": f"{available}",
                "maxWithdrawAmount": f"{available}",
                "updateTime": int(time.time() * 1000),
            }
            return {
                "totalInitialMargin": f"{used}",
                "totalMaintMargin": "0",
                "totalWalletBalance": f"{wallet}",
                "totalUnrealizedProfit": f"{unrealized}",
                "totalMarginBalance": f"{wallet + unrealized}",
                "totalPositionInitialMargin": f"{used}",
                "totalOpenOrderInitialMargin": "0",
                "totalCrossWalletBalance": f"{wallet}",
                "totalCrossUnPnl": f"{unrealized}",
                "availableBalance": f"{available}",
                "maxWithdrawAmount": f"{available}",
                "assets": [asset],
                "positions": self._position_rows(None),
            }

    def _position_rows(self, symbol: str | None) -> list[dict[str, object]]:
        rows = []
        for name, pos in self.book.positions.items():
            if symbol not in (None, name):
                continue
            mark = self.book.prices.get(name, pos.entry)
            rows.append(
                {
                    "symbol": name,
                    "positionSide": "BOTH",
                    "positionAmt": f"{pos.qty}",
                    "entryPrice": f"{pos.entry}",
                    "breakEvenPrice": f"{pos.entry}",
                    "markPrice": f"{mark}",
                    "unRealizedProfit": f"{pos.qty * (mark - pos.entry)}",
                    "liquidationPrice": "0",
                    "isolatedMargin": "0",
                    "notional": f"{pos.qty * mark}",
                    "marginAsset": "USDT",
                    "isolatedWallet": "0",
                    "initialMargin": f"{abs(pos.qty) * pos.entry / pos.leverage}",
                    "maintMargin": "0",
                    "positionInitialMargin": f"{abs(pos.qty) * pos.entry / pos.leverage}",
                    "openOrderInitialMargin": "0",
                    "adl": 0,
                    "bidNotional": "0",
                    "askNotional": "0",
                    "leverage": f"{pos.leverage}",
                    "marginType": "isolated" if pos.margin_mode == "isolated" else "cross",
                    "isolated": pos.margin_mode == "isolated",
                    "updateTime": pos.updated,
                }
            )
        return rows

    def _position_risk(self, params: Mapping[str, str]) -> object:
        symbol = self._symbol(params) if "symbol" in params else None
        with self.book.lock:
            return self._position_rows(symbol)

    def _leverage(self, params: Mapping[str, str]) -> object:
        symbol = self._symbol(params)
        leverage = params.get("leverage", "")
        if not leverage.isdigit() or not 1 <= int(leverage) <= 125:
            raise BinanceError(-4028, f"Leverage {leverage} is not valid")
        with self.book.lock:
            self.book.position(symbol).leverage = int(leverage)
        return {"leverage": int(leverage), "maxNotionalValue": "1000000", "symbol": symbol}

    def _margin_type(self, params: Mapping[str, str]) -> object:
        symbol = self._symbol(params)
        kind = params.get("marginType", "").upper()
        if kind not in ("ISOLATED", "CROSSED"):
            raise BinanceError(-4044, "The margin type is not valid.")
        mode = "isolated" if kind == "ISOLATED" else "cross"
        with self.book.lock:
            position = self.book.position(symbol)
            if position.margin_mode == mode:
                raise BinanceError(-4046, "No need to change margin type.")
            if position.qty:
                raise BinanceError(-4048, "Margin type cannot be changed if there exists position.")
            position.margin_mode = mode
        return {"code": 200, "msg": "success"}


Endpoint = Callable[[BinanceFuturesLoopback, Mapping[str, str]], Any]
# (method, path) -> (signed, endpoint)
ROUTES: dict[tuple[str, str], tuple[bool, Endpoint]] = {
    ("GET", "/fapi/v1/exchangeInfo"): (False, BinanceFuturesLoopback._exchange_info),
    ("POST", "/fapi/v1/order"): (True, BinanceFuturesLoopback._new_order),
    ("GET", "/fapi/v1/order"): (True, BinanceFuturesLoopback._query_order),
    ("DELETE", "/fapi/v1/order"): (True, BinanceFuturesLoopback._cancel_order),
    ("GET", "/fapi/v1/openOrders"): (True, BinanceFuturesLoopback._open_orders),
    ("GET", "/fapi/v1/allOrders"): (True, BinanceFuturesLoopback._all_orders),
    ("GET", "/fapi/v1/userTrades"): (True, BinanceFuturesLoopback._user_trades),
    ("GET", "/fapi/v3/account"): (True, BinanceFuturesLoopback._account),
    ("GET", "/fapi/v3/positionRisk"): (True, BinanceFuturesLoopback._position_risk),
    ("POST", "/fapi/v1/leverage"): (True, BinanceFuturesLoopback._leverage),
    ("POST", "/fapi/v1/marginType"): (True, BinanceFuturesLoopback._margin_type),
}


if __name__ == "__main__":  # python -m venues.binance_futures --port 9100: a local sandbox
    from venues.transport import sandbox

    raise SystemExit(sandbox(BinanceFuturesLoopback))
