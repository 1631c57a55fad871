"""A loopback Coinbase Advanced Trade (spot).

It serves what ccxt's `coinbase` class calls to trade spot
(docs.cdp.coinbase.com/api-reference/advanced-trade-api): load_markets (GET
/api/v3/brokerage/market/products for spot and futures, /api/v3/brokerage/products,
/api/v3/brokerage/transaction_summary for the fee tier, and the v2 currencies,
currencies/crypto and exchange-rates), orders (POST /api/v3/brokerage/orders,
GET .../orders/historical/{order_id}, .../orders/historical/batch, POST
.../orders/batch_cancel), fills (GET .../orders/historical/fills) and balances (GET
/api/v3/brokerage/accounts). Private requests are checked as Coinbase does for the key
the venue was made with: a CDP key (name "organizations/.../apiKeys/...", PEM EC secret)
signs a JWT per request (ES256, kid and sub the key name, iss "coinbase-cloud", aud
"retail_rest_api_proxy", at most 120 s long, `uri` "METHOD host/path"); a legacy key
signs CB-ACCESS-SIGN = hex HMAC-SHA256(secret, timestamp + method + path + body). A
refused credential gets Coinbase's bare 401 "Unauthorized". A refused order is Coinbase's
200 with `"success": false` and an `error_response`; a reused client_order_id creates
nothing and answers with the original order, as Coinbase documents. Fills follow
loopback_ledger's model.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from venues.binance_api import Reply, json_reply
from venues.data import SymbolSpec
from venues.faults import retry_after_s
from venues.orders import BinanceError, NewOrder, Order, Trade
from venues.server import (
    PathRoutes,
    Request,
    VenueError,
    VenueServer,
    average,
    ledger_kind,
    spot_ledger,
)

API_KEY = "organizations/loopback/apiKeys/loopback-coinbase-key"
JWT_LIFETIME_S = 120
CLOCK_SKEW_S = 30  # Coinbase refuses a legacy signature older than 30 s
FEE_RATE = "0.006"  # Coinbase's lowest Advanced tier, taker

# kind -> (error, message, preview_failure_reason): the error_response of a refused order.
# ccxt's coinbase class raises by the preview_failure_reason (exact table), else a plain
# ExchangeError.
ORDER_ERRORS = {
    "insufficient": (
        "INSUFFICIENT_FUND",
        "Insufficient balance in source account",
        "PREVIEW_INSUFFICIENT_FUND",
    ),
    "lot_size": (
        "INVALID_SIZE_PRECISION",
        "Invalid order configuration",
        "PREVIEW_INVALID_SIZE_PRECISION",
    ),
    "min_notional": (
        "INVALID_ARGUMENT",
        "Invalid order configuration",
        "PREVIEW_INVALID_QUOTE_SIZE_TOO_SMALL",
    ),
    "tick_size": (
        "INVALID_PRICE_PRECISION",
        "Invalid order configuration",
        "PREVIEW_INVALID_PRICE_PRECISION",
    ),
    "symbol": ("INVALID_ARGUMENT", "Invalid product_id", "PREVIEW_INVALID_PRODUCT_ID"),
    "closed": ("INVALID_ARGUMENT", "Market is closed", "UNKNOWN_PREVIEW_FAILURE_REASON"),
    "bad_request": (
        "INVALID_ARGUMENT",
        "Invalid order configuration",
        "UNKNOWN_PREVIEW_FAILURE_REASON",
    ),
}
STATUS = {
    "NEW": "OPEN",
    "PARTIALLY_FILLED": "OPEN",
    "FILLED": "FILLED",
    "CANCELED": "CANCELLED",
    "EXPIRED": "EXPIRED",
}


def spot_spec(symbol: str, base: str, quote: str = "USD") -> SymbolSpec:
    """Coinbase's BTC-USD: price_increment 0.01, base_increment 1e-8, quote_min_size 1."""
    return SymbolSpec(symbol, base, quote, Decimal("0.01"), Decimal("0.00000001"), Decimal("1"))


def cdp_secret() -> str:
    """A new CDP API key secret, as Coinbase hands it out: a PEM P-256 private key."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def order_uuid(order_id: int) -> str:
    """The ledger's order number as the UUID Coinbase names orders by (and back)."""
    return str(uuid.UUID(int=order_id))


def _ledger_id(order_uuid: str) -> int | None:
    try:
        return uuid.UUID(order_uuid).int
    except ValueError:
        return None


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class Unauthorized(Exception):
    """Coinbase answers every refused credential with a bare 401 "Unauthorized"."""


class CoinbaseLoopback(VenueServer):
    """`with CoinbaseLoopback() as ex:` — ccxt.coinbase with urls rebased onto ex.url trades
    here. `api_secret` is a PEM key (a CDP key: JWT auth) or any other string (legacy HMAC)."""

    server_version = "loopback-coinbase/1"

    def __init__(
        self,
        *,
        port: int = 0,
        api_key: str = API_KEY,
        api_secret: str | None = None,
        balances: Mapping[str, Decimal | str] | None = None,
    ) -> None:
        super().__init__(port=port)
        self.api_key = api_key
        self.api_secret = api_secret if api_secret is not None else cdp_secret()
        self._public_key: ec.EllipticCurvePublicKey | None = None
        if self.api_secret.startswith("-----BEGIN"):
            private = serialization.load_pem_private_key(self.api_secret.encode(), None)
            assert isinstance(private, ec.EllipticCurvePrivateKey)
            self._public_key = private.public_key()
        self.spot = spot_ledger(
            {"BTC-USD": spot_spec("BTC-USD", "BTC")},
            balances if balances is not None else {"USD": "100000"},
            FEE_RATE,
        )
        # Accept-then-timeout: an order is placed, then its answer waits this long (a
        # client with a shorter timeout never learns the order exists).
        self.answer_delay_s = 0.0

    def set_price(self, symbol: str, price: Decimal | str) -> None:
        """Accepts "BTCUSD" (as the other venues' tests say it) or Coinbase's "BTC-USD"."""
        if "-" not in symbol:
            symbol = next(s for s in self.spot.specs if s.replace("-", "") == symbol)
        self.spot.set_price(symbol, Decimal(str(price)))

    # Dispatch.

    def route(self, request: Request) -> Reply:
        found = ROUTES.match(request.method, request.path)
        if found is None:
            return json_reply(
                404, {"error": "NOT_FOUND", "error_details": "Not Found", "message": "Not Found"}
            )
        (private, endpoint), variables = found
        if private:
            try:
                self._authenticate(request)
            except Unauthorized:
                return Reply(401, b"Unauthorized\n", "text/plain; charset=utf-8")
        params = {**request.params, **variables}
        # List parameters repeat in the query (product_ids=A&product_ids=B).
        for name, values in parse_qs(request.query).items():
            if name.endswith("_ids"):
                params[name] = values
        return endpoint(self, params)

    def error_reply(self, exc: VenueError) -> Reply:
        if exc.kind in ("not_found", "not_open"):
            message = "order with this orderID was not found"
            return json_reply(
                404, {"error": "NOT_FOUND", "error_details": message, "message": message}
            )
        return json_reply(
            400, {"error": "INVALID_ARGUMENT", "error_details": exc.msg, "message": exc.msg}
        )

    def fault_reply(self, kind: str, params: Mapping[str, Any]) -> Reply:
        """An injected fault in Coinbase's error JSON (`error`, `error_details`, `message`).

        docs.cdp.coinbase.com "Rate limiting": "HTTP response code 429 is returned with an
        rate_limit_exceeded error" (the Coinbase App page; Advanced Trade's own page was not
        retrievable); 500 is `internal_server_error` in the same error-id table.
        """
        retry = {"Retry-After": str(retry_after_s(dict(params)))}
        if kind in ("rate_limit_429", "ip_ban_418"):
            body = {"error": "rate_limit_exceeded", "error_details": "Too many requests"}
            return json_reply(429, {**body, "message": "Too many requests"}, retry)
        body = {"error": "internal_server_error", "error_details": "Internal server error"}
        return json_reply(int(params["status"]), {**body, "message": "Internal server error"})

    def _authenticate(self, request: Request) -> None:
        if self._public_key is not None:
            self._check_jwt(request, self._public_key)
            return
        headers = request.headers
        if not hmac.compare_digest(
            headers.get("cb-access-key", "").encode(), self.api_key.encode()
        ):
            raise Unauthorized
        timestamp = headers.get("cb-access-timestamp", "")
        payload = timestamp + request.method + request.path + request.body
        expected = hmac.new(self.api_secret.encode(), payload.encode(), hashlib.sha256)
        if not hmac.compare_digest(headers.get("cb-access-sign", ""), expected.hexdigest()):
            raise Unauthorized
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > CLOCK_SKEW_S:
            raise Unauthorized

    def _check_jwt(self, request: Request, public_key: ec.EllipticCurvePublicKey) -> None:
        authorization = request.headers.get("authorization", "")
        if not authorization.startswith("Bearer "):
            raise Unauthorized
        try:
            header_b64, claims_b64, signature_b64 = authorization[7:].split(".")
            header = json.loads(_b64url(header_b64))
            claims = json.loads(_b64url(claims_b64))
            signature = _b64url(signature_b64)
        except (ValueError, binascii.Error):
            raise Unauthorized from None
        if header.get("alg") != "ES256" or header.get("kid") != self.api_key:
            raise Unauthorized
        if len(signature) != 64:  # JWS carries r || s, 32 bytes each
            raise Unauthorized
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        try:
            public_key.verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise Unauthorized from None
        now = time.time()
        nbf, exp = claims.get("nbf"), claims.get("exp")
        if (
            claims.get("sub") != self.api_key
            or claims.get("iss") != "coinbase-cloud"
            or "retail_rest_api_proxy" not in (claims.get("aud") or [])
            or not isinstance(nbf, int)
            or not isinstance(exp, int)
            or exp - nbf > JWT_LIFETIME_S
            or not nbf - CLOCK_SKEW_S <= now < exp
        ):
            raise Unauthorized
        # Clients strip only "https://" from the URL they sign, so against this plain-HTTP
        # venue the claim keeps "http://"; against Coinbase it reads "GET api.coinbase.com/…".
        host = f"{self._host}:{self.port}{request.path}"
        if claims.get("uri") not in (f"{request.method} {host}", f"{request.method} http://{host}"):
            raise Unauthorized

    # Shapes.

    def _order_json(self, order: Order) -> dict[str, object]:
        fees = self._fees(order)
        if order.type == "LIMIT":
            configuration: dict[str, object] = {
                "limit_limit_gtc": {
                    "base_size": f"{order.orig_qty}",
                    "limit_price": f"{order.price}",
                    "post_only": False,
                }
            }
        elif order.orig_quote_qty:
            configuration = {"market_market_ioc": {"quote_size": f"{order.orig_quote_qty}"}}
        else:
            configuration = {"market_market_ioc": {"base_size": f"{order.orig_qty}"}}
        filled_value = order.cum_quote
        return {
            "order_id": order_uuid(order.order_id),
            "product_id": order.spec.symbol,
            "user_id": "loopback-user",
            "order_configuration": configuration,
            "side": order.side,
            "client_order_id": order.client_order_id,
            "status": STATUS.get(order.status, "UNKNOWN_ORDER_STATUS"),
            "time_in_force": (
                "GOOD_UNTIL_CANCELLED" if order.type == "LIMIT" else "IMMEDIATE_OR_CANCEL"
            ),
            "created_time": _iso(order.time),
            "completion_percentage": (
                f"{order.executed_qty * 100 / order.orig_qty:.2f}" if order.orig_qty else "0"
            ),
            "filled_size": f"{order.executed_qty}",
            "average_filled_price": f"{average(order)}",
            "fee": "",
            "number_of_fills": str(len(order.trade_ids)),
            "filled_value": f"{filled_value}",
            "pending_cancel": False,
            "size_in_quote": bool(order.orig_quote_qty),
            "total_fees": f"{fees}",
            "size_inclusive_of_fees": False,
            "total_value_after_fees": f"{filled_value + (fees if order.side == 'BUY' else -fees)}",
            "trigger_status": "INVALID_ORDER_TYPE",
            "order_type": order.type,
            "reject_reason": "REJECT_REASON_UNSPECIFIED",
            "settled": not order.is_open,
            "product_type": "SPOT",
            "reject_message": "",
            "cancel_message": "User requested cancel" if order.status == "CANCELED" else "",
            "order_placement_source": "RETAIL_ADVANCED",
            "outstanding_hold_amount": f"{order.reserved if order.is_open else 0}",
            "is_liquidation": False,
            "last_fill_time": _iso(order.update_time) if order.trade_ids else None,
            "edit_history": [],
            "leverage": "",
            "margin_type": "UNKNOWN_MARGIN_TYPE",
            "retail_portfolio_id": "loopback-portfolio",
        }

    def _fees(self, order: Order) -> Decimal:
        ids = set(order.trade_ids)
        return sum((t.commission for t in self.spot.trades if t.id in ids), Decimal(0))

    def _fill_json(self, trade: Trade) -> dict[str, object]:
        return {
            "entry_id": f"entry-{trade.id}",
            "trade_id": f"trade-{trade.id}",
            "order_id": order_uuid(trade.order_id),
            "trade_time": _iso(trade.time),
            "trade_type": "FILL",
            "price": f"{trade.price}",
            "size": f"{trade.qty}",
            "commission": f"{trade.commission}",
            "product_id": trade.symbol,
            "sequence_timestamp": _iso(trade.time),
            "liquidity_indicator": "MAKER" if trade.is_maker else "TAKER",
            "size_in_quote": False,
            "user_id": "loopback-user",
            "side": trade.side,
            "retail_portfolio_id": "loopback-portfolio",
        }

    def _product_json(self, spec: SymbolSpec) -> dict[str, object]:
        with self.spot.lock:
            price = self.spot.prices.get(spec.symbol)
        return {
            "product_id": spec.symbol,
            "price": f"{price}" if price is not None else "",
            "price_percentage_change_24h": "0",
            "volume_24h": "0",
            "volume_percentage_change_24h": "0",
            "base_increment": f"{spec.step_size}",
            "quote_increment": f"{spec.tick_size}",
            "quote_min_size": f"{spec.min_notional}",
            "quote_max_size": "150000000",
            "base_min_size": f"{spec.step_size}",
            "base_max_size": "3400",
            "base_name": spec.base,
            "quote_name": spec.quote,
            "watched": False,
            "is_disabled": False,
            "new": False,
            "status": "online",
            "cancel_only": False,
            "limit_only": False,
            "post_only": False,
            "trading_disabled": False,
            "auction_mode": False,
            "product_type": "SPOT",
            "quote_currency_id": spec.quote,
            "base_currency_id": spec.base,
            "fcm_trading_session_details": None,
            "mid_market_price": "",
            "alias": "",
            "alias_to": [],
            "base_display_symbol": spec.base,
            "quote_display_symbol": spec.quote,
            "view_only": False,
            "price_increment": f"{spec.tick_size}",
            "display_name": spec.symbol.replace("-", "/"),
            "product_venue": "CBE",
        }

    # Endpoints: public.

    def _products(self, params: Mapping[str, Any]) -> Reply:
        if params.get("product_type", "SPOT") != "SPOT":
            return json_reply(200, {"products": [], "num_products": 0})
        products = [self._product_json(spec) for spec in self.spot.specs.values()]
        return json_reply(200, {"products": products, "num_products": len(products)})

    def _currencies(self, params: Mapping[str, Any]) -> Reply:
        fiat = sorted({s.quote for s in self.spot.specs.values()})
        return json_reply(200, {"data": [{"id": c, "name": c, "min_size": "0.01"} for c in fiat]})

    def _crypto_currencies(self, params: Mapping[str, Any]) -> Reply:
        crypto = sorted({s.base for s in self.spot.specs.values()})
        return json_reply(
            200,
            {
                "data": [
                    {
                        "asset_id": str(uuid.uuid5(uuid.NAMESPACE_URL, code)),
                        "code": code,
                        "name": code,
                        "color": "#F7931A",
                        "sort_index": 100,
                        "exponent": 8,
                        "type": "crypto",
                        "address_regex": ".*",
                    }
                    for code in crypto
                ]
            },
        )

    def _exchange_rates(self, params: Mapping[str, Any]) -> Reply:
        base = str(params.get("currency") or "USD")
        with self.spot.lock:
            rates = {
                spec.base: f"{1 / self.spot.prices[spec.symbol]:.12f}"
                for spec in self.spot.specs.values()
                if spec.quote == base and self.spot.prices.get(spec.symbol)
            }
        return json_reply(200, {"data": {"currency": base, "rates": {base: "1", **rates}}})

    def _time(self, params: Mapping[str, Any]) -> Reply:
        now = time.time()
        return json_reply(
            200,
            {
                "iso": _iso(int(now * 1000)),
                "epochSeconds": str(int(now)),
                "epochMillis": str(int(now * 1000)),
            },
        )

    # Endpoints: account.

    def _transaction_summary(self, params: Mapping[str, Any]) -> Reply:
        rate = f"{self.spot.fee_rate}"
        return json_reply(
            200,
            {
                "total_volume": 0,
                "total_fees": 0,
                "fee_tier": {
                    "pricing_tier": "Advanced 1",
                    "usd_from": "0",
                    "usd_to": "1000",
                    "taker_fee_rate": rate,
                    "maker_fee_rate": rate,
                },
                "margin_rate": None,
                "goods_and_services_tax": None,
                "advanced_trade_only_volume": 0,
                "advanced_trade_only_fees": 0,
                "coinbase_pro_volume": 0,
                "coinbase_pro_fees": 0,
            },
        )

    def _accounts(self, params: Mapping[str, Any]) -> Reply:
        fiat = {s.quote for s in self.spot.specs.values()}
        rows = []
        for coin, amounts in self.spot.balances().items():
            rows.append(
                {
                    "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"account-{coin}")),
                    "name": f"{coin} Wallet",
                    "currency": coin,
                    "available_balance": {"value": amounts["free"], "currency": coin},
                    "default": True,
                    "active": True,
                    "created_at": "2024-01-01T00:00:00.000Z",
                    "updated_at": "2024-01-01T00:00:00.000Z",
                    "deleted_at": None,
                    "type": "ACCOUNT_TYPE_FIAT" if coin in fiat else "ACCOUNT_TYPE_CRYPTO",
                    "ready": True,
                    "hold": {"value": amounts["locked"], "currency": coin},
                    "retail_portfolio_id": "loopback-portfolio",
                    "platform": "ACCOUNT_PLATFORM_CONSUMER",
                }
            )
        return json_reply(
            200, {"accounts": rows, "has_next": False, "cursor": "", "size": len(rows)}
        )

    # Endpoints: orders.

    def _create(self, params: Mapping[str, Any]) -> Reply:
        client_id = str(params.get("client_order_id") or "")
        product = str(params.get("product_id") or "")
        side = str(params.get("side") or "").upper()
        configuration = params.get("order_configuration") or {}
        echo = {"order_configuration": configuration}
        if not client_id or side not in ("BUY", "SELL") or not isinstance(configuration, dict):
            return _refusal("bad_request", echo)
        if product not in self.spot.specs:
            return _refusal("symbol", echo)
        with self.spot.lock:
            original = next(
                (o for o in self.spot.orders.values() if o.client_order_id == client_id), None
            )
            if original is not None:
                # Coinbase: "If the ID provided is not unique, the order will not be created
                # and the order corresponding with that ID will be returned instead."
                return _accepted(original, echo)
            try:
                new = _new_order(product, side, client_id, configuration)
            except (KeyError, TypeError, ArithmeticError, ValueError):
                return _refusal("bad_request", echo)
            if new is None:
                return _refusal("bad_request", echo)
            try:
                placed = self.spot.place(new)
            except BinanceError as exc:
                kind = ledger_kind(exc)
                if "PRICE_FILTER" in exc.msg:
                    kind = "tick_size"
                elif exc.msg == "Market is closed.":
                    kind = "closed"
                return _refusal(kind, echo)
            order = self.spot.orders[int(str(placed["orderId"]))]
        if self.answer_delay_s:
            time.sleep(self.answer_delay_s)
        return _accepted(order, echo)

    def _find(self, order_uuid: str) -> Order:
        ledger_id = _ledger_id(order_uuid)
        with self.spot.lock:
            self.spot.settle()
            found = self.spot.orders.get(ledger_id) if ledger_id is not None else None
        if found is None:
            raise VenueError("not_found")
        return found

    def _order(self, params: Mapping[str, Any]) -> Reply:
        return json_reply(200, {"order": self._order_json(self._find(str(params["order_id"])))})

    def _orders(self, params: Mapping[str, Any]) -> Reply:
        """List Orders: newest first, filtered by product, status and ids, paged by cursor."""
        products = _listed(params, "product_ids", "product_id")
        statuses = _listed(params, "order_status")
        ids = _listed(params, "order_ids")
        start = params.get("start_date")
        start_ms = int(datetime.fromisoformat(start).timestamp() * 1000) if start else None
        limit = int(params.get("limit") or 100)
        offset = int(params.get("cursor") or 0)
        with self.spot.lock:
            self.spot.settle()
            rows = [
                self._order_json(o)
                for o in sorted(self.spot.orders.values(), key=lambda o: -o.order_id)
                if (not products or o.spec.symbol in products)
                and (start_ms is None or o.time >= start_ms)
            ]
        rows = [
            r
            for r in rows
            if (not statuses or r["status"] in statuses) and (not ids or r["order_id"] in ids)
        ]
        page = rows[offset : offset + limit]
        more = offset + limit < len(rows)
        return json_reply(
            200,
            {
                "orders": page,
                "sequence": "0",
                "has_next": more,
                "cursor": str(offset + limit) if more else "",
            },
        )

    def _cancel(self, params: Mapping[str, Any]) -> Reply:
        results = []
        for order_uuid_ in params.get("order_ids") or []:
            ledger_id = _ledger_id(str(order_uuid_))
            with self.spot.lock:
                order = self.spot.orders.get(ledger_id) if ledger_id is not None else None
                ok = False
                if order is not None and order.is_open:
                    try:
                        self.spot.cancel(order.spec.symbol, order.order_id, None, None)
                        ok = True
                    except BinanceError:
                        ok = False
            results.append(
                {
                    "success": ok,
                    "failure_reason": (
                        "UNKNOWN_CANCEL_FAILURE_REASON" if ok else "UNKNOWN_CANCEL_ORDER"
                    ),
                    "order_id": str(order_uuid_),
                }
            )
        return json_reply(200, {"results": results})

    def _fills(self, params: Mapping[str, Any]) -> Reply:
        products = _listed(params, "product_ids", "product_id")
        ids = _listed(params, "order_ids", "order_id")
        with self.spot.lock:
            self.spot.settle()
            rows = [
                self._fill_json(t)
                for t in reversed(self.spot.trades)
                if (not products or t.symbol in products)
                and (not ids or order_uuid(t.order_id) in ids)
            ]
        return json_reply(200, {"fills": rows, "cursor": ""})


def _listed(params: Mapping[str, Any], *names: str) -> set[str]:
    values: set[str] = set()
    for name in names:
        value = params.get(name)
        if isinstance(value, list):
            values.update(str(v) for v in value)
        elif value:
            values.add(str(value))
    return values


def _new_order(
    product: str, side: str, client_id: str, configuration: Mapping[str, Any]
) -> NewOrder | None:
    """The ledger's order for market_market_ioc (base_size or quote_size) or limit_limit_gtc."""
    if "market_market_ioc" in configuration:
        sizes = configuration["market_market_ioc"]
        base, quote = sizes.get("base_size"), sizes.get("quote_size")
        if (base is None) == (quote is None):
            return None
        return NewOrder(
            symbol=product,
            side=side,
            type="MARKET",
            quantity=Decimal(str(base)) if base is not None else None,
            quote_qty=Decimal(str(quote)) if quote is not None else None,
            time_in_force="IOC",
            client_order_id=client_id,
        )
    if "limit_limit_gtc" in configuration:
        limit = configuration["limit_limit_gtc"]
        return NewOrder(
            symbol=product,
            side=side,
            type="LIMIT_MAKER" if limit.get("post_only") else "LIMIT",
            quantity=Decimal(str(limit["base_size"])),
            price=Decimal(str(limit["limit_price"])),
            time_in_force="GTC",
            client_order_id=client_id,
        )
    return None


def _accepted(order: Order, echo: Mapping[str, object]) -> Reply:
    return json_reply(
        200,
        {
            "success": True,
            "failure_reason": "UNKNOWN_FAILURE_REASON",
            "order_id": order_uuid(order.order_id),
            "success_response": {
                "order_id": order_uuid(order.order_id),
                "product_id": order.spec.symbol,
                "side": order.side,
                "client_order_id": order.client_order_id,
            },
            **echo,
        },
    )


def _refusal(kind: str, echo: Mapping[str, object]) -> Reply:
    error, message, preview = ORDER_ERRORS.get(kind, ORDER_ERRORS["bad_request"])
    return json_reply(
        200,
        {
            "success": False,
            "failure_reason": "UNKNOWN_FAILURE_REASON",
            "order_id": "",
            "error_response": {
                "error": error,
                "message": message,
                "error_details": "",
                "preview_failure_reason": preview,
                "new_order_failure_reason": "UNKNOWN_FAILURE_REASON",
            },
            **echo,
        },
    )


Endpoint = Callable[[CoinbaseLoopback, Mapping[str, Any]], Reply]
# (method, path) -> (private, endpoint)
ROUTES: PathRoutes[tuple[bool, Endpoint]] = PathRoutes(
    {
        ("GET", "/v2/currencies"): (False, CoinbaseLoopback._currencies),
        ("GET", "/v2/currencies/crypto"): (False, CoinbaseLoopback._crypto_currencies),
        ("GET", "/v2/exchange-rates"): (False, CoinbaseLoopback._exchange_rates),
        ("GET", "/api/v3/brokerage/time"): (False, CoinbaseLoopback._time),
        ("GET", "/api/v3/brokerage/market/products"): (False, CoinbaseLoopback._products),
        ("GET", "/api/v3/brokerage/products"): (True, CoinbaseLoopback._products),
        (
            "GET",
            "/api/v3/brokerage/transaction_summary",
        ): (True, CoinbaseLoopback._transaction_summary),
        ("GET", "/api/v3/brokerage/accounts"): (True, CoinbaseLoopback._accounts),
        ("POST", "/api/v3/brokerage/orders"): (True, CoinbaseLoopback._create),
        ("POST", "/api/v3/brokerage/orders/batch_cancel"): (True, CoinbaseLoopback._cancel),
        ("GET", "/api/v3/brokerage/orders/historical/batch"): (True, CoinbaseLoopback._orders),
        ("GET", "/api/v3/brokerage/orders/historical/fills"): (True, CoinbaseLoopback._fills),
        (
            "GET",
            "/api/v3/brokerage/orders/historical/{order_id}",
        ): (True, CoinbaseLoopback._order),
    }
)


if __name__ == "__main__":  # python -m venues.coinbase --port 9100: a local sandbox
    from venues.transport import sandbox

    raise SystemExit(sandbox(CoinbaseLoopback))
