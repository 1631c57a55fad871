"""Exchange accounts through ccxt: Binance, Bybit, KuCoin, Coinbase spot; Binance and Bybit
USDT-margined futures. Testnet and live use the same code; only the sandbox switch differs.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

import ccxt
from django.conf import settings

from marketdata.models import Market
from marketdata.sources import rebase_urls
from quantum.crypto import decrypt
from trading.adapters.base import (
    FillReport,
    NotSent,
    OrderRejected,
    OrderSnapshot,
    SubmitResult,
    UnclearOutcome,
)
from trading.models import ExchangeAccount, Order
from trading.ratelimit import Bucket, RateLimited

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Profile:
    """What differs between exchanges; everything else is ccxt's unified API."""

    ccxt_id: str
    client_id_param: str  # the exchange's own name for the client order id
    fetch_by_client_id: str  # param that looks an order up by client id
    options: dict[str, Any] = field(default_factory=dict)
    # Request weight budget: capacity and refill per second (Binance: 6000 weight/min).
    capacity: float = 1200
    per_second: float = 20


PROFILES: dict[tuple[str, str], Profile] = {
    ("binance", "spot"): Profile(
        "binance",
        "newClientOrderId",
        "origClientOrderId",
        {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}},
        6000,
        100,
    ),
    ("binance", "futures"): Profile(
        "binanceusdm",
        "newClientOrderId",
        "origClientOrderId",
        {"defaultType": "future"},
        2400,
        40,
    ),
    # Bybit: load only the category traded (ccxt's default also loads inverse and three
    # option chains), and take fetchOrder's "only the last 500 orders" warning as read: the
    # resolver asks about orders it has just sent.
    ("bybit", "spot"): Profile(
        "bybit",
        "orderLinkId",
        "orderLinkId",
        {
            "defaultType": "spot",
            "fetchMarkets": {"types": ["spot"]},
            "fetchOrder": {"acknowledged": True},
        },
    ),
    ("bybit", "futures"): Profile(
        "bybit",
        "orderLinkId",
        "orderLinkId",
        {
            "defaultType": "swap",
            "defaultSubType": "linear",
            "fetchMarkets": {"types": ["linear"]},
            "fetchOrder": {"acknowledged": True},
        },
    ),
    # KuCoin: spot markets only. ccxt's default also lists futures contracts (a request to
    # api-futures.kucoin.com for markets a spot account never trades, and one whose
    # failure fails load_markets, so no order could be placed).
    ("kucoin", "spot"): Profile(
        "kucoin", "clientOid", "clientOid", {"fetchMarkets": {"types": ["spot"]}}, 100, 10
    ),
    # Coinbase: balances from Advanced Trade's own accounts (ccxt's default is the retail
    # app's v2 wallets); orders by client id through List Orders (see fetch). Weights are
    # ccxt's (34 ms a unit: private v3 calls cost 1 of Coinbase's 30/s, public 3, v2 10.6),
    # with a burst that covers load_markets' three v2 calls.
    ("coinbase", "spot"): Profile(
        "coinbase",
        "client_order_id",
        "client_order_id",
        {"fetchBalance": "v3PrivateGetBrokerageAccounts"},
        60,
        29,
    ),
}

# How far before the intent was recorded a Coinbase lookup by client id starts (clock
# skew between us and the exchange), and how many pages of 100 orders it reads at most.
COINBASE_LOOKBACK = timedelta(minutes=5)
COINBASE_MAX_PAGES = 10

UNIFIED_STATUS = {
    "canceled": Order.Status.CANCELED,
    "expired": Order.Status.EXPIRED,
    "rejected": Order.Status.REJECTED,
}

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def profile_for(account: ExchangeAccount) -> Profile:
    key = (account.exchange.code, account.market_type)
    if key not in PROFILES:
        raise OrderRejected(f"{key[0]} {key[1]} is not a supported exchange")
    return PROFILES[key]


def ccxt_for_account(account: ExchangeAccount) -> Any:
    """A configured ccxt client for the account, cached per process (markets load once)."""
    profile = profile_for(account)
    fingerprint = hashlib.sha256(
        "|".join(
            [
                str(account.pk),
                account.exchange.code,
                account.mode,
                account.market_type,
                account.api_key_enc,
                account.api_url_override,
            ]
        ).encode()
    ).hexdigest()
    with _clients_lock:
        client = _clients.get(fingerprint)
        if client is not None:
            return client
        client = getattr(ccxt, profile.ccxt_id)(
            {
                "apiKey": decrypt(account.api_key_enc),
                "secret": decrypt(account.api_secret_enc),
                "password": decrypt(account.api_password_enc),
                "enableRateLimit": True,
                "timeout": settings.QT_EXCHANGE_TIMEOUT_MS,
                "options": dict(profile.options),
            }
        )
        if account.mode == ExchangeAccount.Mode.TESTNET:
            if client.urls.get("test"):
                client.set_sandbox_mode(True)
            elif not account.api_url_override:
                # ccxt knows no sandbox for this exchange (KuCoin and Coinbase retired
                # theirs): testnet needs an explicit sandbox URL, never the live one.
                raise OrderRejected(
                    f"{account.exchange.code} has no sandbox in ccxt: "
                    "set the account's API URL override to a sandbox endpoint"
                )
        if account.api_url_override:
            client.urls["api"] = rebase_urls(
                client.urls["api"], account.api_url_override.rstrip("/")
            )
        bucket = Bucket(
            f"{account.exchange.code}:{account.pk}", profile.capacity, profile.per_second
        )

        # ccxt calls throttle(cost) before every request when enableRateLimit is on; the
        # shared Redis bucket replaces its per-process one.
        def throttle(cost: float | None = None) -> None:
            bucket.take(float(cost or 1))

        client.throttle = throttle
        client.qt_bucket = bucket
        client.qt_prepared = set()
        _clients[fingerprint] = client
        return client


class CcxtAdapter:
    def __init__(self, account: ExchangeAccount) -> None:
        self.account = account
        self.profile = profile_for(account)
        self.client = ccxt_for_account(account)

    # --- translation ----------------------------------------------------------------------

    def _symbol(self, order: Order) -> str:
        return self._market_symbol(order.market)

    def _market_symbol(self, market: Market) -> str:
        if self.account.market_type == ExchangeAccount.MarketType.FUTURES:
            return f"{market.symbol}:{market.quote}"  # ccxt's linear perpetual notation
        return market.symbol

    def _call(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        """One exchange call; maps ccxt's errors onto rejected / unclear."""
        try:
            return getattr(self.client, fn)(*args, **kwargs)
        except RateLimited as exc:
            raise NotSent(str(exc)) from exc
        except ccxt.DDoSProtection as exc:  # 429 and 418 (ccxt: RateLimitExceeded/DDoS)
            self._rate_limited(exc)
            raise UnclearOutcome(f"rate limited: {exc}") from exc
        except (ccxt.InvalidOrder, ccxt.InsufficientFunds, ccxt.BadSymbol) as exc:
            raise OrderRejected(str(exc)[:500]) from exc
        except ccxt.NetworkError as exc:  # timeouts, disconnects, 5xx
            raise UnclearOutcome(f"{type(exc).__name__}: {exc}"[:500]) from exc
        except ccxt.AuthenticationError as exc:
            raise OrderRejected(f"authentication failed: {exc}"[:500]) from exc
        except ccxt.BadRequest as exc:  # the exchange parsed the request and refused it
            raise OrderRejected(str(exc)[:500]) from exc
        except ccxt.ExchangeError as exc:
            # An error answer ccxt cannot classify (e.g. Binance futures' -4116 duplicate
            # client id maps to a bare ExchangeError): whether an order exists is for the
            # resolver to find out by client id, so it is unclear, never a plain no.
            raise UnclearOutcome(f"{type(exc).__name__}: {exc}"[:500]) from exc

    def _rate_limited(self, exc: Exception) -> None:
        """The venue said 429/418: every worker backs off as long as it says, with an incident."""
        headers = self.client.last_response_headers or {}
        retry_after = _seconds(headers.get("Retry-After") or headers.get("retry-after"))
        self.client.qt_bucket.back_off(retry_after)
        from risk.services.incidents import incident_open

        incident_open(
            severity="warning",
            code="EXCHANGE_RATE_LIMIT",
            title=f"{self.account.name}: exchange rate limit hit; backing off",
            detail=f"Retry-After {retry_after}s: {exc}"[:500],
        )

    def _prepare_market(self, symbol: str) -> None:
        """Markets loaded; for futures, margin mode and leverage set before the first order.

        Remembered on the cached client (an adapter lives for one call), keyed by the
        settings, so a changed leverage is sent again and an unchanged one is not.
        """
        key = (symbol, self.account.margin_mode, int(self.account.leverage))
        prepared: set[tuple[str, str, int]] = self.client.qt_prepared
        if key in prepared:
            return
        self._call("load_markets")
        if self.account.market_type == ExchangeAccount.MarketType.FUTURES:
            self._setting("set_margin_mode", self.account.margin_mode, symbol)
            self._setting("set_leverage", int(self.account.leverage), symbol)
        prepared.add(key)

    def _setting(self, fn: str, *args: Any) -> None:
        """A margin-mode or leverage call where "already so" is success, as it is after a
        restart (Binance -4046 MarginModeAlreadySet, Bybit 110043 "leverage not modified")."""
        try:
            self._call(fn, *args)
        except (OrderRejected, UnclearOutcome) as exc:
            cause = exc.__cause__
            if isinstance(cause, ccxt.NoChange) or "not modified" in str(cause):
                return
            raise

    def normalize_quantity(self, market: Market, quantity: Decimal, price: Decimal) -> Decimal:
        """Round down to the exchange's amount precision; refuse below its minimums."""
        symbol = self._market_symbol(market)
        self._prepare_market(symbol)
        # ccxt raises InvalidOrder when the amount rounds to nothing: a refusal, via _call.
        rounded = Decimal(self._call("amount_to_precision", symbol, float(quantity)))
        # The local market's precision may be coarser, and the risk check holds orders to it.
        rounded = rounded.quantize(Decimal(1).scaleb(-market.qty_precision), rounding=ROUND_DOWN)
        limits = self.client.market(symbol).get("limits", {})
        min_amount = (limits.get("amount") or {}).get("min")
        min_cost = (limits.get("cost") or {}).get("min")
        if min_amount and rounded < Decimal(str(min_amount)):
            raise OrderRejected(f"quantity {rounded} below the exchange minimum {min_amount}")
        if min_cost and rounded * price < Decimal(str(min_cost)):
            raise OrderRejected(
                f"notional {rounded * price:.2f} below the exchange minimum {min_cost}"
            )
        return rounded.quantize(Decimal("1e-8"), rounding=ROUND_DOWN)

    def _fills(self, raw_trades: list[dict], order: Order) -> list[FillReport]:
        fills = []
        for t in raw_trades:
            fee = t.get("fee") or {}
            fills.append(
                FillReport(
                    trade_id=str(t["id"]),
                    price=Decimal(str(t["price"])),
                    quantity=Decimal(str(t["amount"])),
                    fee=Decimal(str(fee.get("cost") or 0)),
                    fee_currency=fee.get("currency") or self.account.quote_currency,
                    filled_at=datetime.fromtimestamp((t.get("timestamp") or 0) / 1000, UTC),
                )
            )
        return fills

    def _snapshot(self, raw: dict, order: Order) -> OrderSnapshot:
        filled = Decimal(str(raw.get("filled") or 0))
        status = raw.get("status")
        if status == "closed":
            mapped = Order.Status.FILLED
        elif status in UNIFIED_STATUS:
            mapped = UNIFIED_STATUS[status]
        else:
            mapped = Order.Status.PARTIALLY_FILLED if filled > 0 else Order.Status.ACCEPTED
        trades = raw.get("trades") or []
        if filled > 0 and not trades:
            trades = (
                self._call(
                    "fetch_my_trades", self._symbol(order), None, None, {"orderId": raw["id"]}
                )
                if self.account.exchange.code == "binance"
                else self._call(
                    "fetch_my_trades", self._symbol(order), None, None, {"order_ids": [raw["id"]]}
                )
                if self.profile.ccxt_id == "coinbase"  # ccxt has no fetchOrderTrades there
                else self._call("fetch_order_trades", raw["id"], self._symbol(order))
            )
            trades = [t for t in trades if str(t.get("order")) == str(raw["id"])]
        return OrderSnapshot(
            client_order_id=order.client_order_id,
            exchange_order_id=str(raw["id"]),
            status=mapped,
            filled_quantity=filled,
            fills=self._fills(trades, order),
        )

    # --- the adapter API --------------------------------------------------------------------

    def submit(self, order: Order, *, reference_price: Decimal, at: datetime) -> SubmitResult:
        symbol = self._symbol(order)
        self._prepare_market(symbol)
        params: dict[str, Any] = {self.profile.client_id_param: order.client_order_id}
        if self.profile.ccxt_id == "coinbase" and order.order_type == "market":
            # ccxt words a Coinbase market buy as quote to spend; the order is a base
            # quantity, which Coinbase takes for buys too (market_market_ioc.base_size).
            params["createMarketBuyOrderRequiresPrice"] = False
            params["order_configuration"] = {
                "market_market_ioc": {"base_size": f"{order.quantity.normalize():f}"}
            }
        try:
            raw = self._call(
                "create_order",
                symbol,
                order.order_type,
                order.side.lower(),
                float(order.quantity),
                None if order.order_type == "market" else float(order.price),
                params,
            )
        except OrderRejected as exc:
            if "Duplicate" in str(exc) or "duplicate" in str(exc):
                # The exchange already has this client id: a previous attempt got through.
                raise UnclearOutcome(f"duplicate client order id: {exc}") from exc
            raise
        snapshot = self._snapshot(raw, order)
        return SubmitResult(
            exchange_order_id=snapshot.exchange_order_id,
            fills=snapshot.fills,
            status=snapshot.status,
        )

    def fetch(self, order: Order) -> OrderSnapshot | None:
        """The exchange's view of the order, looked up by client order id; None if unknown."""
        symbol = self._symbol(order)
        self._prepare_market(symbol)
        try:
            if order.exchange_order_id or self.profile.ccxt_id not in ("bybit", "coinbase"):
                raw = self._call(
                    "fetch_order",
                    order.exchange_order_id or None,
                    symbol,
                    {self.profile.fetch_by_client_id: order.client_order_id},
                )
            else:
                if self.profile.ccxt_id == "bybit":
                    found = self._bybit_by_link_id(symbol, order.client_order_id)
                else:
                    found = self._coinbase_by_client_id(symbol, order)
                if found is None:
                    return None
                raw = found
        except UnclearOutcome as exc:
            if isinstance(exc.__cause__, ccxt.OrderNotFound):
                return None
            raise
        except OrderRejected as exc:
            if isinstance(exc.__cause__, ccxt.OrderNotFound | ccxt.InvalidOrder):
                return None
            raise
        return self._snapshot(raw, order)

    def _bybit_by_link_id(self, symbol: str, link_id: str) -> dict | None:
        """Bybit's order/realtime by orderLinkId alone: ccxt's fetch_order always sends
        orderId (as "None" when unknown), which Bybit looks up first and finds nothing."""
        market = self.client.market(symbol)
        response = self._call(
            "privateGetV5OrderRealtime",
            {
                "category": "spot" if market["spot"] else "linear",
                "symbol": market["id"],
                "orderLinkId": link_id,
            },
        )
        rows = (response.get("result") or {}).get("list") or []
        return self.client.parse_order(rows[0], market) if rows else None

    def _coinbase_by_client_id(self, symbol: str, order: Order) -> dict | None:
        """Coinbase's List Orders for the market since the intent, matched on client_order_id:
        Get Order takes only the exchange's id, so ccxt's fetch_order would ask for "None"."""
        market = self.client.market(symbol)
        since = order.created_at - COINBASE_LOOKBACK
        request: dict[str, Any] = {
            "product_ids": [market["id"]],
            "start_date": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "limit": 100,
        }
        for _ in range(COINBASE_MAX_PAGES):
            page = self._call("v3PrivateGetBrokerageOrdersHistoricalBatch", request)
            for row in page.get("orders") or []:
                if row.get("client_order_id") == order.client_order_id:
                    return self.client.parse_order(row, market)
            if not page.get("has_next") or not page.get("cursor"):
                return None
            request["cursor"] = page["cursor"]
        raise UnclearOutcome(
            f"{order.client_order_id} not among the last {COINBASE_MAX_PAGES * 100} orders"
        )

    def cancel(self, order: Order) -> None:
        symbol = self._symbol(order)
        self._call("cancel_order", order.exchange_order_id, symbol)

    def open_orders(self, symbols: list[str]) -> list[dict]:
        """Open orders in the markets this exchange account lists (others are skipped)."""
        self._call("load_markets")
        out: list[dict] = []
        for symbol in symbols:
            if self.account.market_type == ExchangeAccount.MarketType.FUTURES:
                symbol = f"{symbol}:{symbol.split('/')[-1]}"  # the linear perpetual
            if symbol in self.client.markets:
                out += self._call("fetch_open_orders", symbol)
        return out

    def balances(self) -> dict[str, Decimal]:
        raw = self._call("fetch_balance")
        return {
            asset: Decimal(str(amount))
            for asset, amount in (raw.get("total") or {}).items()
            if amount is not None
        }


def _seconds(value: object, default: float = 60.0) -> float:
    """Retry-After in seconds (the exchange's word), 60 s when it does not say."""
    try:
        return max(1.0, float(str(value)))
    except (TypeError, ValueError):
        return default
