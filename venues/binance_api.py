"""Binance's spot REST endpoints (the part ccxt's binance class uses) over a Ledger.

Parameters are checked and rejected with Binance's codes and messages; signed endpoints
check the X-MBX-APIKEY header, the HMAC-SHA256 signature of the query string and body,
and the timestamp against recvWindow, as https://developers.binance.com describes.
Standard library only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import parse_qsl

from venues.data import INTERVAL_MS, KlineStore
from venues.ledger import Ledger
from venues.orders import BinanceError, FillPlan, NewOrder

CLIENT_ID = re.compile(r"^[a-zA-Z0-9_-]{1,36}$")
NUMBER = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
MAX_RECV_WINDOW = 60_000
ARCHIVED_AFTER_MS = 90 * 86_400_000


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json;charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(status: int, payload: object, headers: Mapping[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(payload).encode(), headers=dict(headers or {}))


def _raw_unsigned(raw: str) -> str:
    return "&".join(p for p in raw.split("&") if p and not p.startswith("signature="))


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if not value:
        raise BinanceError(
            -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
        )
    return value


def _decimal(params: Mapping[str, str], name: str) -> Decimal | None:
    value = params.get(name)
    if value is None:
        return None
    if not NUMBER.match(value):
        raise BinanceError(
            -1100,
            f"Illegal characters found in parameter '{name}'; "
            "legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
        )
    return Decimal(value)


def _int(params: Mapping[str, str], name: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if not value.isdigit():
        raise BinanceError(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
        )
    return int(value)


def _limit(params: Mapping[str, str], default: int = 500, maximum: int = 1000) -> int:
    value = _int(params, "limit")
    return default if value is None else max(1, min(value, maximum))


def _not_expected(params: Mapping[str, str], name: str) -> None:
    if name in params:
        raise BinanceError(-1106, f"Parameter '{name}' sent when not required.")


class SpotApi:
    """Routes a request to its endpoint; endpoints take the parameters, return the JSON."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        data: KlineStore,
        api_key: str,
        api_secret: str,
        plan_for: Callable[[NewOrder], FillPlan] = lambda new: FillPlan(),
        rate_limits: Callable[[], list[dict[str, object]]] | None = None,
    ) -> None:
        self.ledger = ledger
        self.data = data
        self.api_key = api_key
        self.api_secret = api_secret
        # Asked once per accepted order: how it fills (the order-level faults live there).
        self.plan_for = plan_for
        # exchangeInfo's rateLimits: the limits the server enforces (venues/binance_limits.py).
        self.rate_limits = rate_limits or (lambda: list(DEFAULT_RATE_LIMITS))

    def handle(self, method: str, path: str, query: str, body: str, api_key: str | None) -> Reply:
        """Serve one request (faults aside): the endpoint's JSON or Binance's error JSON."""
        route = ROUTES.get((method, path))
        if route is None:
            return Reply(404, b"<html><body><h1>404 Not Found</h1></body></html>", "text/html")
        signed, handler = route
        # Binance reads parameters from the query string and the body; the query wins.
        params = dict(parse_qsl(body, keep_blank_values=True))
        params.update(parse_qsl(query, keep_blank_values=True))
        try:
            if signed:
                self._authenticate(params, _raw_unsigned(query) + _raw_unsigned(body), api_key)
            return json_reply(200, handler(self, params))
        except BinanceError as exc:
            return json_reply(exc.status, exc.body())

    def _authenticate(self, params: Mapping[str, str], payload: str, api_key: str | None) -> None:
        if not api_key:
            raise BinanceError(-2014, "API-key format invalid.", 401)
        if not hmac.compare_digest(api_key.encode(), self.api_key.encode()):
            raise BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        signature = _required(params, "signature")
        expected = hmac.new(self.api_secret.encode(), payload.encode(), hashlib.sha256)
        if not hmac.compare_digest(expected.hexdigest(), signature.lower()):
            raise BinanceError(-1022, "Signature for this request is not valid.")
        _required(params, "timestamp")
        timestamp = _int(params, "timestamp") or 0
        recv_window = _int(params, "recvWindow") or 5000
        if recv_window > MAX_RECV_WINDOW:
            raise BinanceError(-1131, "recvWindow must be less than 60000")
        now_ms = int(time.time() * 1000)
        if timestamp > now_ms + 1000:
            raise BinanceError(
                -1021, "Timestamp for this request was 1000ms ahead of the server's time."
            )
        if now_ms - timestamp > recv_window:
            raise BinanceError(-1021, "Timestamp for this request is outside of the recvWindow.")

    def _symbol_param(self, params: Mapping[str, str]) -> str:
        symbol = _required(params, "symbol").upper()
        self.ledger.spec(symbol)
        return symbol

    # Endpoints: each takes the request's parameters and returns the JSON answer.

    def _ping(self, params: Mapping[str, str]) -> object:
        return {}

    def _time(self, params: Mapping[str, str]) -> object:
        return {"serverTime": int(time.time() * 1000)}

    def _exchange_info(self, params: Mapping[str, str]) -> object:
        wanted: list[str] | None = None
        if "symbol" in params:
            wanted = [params["symbol"]]
        elif "symbols" in params:
            try:
                wanted = [str(s) for s in json.loads(params["symbols"])]
            except ValueError:
                raise BinanceError(
                    -1100, "Illegal characters found in parameter 'symbols'."
                ) from None
        specs = self.ledger.specs
        if wanted is not None:
            for symbol in wanted:
                self.ledger.spec(symbol)
        return {
            "timezone": "UTC",
            "serverTime": int(time.time() * 1000),
            "rateLimits": self.rate_limits(),
            "exchangeFilters": [],
            "symbols": [s.info() for name, s in specs.items() if wanted is None or name in wanted],
        }

    def _klines(self, params: Mapping[str, str]) -> object:
        symbol = self._symbol_param(params)
        interval = _required(params, "interval")
        if interval not in INTERVAL_MS:
            raise BinanceError(-1120, "Invalid interval.")
        start, end = _int(params, "startTime"), _int(params, "endTime")
        return self.data.select(symbol, interval, start, end, _limit(params, 500, 1000))

    def _new_order(self, params: Mapping[str, str]) -> object:
        symbol = self._symbol_param(params)
        side = _required(params, "side").upper()
        if side not in ("BUY", "SELL"):
            raise BinanceError(-1117, "Invalid side.")
        kind = _required(params, "type").upper()
        if kind not in ("MARKET", "LIMIT", "LIMIT_MAKER"):
            raise BinanceError(-1116, "Invalid orderType.")
        quantity, quote_qty = _decimal(params, "quantity"), _decimal(params, "quoteOrderQty")
        price, tif = _decimal(params, "price"), params.get("timeInForce", "GTC").upper()
        if kind == "MARKET":
            if quantity is None and quote_qty is None:
                raise BinanceError(
                    -1102,
                    "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!",
                )
            for name in ("timeInForce", "price") + (("quoteOrderQty",) if quantity else ()):
                _not_expected(params, name)
        else:
            _required(params, "quantity")
            _required(params, "price")
            _not_expected(params, "quoteOrderQty")
            if kind == "LIMIT":
                _required(params, "timeInForce")
            else:
                _not_expected(params, "timeInForce")
            if tif not in ("GTC", "IOC", "FOK"):
                raise BinanceError(-1115, "Invalid timeInForce.")
        client_id = params.get("newClientOrderId")
        if client_id is not None and not CLIENT_ID.match(client_id):
            raise BinanceError(
                -1100,
                "Illegal characters found in parameter 'newClientOrderId'; "
                "legal range is '^[a-zA-Z0-9-_]{1,36}$'.",
            )
        resp_type = params.get("newOrderRespType", "FULL").upper()
        if resp_type not in ("ACK", "RESULT", "FULL"):
            raise BinanceError(-1100, "Illegal characters found in parameter 'newOrderRespType'.")
        new = NewOrder(
            symbol=symbol,
            side=side,
            type=kind,
            quantity=quantity,
            quote_qty=quote_qty if quantity is None else None,
            price=price,
            time_in_force=tif,
            client_order_id=client_id,
            resp_type=resp_type,
        )
        return self.ledger.place(new, self.plan_for)

    def _query_order(self, params: Mapping[str, str]) -> object:
        """GET /api/v3/order (rest-api.md "Query order"); archived orders are refused.

        errors.md "-2026 ORDER_ARCHIVED": "Order was canceled or expired with no executed
        qty over 90 days ago and has been archived." (CHANGELOG 2023-03-13: before, such a
        query answered -2013.) An order never sent is -2013 "Order does not exist.".
        """
        symbol = self._symbol_param(params)
        with self.ledger.lock:
            order = self.ledger.order(
                symbol, _int(params, "orderId"), params.get("origClientOrderId")
            )
            unfilled = order.status in ("CANCELED", "EXPIRED") and not order.executed_qty
            age_ms = self.ledger.clock() * 1000 - order.update_time
            if unfilled and age_ms > ARCHIVED_AFTER_MS:
                raise BinanceError(
                    -2026,
                    "Order was canceled or expired with no executed qty over 90 days ago and"
                    " has been archived.",
                )
            return order.as_json()

    def _cancel_order(self, params: Mapping[str, str]) -> object:
        symbol = self._symbol_param(params)
        return self.ledger.cancel(
            symbol,
            _int(params, "orderId"),
            params.get("origClientOrderId"),
            params.get("newClientOrderId"),
        )

    def _open_orders(self, params: Mapping[str, str]) -> object:
        symbol = self._symbol_param(params) if "symbol" in params else None
        return self.ledger.open_orders(symbol)

    def _cancel_open_orders(self, params: Mapping[str, str]) -> object:
        symbol = self._symbol_param(params)
        with self.ledger.lock:
            open_ids = [int(str(o["orderId"])) for o in self.ledger.open_orders(symbol)]
            if not open_ids:
                raise BinanceError(-2011, "Unknown order sent.")
            return [self.ledger.cancel(symbol, order_id, None, None) for order_id in open_ids]

    def _all_orders(self, params: Mapping[str, str]) -> object:
        symbol = self._symbol_param(params)
        return self.ledger.all_orders(
            symbol,
            _int(params, "orderId"),
            _int(params, "startTime"),
            _int(params, "endTime"),
            _limit(params, 500, 1000),
        )

    def _my_trades(self, params: Mapping[str, str]) -> object:
        symbol = self._symbol_param(params)
        return self.ledger.my_trades(
            symbol,
            _int(params, "orderId"),
            _int(params, "fromId"),
            _int(params, "startTime"),
            _int(params, "endTime"),
            _limit(params, 500, 1000),
        )

    def _account(self, params: Mapping[str, str]) -> object:
        account = self.ledger.account()
        if params.get("omitZeroBalances") == "true":
            balances: list[dict[str, str]] = account["balances"]  # type: ignore[assignment]
            account["balances"] = [
                b for b in balances if Decimal(b["free"]) or Decimal(b["locked"])
            ]
        return account

    def _capital_config(self, params: Mapping[str, str]) -> object:
        """The coin list ccxt's load_markets fetches when it has keys (fetchCurrencies)."""
        coins = []
        for asset, balance in self.ledger.balances().items():
            network = {
                "network": asset,
                "coin": asset,
                "withdrawIntegerMultiple": "0.00000001",
                "isDefault": True,
                "depositEnable": True,
                "withdrawEnable": True,
                "depositDesc": "",
                "withdrawDesc": "",
                "name": asset,
                "resetAddressStatus": False,
                "withdrawFee": "0",
                "withdrawMin": "0",
                "withdrawMax": "9999999999.99999999",
                "minConfirm": 1,
                "unLockConfirm": 0,
                "sameAddress": False,
                "estimatedArrivalTime": 5,
                "busy": False,
            }
            coins.append(
                {
                    "coin": asset,
                    "name": asset,
                    "depositAllEnable": True,
                    "withdrawAllEnable": True,
                    "free": balance["free"],
                    "locked": balance["locked"],
                    "freeze": "0",
                    "withdrawing": "0",
                    "ipoing": "0",
                    "ipoable": "0",
                    "storage": "0",
                    "isLegalMoney": False,
                    "trading": True,
                    "networkList": [network],
                }
            )
        return coins

    def _no_margin_pairs(self, params: Mapping[str, str]) -> object:
        return []


# enums.md "Rate limiters (rateLimitType)"; rest-api.md "Query Unfilled Order Count".
DEFAULT_RATE_LIMITS: tuple[dict[str, object], ...] = (
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 50},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 160000},
)

Endpoint = Callable[[SpotApi, Mapping[str, str]], object]
# (method, path) -> (signed, endpoint)
ROUTES: dict[tuple[str, str], tuple[bool, Endpoint]] = {
    ("GET", "/api/v3/ping"): (False, SpotApi._ping),
    ("GET", "/api/v3/time"): (False, SpotApi._time),
    ("GET", "/api/v3/exchangeInfo"): (False, SpotApi._exchange_info),
    ("GET", "/api/v3/klines"): (False, SpotApi._klines),
    ("POST", "/api/v3/order"): (True, SpotApi._new_order),
    ("GET", "/api/v3/order"): (True, SpotApi._query_order),
    ("DELETE", "/api/v3/order"): (True, SpotApi._cancel_order),
    ("GET", "/api/v3/openOrders"): (True, SpotApi._open_orders),
    ("DELETE", "/api/v3/openOrders"): (True, SpotApi._cancel_open_orders),
    ("GET", "/api/v3/allOrders"): (True, SpotApi._all_orders),
    ("GET", "/api/v3/myTrades"): (True, SpotApi._my_trades),
    ("GET", "/api/v3/account"): (True, SpotApi._account),
    ("GET", "/sapi/v1/capital/config/getall"): (True, SpotApi._capital_config),
    # ccxt's load_markets also asks for margin pairs (options.fetchMargins); spot only here.
    ("GET", "/sapi/v1/margin/allPairs"): (True, SpotApi._no_margin_pairs),
    ("GET", "/sapi/v1/margin/isolated/allPairs"): (True, SpotApi._no_margin_pairs),
}
