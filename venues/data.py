"""What the loopback exchange lists and serves: spot symbols and klines from the shared CSVs.

Standard library only, so the exchange runs in a process without Django.
"""

from __future__ import annotations

import bisect
import csv
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

EIGHT_DP = Decimal("0.00000001")
REPO_ROOT = Path(__file__).resolve().parents[1]
INTERVAL_MS = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
}
QUOTE_ASSETS = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "EUR", "TRY", "BTC", "ETH", "BNB")

# One kline as Binance sends it: [open time, o, h, l, c, volume, close time, quote volume,
# trades, taker buy base, taker buy quote, ignore]; prices and volumes are strings.
Kline = list[object]


def fmt(value: Decimal) -> str:
    """Binance prints amounts with 8 decimals ("10639.01000000")."""
    return f"{value.quantize(EIGHT_DP):f}"


@dataclass(frozen=True)
class SymbolSpec:
    symbol: str
    base: str
    quote: str
    tick_size: Decimal = Decimal("0.01")
    step_size: Decimal = Decimal("0.00001")
    min_notional: Decimal = Decimal("5")

    def info(self) -> dict[str, object]:
        """The symbol's entry in GET /api/v3/exchangeInfo."""
        return {
            "symbol": self.symbol,
            "status": "TRADING",
            "baseAsset": self.base,
            "baseAssetPrecision": 8,
            "quoteAsset": self.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
            "icebergAllowed": False,
            "ocoAllowed": False,
            "otoAllowed": False,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": False,
            "cancelReplaceAllowed": False,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": fmt(self.tick_size),
                    "maxPrice": "1000000.00000000",
                    "tickSize": fmt(self.tick_size),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": fmt(self.step_size),
                    "maxQty": "9000.00000000",
                    "stepSize": fmt(self.step_size),
                },
                {
                    "filterType": "NOTIONAL",
                    "minNotional": fmt(self.min_notional),
                    "applyMinToMarket": True,
                    "maxNotional": "9000000.00000000",
                    "applyMaxToMarket": False,
                    "avgPriceMins": 5,
                },
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }


# Binance's real filters for the pairs in the shared data; other symbols get BTC-like ones.
STEP_SIZES = {
    "BTCUSDT": Decimal("0.00001"),
    "ETHUSDT": Decimal("0.0001"),
    "BNBUSDT": Decimal("0.001"),
    "SOLUSDT": Decimal("0.001"),
}


def spec_for(symbol: str) -> SymbolSpec:
    symbol = symbol.replace("/", "").upper()
    quote = next((q for q in QUOTE_ASSETS if symbol.endswith(q) and symbol != q), None)
    if quote is None:
        raise ValueError(f"cannot tell the quote asset of {symbol!r}")
    base = symbol[: -len(quote)]
    return SymbolSpec(symbol, base, quote, step_size=STEP_SIZES.get(symbol, Decimal("0.00001")))


def default_data_dir() -> Path:
    """$QT_DATA_DIR (the platform's setting reads the same variable), else ../shared/data."""
    path = Path(os.environ.get("QT_DATA_DIR") or REPO_ROOT.parent / "shared" / "data")
    return path if path.is_absolute() else (REPO_ROOT / path).resolve()


def _open_ms(value: str) -> int:
    if value.isdigit():
        return int(value)
    return int(datetime.fromisoformat(value).timestamp() * 1000)


class KlineStore:
    """Klines of `binance_<SYMBOL>_<interval>.csv` files, parsed on first use and cached."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._cache: dict[tuple[str, str], tuple[list[Kline], list[int]]] = {}
        self._lock = threading.Lock()

    def symbols(self) -> list[str]:
        return sorted(p.name.split("_")[1] for p in self.data_dir.glob("binance_*_1h.csv"))

    def path(self, symbol: str, interval: str) -> Path:
        return self.data_dir / f"binance_{symbol}_{interval}.csv"

    def last_close(self, symbol: str) -> Decimal | None:
        """The close of the newest 1h bar (read from the file's tail, not the whole file)."""
        path = self.path(symbol, "1h")
        if not path.exists():
            return None
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 4096))
            lines = [line for line in handle.read().decode().splitlines() if line.strip()]
        if len(lines) < 2:
            return None
        return Decimal(lines[-1].split(",")[4])

    def select(
        self, symbol: str, interval: str, start: int | None, end: int | None, limit: int
    ) -> list[Kline]:
        """Binance's rule: the oldest `limit` bars from startTime, else the newest ones."""
        klines, times = self._load(symbol, interval)
        lo = bisect.bisect_left(times, start) if start is not None else 0
        hi = bisect.bisect_right(times, end) if end is not None else len(times)
        served = klines[lo:hi]
        return served[:limit] if start is not None else served[-limit:]

    def _load(self, symbol: str, interval: str) -> tuple[list[Kline], list[int]]:
        key = (symbol, interval)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = self._read(self.path(symbol, interval), INTERVAL_MS[interval])
            return self._cache[key]

    @staticmethod
    def _read(path: Path, step_ms: int) -> tuple[list[Kline], list[int]]:
        if not path.exists():
            return [], []
        rows: list[tuple[int, Kline]] = []
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                open_ms = _open_ms(row["timestamp"])
                volume = Decimal(row["volume"])
                quote_volume = volume * Decimal(row["close"])
                kline: Kline = [
                    open_ms,
                    fmt(Decimal(row["open"])),
                    fmt(Decimal(row["high"])),
                    fmt(Decimal(row["low"])),
                    fmt(Decimal(row["close"])),
                    fmt(volume),
                    open_ms + step_ms - 1,
                    fmt(quote_volume),
                    1000,
                    fmt(volume / 2),
                    fmt(quote_volume / 2),
                    "0",
                ]
                rows.append((open_ms, kline))
        rows.sort(key=lambda pair: pair[0])
        return [k for _, k in rows], [t for t, _ in rows]
