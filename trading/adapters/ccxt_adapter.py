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
from urllib.parse import urlsplit

import ccxt
from django.conf import settings
from django.utils import timezone

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
from trading.adapters.errors import Kind, classify, classify_as_at
from trading.models import ExchangeAccount, Order
from trading.ratelimit import Bucket, RateLimited, Window, backoff_seconds

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Profile:
    """What differs between exchanges; everything else is ccxt's unified API."""

    ccxt_id: str
    client_id_param: str  # the exchange's own name for the client order id
    fetch_by_client_id: str  # param that looks an order up by client id
    options: dict[str, Any] = field(default_factory=dict)
    # The venue's request budget (trading/ratelimit.py), and the venue weight of one unit of
    # ccxt's cost (ccxt's costs are in its own units: see each class's describe()).
    windows: tuple[Window, ...] = ()
    weight_per_cost: float = 1.0
    # Requests that place a new order (method, path suffix): they count on "order" windows.
    new_order_paths: frozenset[tuple[str, str]] = frozenset()
    # Error codes of a 429 that limits new orders only (cancels and lookups still go out).
    order_limit_codes: frozenset[str] = frozenset()
    # Answers besides 418/429 that back the venue off (Bucket.backoff_codes/_statuses).
    backoff_codes: tuple[tuple[str, float], ...] = ()
    backoff_statuses: tuple[tuple[int, float], ...] = ()


# Binance spot, rest-api.md (binance/binance-spot-api-docs): "LIMITS / IP Limits": weight is
# counted per IP ("The limits on the API are based on the IPs, not the API keys"), reported in
# X-MBX-USED-WEIGHT-1M; enums.md "Rate limiters": REQUEST_WEIGHT 6000 per 1 MINUTE. "Unfilled
# Order Count": "tracked for each account" (faqs/order_count_decrement.md: "by (sub)account ...
# shared across all IP addresses"), reported in X-MBX-ORDER-COUNT-10S/-1D; the limits as
# "Query Unfilled Order Count" shows them: 50 per 10 SECOND, 160000 per 1 DAY (the live ones
# are in exchangeInfo's rateLimits). Cancels do not count (the FAQ: "Canceling an order does
# not change the unfilled order count"). CHANGELOG 2026-03-27: RAW_REQUESTS 300,000 per 5
# minutes. ccxt's binance: rateLimit 50 ms a unit, "1 IP weight => cost = 0.2", so 5 weight a
# unit. We count every new order (fills lower the venue's count; its header never lowers ours).
BINANCE_SPOT_WINDOWS = (
    Window(6000, 60, "weight", "ip", aligned=True, header="x-mbx-used-weight-1m"),
    Window(300_000, 300, "request", "ip", aligned=True),
    Window(50, 10, "order", "account", aligned=True, header="x-mbx-order-count-10s"),
    Window(160_000, 86_400, "order", "account", aligned=True, header="x-mbx-order-count-1d"),
)
BINANCE_NEW_ORDER = frozenset(
    {
        ("POST", "/api/v3/order"),
        ("POST", "/api/v3/order/cancelReplace"),
        ("POST", "/api/v3/sor/order"),
    }
)

# bybit-exchange/docs, docs/v5/rate-limit/rate-limit.mdx, "HTTP IP limit": 600 requests within
# a 5-second window per IP; past it "403, access too frequent": "wait for at least 10
# minutes". "API Rate Limit": per second per UID and endpoint (order/create 20/s spot, 10/s
# linear): ccxt's costs model those in one pool of 50 units a second (rateLimit 20 ms;
# order/create costs 2.5). Every answer carries X-Bapi-Limit-Status (left) of X-Bapi-Limit
# for its endpoint: the share of that endpoint used counts as the same share of the pool
# (stricter than Bybit for the other endpoints, for the rest of that second). '"retCode":
# 10006, "retMsg": "Too many visits!"' (an HTTP 200) backs off until
# X-Bapi-Limit-Reset-Timestamp.
BYBIT_WINDOWS = (
    Window(600, 5, "request", "ip"),
    Window(
        50,
        1,
        "weight",
        "account",
        remaining_header="x-bapi-limit-status",
        limit_header="x-bapi-limit",
    ),
)
BYBIT_BACKOFF_CODES = (("10006", 1.0),)
BYBIT_BACKOFF_STATUSES = ((403, 600.0),)

PROFILES: dict[tuple[str, str], Profile] = {
    ("binance", "spot"): Profile(
        "binance",
        "newClientOrderId",
        "origClientOrderId",
        {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}},
        BINANCE_SPOT_WINDOWS,
        weight_per_cost=5,
        new_order_paths=BINANCE_NEW_ORDER,
        # errors.md: -1015 TOO_MANY_ORDERS "Too many new orders"; -1003 is the weight limit.
        order_limit_codes=frozenset({"-1015"}),
    ),
    # Binance USD-M futures: 2400 weight per minute per IP (developers.binance.com, USD-M
    # Futures "General Info / Limits"; not in the spot docs repository, so not re-checked
    # here); ccxt's fapi costs are the documented weights (cost 1 = weight 1).
    ("binance", "futures"): Profile(
        "binanceusdm",
        "newClientOrderId",
        "origClientOrderId",
        {"defaultType": "future"},
        (Window(2400, 60, "weight", "ip", aligned=True, header="x-mbx-used-weight-1m"),),
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
        windows=BYBIT_WINDOWS,
        backoff_codes=BYBIT_BACKOFF_CODES,
        backoff_statuses=BYBIT_BACKOFF_STATUSES,
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
        windows=BYBIT_WINDOWS,
        backoff_codes=BYBIT_BACKOFF_CODES,
        backoff_statuses=BYBIT_BACKOFF_STATUSES,
    ),
    # KuCoin: spot markets only. ccxt's default also lists futures contracts (a request to
    # api-futures.kucoin.com for markets a spot account never trades, and one whose
    # failure fails load_markets, so no order could be placed). Budget: kucoin.com/docs-new
    # "Rate Limit / REST / Resource Pool": Spot pool 4000 per 30 s per UID at VIP0, counted
    # from the first request (so a rolling window here); ccxt's costs are KuCoin's weights.
    # Every answer carries gw-ratelimit-remaining of gw-ratelimit-limit (the pool), which
    # corrects the count. Past the quota: "http code:429, error code:429000", retry "after
    # the length of time displayed in the request header" (gw-ratelimit-reset); a 429000 of
    # an overloaded server carries no such header: 30 s, the pool's window. The older "Rate
    # limit 1.0" page names two more: 200002, the per-endpoint limit, "block10s", and 1015,
    # Cloudflare's per-IP limit, "block 30s" (its "System error codes" table calls 200002
    # "Order cancel for this pair suspended", for which a 10 s pause is harmless too).
    ("kucoin", "spot"): Profile(
        "kucoin",
        "clientOid",
        "clientOid",
        {"fetchMarkets": {"types": ["spot"]}},
        (
            Window(
                4000,
                30,
                "weight",
                "account",
                remaining_header="gw-ratelimit-remaining",
                limit_header="gw-ratelimit-limit",
            ),
        ),
        backoff_codes=(("429000", 30.0), ("200002", 10.0), ("1015", 30.0)),
    ),
    # Coinbase: balances from Advanced Trade's own accounts (ccxt's default is the retail
    # app's v2 wallets); orders by client id through List Orders (see fetch). Weights are
    # ccxt's (34 ms a unit: private v3 calls cost 1 of Coinbase's 30/s, public 3, v2 10.6);
    # not re-checked against Coinbase's docs here.
    ("coinbase", "spot"): Profile(
        "coinbase",
        "client_order_id",
        "client_order_id",
        {"fetchBalance": "v3PrivateGetBrokerageAccounts"},
        (Window(30, 1, "weight", "account"),),
    ),
}

# How far before the intent was recorded a Coinbase lookup by client id starts (clock
# skew between us and the exchange), and how many pages of 100 orders it reads at most.
COINBASE_LOOKBACK = timedelta(minutes=5)
# The same margin for every venue's order-history look-up, and its page (Binance allOrders
# and KuCoin List Orders both serve up to 500 a page).
HISTORY_LOOKBACK = COINBASE_LOOKBACK
HISTORY_PAGE = 500
HISTORY_MAX_PAGES = 20
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


def ccxt_for_account(account: ExchangeAccount, *, cached: bool = True) -> Any:
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
        client = _clients.get(fingerprint) if cached else None
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
            production = client.urls["api"]
            client.urls["api"] = rebase_urls(production, account.api_url_override.rstrip("/"))
            classify_as_at(client, production)
        _limit_requests(client, profile, str(account.pk))
        client.qt_prepared = set()
        if cached:
            _clients[fingerprint] = client
        return client


def _limit_requests(client: Any, profile: Profile, account_id: str) -> None:
    """Every request of `client` spends on the venue's shared budget and reports back to it.

    ccxt calls throttle(cost) before every request (enableRateLimit), with its cost only;
    the request itself reaches fetch(url, method, ...) next, in the same thread, so the cost
    is spent there, where a new order can be told from other calls by its method and path.
    Every answer, errors included, passes on_rest_response with its status, headers and
    body: the venue's usage headers correct the shared counts, and a rate-limit answer (a
    429/418, or one of the profile's back-off codes and statuses) starts the back-off.
    """
    bucket = Bucket(
        profile.ccxt_id,
        account_id,
        profile.windows,
        weight_per_cost=profile.weight_per_cost,
        order_limit_codes=profile.order_limit_codes,
        backoff_codes=profile.backoff_codes,
        backoff_statuses=profile.backoff_statuses,
    )
    pending = threading.local()
    fetch, on_rest_response = client.fetch, client.on_rest_response

    def throttle(cost: float | None = None) -> None:
        pending.cost = float(cost or 1)

    def limited_fetch(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        cost, pending.cost = getattr(pending, "cost", None) or 1.0, None
        path = urlsplit(url).path
        new_order = any(method == m and path.endswith(p) for m, p in profile.new_order_paths)
        bucket.take(cost, new_order=new_order)
        return fetch(url, method, headers, body)

    def observed(
        code: int, reason: str, url: str, method: str, response_headers: Any, *rest: Any
    ) -> Any:
        bucket.observe(int(code), response_headers or {}, rest[0] if rest else None)
        return on_rest_response(code, reason, url, method, response_headers, *rest)

    client.throttle = throttle
    client.fetch = limited_fetch
    client.on_rest_response = observed
    client.qt_bucket = bucket


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
        """One exchange call; every ccxt error mapped by `errors.TABLE` (one place)."""
        try:
            return getattr(self.client, fn)(*args, **kwargs)
        except RateLimited as exc:
            raise NotSent(str(exc)) from exc
        except ccxt.BaseError as exc:
            if isinstance(exc, ccxt.DDoSProtection):  # 429 and 418
                self._rate_limited(exc)
                raise UnclearOutcome(f"rate limited: {exc}"[:500]) from exc
            kind = classify(exc)
            text = f"{type(exc).__name__}: {exc}"[:500]
            if isinstance(exc, ccxt.AuthenticationError):
                text = f"authentication failed: {text}"[:500]
            if kind is Kind.NOT_SENT:
                raise NotSent(text) from exc
            if kind in (Kind.FINAL, Kind.NOT_FOUND):
                raise OrderRejected(text) from exc
            raise UnclearOutcome(text) from exc

    def _rate_limited(self, exc: Exception) -> None:
        """The venue said 429/418: every worker backs off as long as it says, with an incident.

        Bucket.observe has started the right back-off already (the venue for that IP, or
        new orders only) for every answer its profile knows as a limit (429/418, Bybit's
        10006 in a 200 and its 403, KuCoin's 429000); one it does not know backs the venue
        off here, as long as the headers say, else 60 s.
        """
        headers = self.client.last_response_headers or {}
        retry_after = backoff_seconds({k.lower(): str(v) for k, v in headers.items()})
        bucket: Bucket = self.client.qt_bucket
        if bucket.backoff_left(new_order=True) <= 0:
            bucket.back_off(retry_after)
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
        restart (Binance -4046 MarginModeAlreadySet; Bybit docs/v5/error.mdx 110043 "Set
        leverage has not been modified.", matched on its code, not its wording)."""
        try:
            self._call(fn, *args)
        except (OrderRejected, UnclearOutcome) as exc:
            cause = exc.__cause__
            if isinstance(cause, ccxt.NoChange) or '"retCode":110043' in str(cause).replace(
                " ", ""
            ):
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

    def _fills(
        self, raw_trades: list[dict], order: Order, *, at_ms: int | None = None
    ) -> list[FillReport]:
        """Fills at the venue's transaction time: a trade's own, else the order's (`at_ms`).

        Binance's FULL order answer lists fills without a time (binance-spot-api-docs
        rest-api.md "New order (TRADE)", Response FULL: price, qty, commission,
        commissionAsset, tradeId); the order's transactTime is when they happened.
        """
        fills = []
        for t in raw_trades:
            fee = t.get("fee") or {}
            stamp = t.get("timestamp") or at_ms
            fills.append(
                FillReport(
                    trade_id=str(t["id"]),
                    price=Decimal(str(t["price"])),
                    quantity=Decimal(str(t["amount"])),
                    fee=Decimal(str(fee.get("cost") or 0)),
                    fee_currency=fee.get("currency") or self.account.quote_currency,
                    filled_at=(
                        datetime.fromtimestamp(stamp / 1000, UTC) if stamp else timezone.now()
                    ),
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
            trades = self._order_trades(order, str(raw["id"]))
        at_ms = raw.get("lastTradeTimestamp") or raw.get("timestamp")
        return OrderSnapshot(
            client_order_id=order.client_order_id,
            exchange_order_id=str(raw["id"]),
            status=mapped,
            filled_quantity=filled,
            fills=self._fills(trades, order, at_ms=at_ms),
        )

    def _order_trades(self, order: Order, exchange_id: str) -> list[dict]:
        """The venue's fills of one order, by its exchange id."""
        symbol = self._symbol(order)
        if self.account.exchange.code == "binance":
            trades = self._call("fetch_my_trades", symbol, None, None, {"orderId": exchange_id})
        elif self.profile.ccxt_id == "coinbase":  # ccxt has no fetchOrderTrades there
            trades = self._call("fetch_my_trades", symbol, None, None, {"order_ids": [exchange_id]})
        else:
            trades = self._call("fetch_order_trades", exchange_id, symbol)
        return [t for t in trades if str(t.get("order")) == exchange_id]

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
        """The venue's view of the order; None only when the venue has no such order.

        A venue's first look-up is a partial index (Bybit's realtime list forgets closed
        orders at a restart or past the last 500; KuCoin classic's by-clientOid route sees
        active orders only), so "not there" is never concluded from it: the venue's order
        history over the order's lifetime is asked next, then its fills by exchange id.
        """
        symbol = self._symbol(order)
        self._prepare_market(symbol)
        raw = self._not_found_is_none(self._lookup, symbol, order)
        if raw is None:
            raw = self._not_found_is_none(self._history, symbol, order)
        if raw is not None:
            return self._snapshot(raw, order)
        if not order.exchange_order_id:
            return None
        trades = self._not_found_is_none(self._order_trades, order, order.exchange_order_id)
        if not trades:
            return None
        # Fills without an order record (older than the history keeps): the fills are
        # the venue's word; status follows from them (filled once the quantity is).
        return OrderSnapshot(
            client_order_id=order.client_order_id,
            exchange_order_id=order.exchange_order_id,
            status=Order.Status.ACCEPTED,
            filled_quantity=sum((Decimal(str(t["amount"])) for t in trades), Decimal(0)),
            fills=self._fills(trades, order),
        )

    def _not_found_is_none(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except (UnclearOutcome, OrderRejected) as exc:
            cause = exc.__cause__
            if isinstance(cause, ccxt.OrderNotFound):
                return None
            if isinstance(exc, OrderRejected) and isinstance(cause, ccxt.InvalidOrder):
                return None  # a look-up refused as invalid: e.g. KuCoin's 400100, no such id
            raise

    def _lookup(self, symbol: str, order: Order) -> dict | None:
        """The venue's own look-up: by exchange id when known, else by client id."""
        code = self.profile.ccxt_id
        if code == "bybit":
            return self._bybit_orders("privateGetV5OrderRealtime", symbol, order)
        if code == "coinbase" and not order.exchange_order_id:
            return self._coinbase_by_client_id(symbol, order)
        if code == "kucoin" and order.exchange_order_id:
            # By orderId: KuCoin's by-clientOid route answers active orders only (classic).
            return self._call("fetch_order", order.exchange_order_id, symbol)
        return self._call(
            "fetch_order",
            order.exchange_order_id or None,
            symbol,
            {self.profile.fetch_by_client_id: order.client_order_id},
        )

    def _history(self, symbol: str, order: Order) -> dict | None:
        """The venue's order history since just before the intent, matched on client id."""
        code = self.profile.ccxt_id
        if code == "bybit":
            return self._bybit_orders("privateGetV5OrderHistory", symbol, order)
        if code == "coinbase":
            return self._coinbase_by_client_id(symbol, order) if order.exchange_order_id else None
        since = int((order.created_at - HISTORY_LOOKBACK).timestamp() * 1000)
        method = "fetch_closed_orders" if code == "kucoin" else "fetch_orders"
        seen: set[str] = set()
        for _ in range(HISTORY_MAX_PAGES):
            rows = self._call(method, symbol, since, HISTORY_PAGE)
            for raw in rows:
                if raw.get("clientOrderId") == order.client_order_id:
                    return raw
            fresh = [r for r in rows if str(r.get("id")) not in seen]
            seen.update(str(r.get("id")) for r in rows)
            if len(rows) < HISTORY_PAGE or not fresh:
                return None  # the venue has nothing after these: the lifetime is covered
            # Pages run oldest first: go on from the newest order seen (that millisecond
            # again, as more orders may share it; `seen` keeps the loop moving).
            since = max(int(r.get("timestamp") or since) for r in rows)
        # Pages that do not reach the present do not cover the order's lifetime.
        raise UnclearOutcome(
            f"{order.client_order_id} not among {HISTORY_MAX_PAGES * HISTORY_PAGE} orders since it"
        )

    def _bybit_orders(self, route: str, symbol: str, order: Order) -> dict | None:
        """Bybit's order/realtime or order/history by orderId, else by orderLinkId alone:
        ccxt's fetch_order always sends orderId (as "None" when unknown), which Bybit looks
        up first (docs/v5/order/open-order.mdx: "orderId > orderLinkId > symbol")."""
        market = self.client.market(symbol)
        request = {"category": "spot" if market["spot"] else "linear", "symbol": market["id"]}
        if order.exchange_order_id:
            request["orderId"] = order.exchange_order_id
        else:
            request["orderLinkId"] = order.client_order_id
        rows = (self._call(route, request).get("result") or {}).get("list") or []
        rows = [r for r in rows if r.get("orderLinkId") == order.client_order_id]
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

    # --- futures: positions and the margin wallet -----------------------------------------

    def futures_positions(self) -> dict[str, tuple[Decimal, Decimal]]:
        """{market symbol ("BTC/USDT"): (signed size, entry price)} for every non-zero
        position, read from the venue's own position route:

        - Binance USDⓈ-M "Position Information V3" (GET /fapi/v3/positionRisk): positionAmt,
          signed in one-way mode; entryPrice. (ccxt's fetch_positions first loads leverage
          brackets, a call reconciliation does not need.)
        - Bybit docs/v5/position/position.mdx (GET /v5/position/list, category linear,
          settleCoin): size, unsigned, with side Buy / Sell ("" when empty); avgPrice.
        """
        self._call("load_markets")
        code = self.profile.ccxt_id
        if code == "binanceusdm":
            rows = [
                (r.get("symbol"), r.get("positionAmt"), r.get("entryPrice"))
                for r in self._call("fapiPrivateV3GetPositionRisk")
            ]
        elif code == "bybit":
            request = {"category": "linear", "settleCoin": self.account.quote_currency}
            listed = (self._call("privateGetV5PositionList", request).get("result") or {}).get(
                "list"
            ) or []
            rows = [
                (
                    r.get("symbol"),
                    f"-{r.get('size')}" if r.get("side") == "Sell" else r.get("size"),
                    r.get("avgPrice"),
                )
                for r in listed
            ]
        else:
            raise NotImplementedError(f"{code}: futures positions are not read")
        out: dict[str, tuple[Decimal, Decimal]] = {}
        for venue_symbol, size, entry in rows:
            qty = Decimal(str(size or 0))
            if qty:
                symbol = self.client.safe_market(venue_symbol, None, None, "swap")["symbol"]
                out[symbol.split(":")[0]] = (qty, Decimal(str(entry or 0)))
        return out

    def futures_wallet(self) -> Decimal | None:
        """The margin wallet of the account's quote asset, without unrealised PnL: Binance
        "Account Information V3" assets[].walletBalance, Bybit wallet-balance.mdx
        coin[].walletBalance. (ccxt's "total" is marginBalance on Binance, which includes
        unrealised PnL, and walletBalance on Bybit: not the same thing.)"""
        info = self._call("fetch_balance").get("info") or {}
        if "assets" in info:
            rows, key = info["assets"], "asset"
        else:
            accounts = (info.get("result") or {}).get("list") or []
            rows, key = [c for a in accounts for c in a.get("coin") or []], "coin"
        for row in rows:
            if row.get(key) == self.account.quote_currency:
                return Decimal(str(row.get("walletBalance") or 0))
        return None
