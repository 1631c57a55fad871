"""A loopback Binance spot REST server, so the real ccxt client runs against real candles.

It speaks just enough of https://developers.binance.com/docs/binance-spot-api-docs/rest-api
for ccxt's ``load_markets`` (spot only) and ``fetch_ohlcv``: ``GET /api/v3/exchangeInfo``
and ``GET /api/v3/klines``. Anything else answers 404, so a test sees any call it did not
expect. Use it as a context manager; leaving the block stops the server (venues.transport).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from http import HTTPStatus
from urllib.parse import parse_qs

from venues.binance_api import Reply, json_reply
from venues.transport import LoopServer, Request

HOUR_MS = 3_600_000
EIGHT_DP = Decimal("0.00000001")

# One kline as Binance sends it: [open time, o, h, l, c, volume, close time, quote volume,
# trades, taker buy base, taker buy quote, ignore]; prices and volumes are strings.
Kline = list[object]

SYMBOL_BTCUSDT = {
    "symbol": "BTCUSDT",
    "status": "TRADING",
    "baseAsset": "BTC",
    "baseAssetPrecision": 8,
    "quoteAsset": "USDT",
    "quotePrecision": 8,
    "quoteAssetPrecision": 8,
    "baseCommissionPrecision": 8,
    "quoteCommissionPrecision": 8,
    "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
    "icebergAllowed": True,
    "ocoAllowed": True,
    "otoAllowed": True,
    "quoteOrderQtyMarketAllowed": True,
    "allowTrailingStop": True,
    "cancelReplaceAllowed": True,
    "isSpotTradingAllowed": True,
    "isMarginTradingAllowed": True,
    "filters": [
        {
            "filterType": "PRICE_FILTER",
            "minPrice": "0.01000000",
            "maxPrice": "1000000.00000000",
            "tickSize": "0.01000000",
        },
        {
            "filterType": "LOT_SIZE",
            "minQty": "0.00001000",
            "maxQty": "9000.00000000",
            "stepSize": "0.00001000",
        },
        {
            "filterType": "NOTIONAL",
            "minNotional": "5.00000000",
            "applyMinToMarket": True,
            "maxNotional": "9000000.00000000",
            "applyMaxToMarket": False,
            "avgPriceMins": 5,
        },
    ],
    "permissions": [],
    "permissionSets": [["SPOT", "MARGIN"]],
    "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
    "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
}


def _eight(value: object) -> str:
    """Binance prints prices and volumes with 8 decimals ("10639.01000000")."""
    try:
        return str(Decimal(str(value)).quantize(EIGHT_DP))
    except ArithmeticError:
        return str(value)  # NaN or garbage stays as it is, for malformed-data tests


def _open_ms(value: object) -> int:
    """A bar's open time (aware datetime, epoch ms or ISO-8601 UTC) in epoch milliseconds."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime (time must be UTC-aware)")
        return int(value.timestamp() * 1000)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def kline(row: Mapping[str, object]) -> Kline:
    """A row of the shared CSV format as a Binance 1h kline."""
    open_ms = _open_ms(row["open_time"])
    volume = Decimal(str(row["volume"]))
    quote_volume = volume * Decimal(str(row["close"]))
    return [
        open_ms,
        _eight(row["open"]),
        _eight(row["high"]),
        _eight(row["low"]),
        _eight(row["close"]),
        _eight(volume),
        open_ms + HOUR_MS - 1,
        _eight(quote_volume),
        1000,
        _eight(volume / 2),
        _eight(quote_volume / 2),
        "0",
    ]


class BinanceLoopback(LoopServer):
    """Serves `rows` (shared CSV format, 1h, sorted) as the BTCUSDT spot market."""

    def __init__(self, rows: Iterable[Mapping[str, object]]) -> None:
        super().__init__()
        self.klines: list[Kline] = [kline(r) for r in rows]
        # What the tests steer: bars withheld (as if the exchange lacked them), klines
        # replaced by malformed ones, and an HTTP status to answer /klines with.
        self.hidden: set[int] = set()
        self.mangled: dict[int, Callable[[Kline], Kline]] = {}
        self.klines_status: int | None = None
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._requests_lock = threading.Lock()

    def paths(self) -> list[str]:
        with self._requests_lock:
            return [path for path, _ in self.requests]

    def kline_requests(self) -> list[dict[str, str]]:
        with self._requests_lock:
            return [query for path, query in self.requests if path == "/api/v3/klines"]

    def answer(self, request: Request) -> Reply:
        query = {k: v[-1] for k, v in parse_qs(request.query).items()}
        with self._requests_lock:
            self.requests.append((request.path, query))
        if request.method != "GET":
            return _text(HTTPStatus.NOT_FOUND, "Not Found")
        if request.path == "/api/v3/exchangeInfo":
            return json_reply(HTTPStatus.OK, _exchange_info())
        if request.path != "/api/v3/klines":
            return _text(HTTPStatus.NOT_FOUND, "Not Found")
        status = self.klines_status
        if status == HTTPStatus.TOO_MANY_REQUESTS:
            msg = "Too many requests; IP banned until later."
            return json_reply(status, {"code": -1003, "msg": msg}, {"Retry-After": "1"})
        if status is not None:
            return _text(status, HTTPStatus(status).phrase)
        return json_reply(*self._select(query))

    def _select(self, query: Mapping[str, str]) -> tuple[int, object]:
        if query.get("symbol") != "BTCUSDT":
            return HTTPStatus.BAD_REQUEST, {"code": -1121, "msg": "Invalid symbol."}
        if query.get("interval") != "1h":
            return HTTPStatus.BAD_REQUEST, {"code": -1120, "msg": "Invalid interval."}
        limit = min(int(query.get("limit", 500)), 1000)
        start = int(query["startTime"]) if "startTime" in query else None
        end = int(query["endTime"]) if "endTime" in query else None
        served = [
            self.mangled.get(_open(k), list)(k)
            for k in self.klines
            if _open(k) not in self.hidden
            and (start is None or _open(k) >= start)
            and (end is None or _open(k) <= end)
        ]
        # Binance answers the oldest `limit` bars from startTime, else the newest ones.
        return HTTPStatus.OK, served[:limit] if start is not None else served[-limit:]


def _open(row: Kline) -> int:
    return int(str(row[0]))


def _text(status: int, text: str) -> Reply:
    return Reply(status, text.encode(), "text/plain")


def _exchange_info() -> dict[str, object]:
    return {
        "timezone": "UTC",
        "serverTime": int(time.time() * 1000),
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": 6000,
            },
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
        ],
        "exchangeFilters": [],
        "symbols": [SYMBOL_BTCUSDT],
    }
