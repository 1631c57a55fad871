"""The fill model: one definition of fees, slippage, timing and size limits for paper
trading and backtests.

The paper adapter and both backtest engines call `FillModel.execute` (or, for the float
vectorized path, the same formulas in `trading.lib.backtest.vectorized`, tested equal), so
a fill price, quantity and fee computed in one place is the one computed in the other.

What is modelled, per market order:

- **Reference price**: the decision bar's close (`delay_bars=0`, what the live paper loop
  sees when it decides) or the open of the bar `delay_bars` after the decision bar
  (`delay_bars=1`, the default: the first price at which an order sent after a close could
  really trade).
- **Slippage** against the taker, in basis points: a fixed part, plus an optional
  volatility part (`vol_slippage` × the bar's high-low range in bps) and an optional
  square-root volume impact (`impact_bps` × sqrt(quantity / bar volume)). Rounding to the
  market precision is adverse too.
- **Fees**: taker fee on market orders, maker fee on resting (limit) orders, per exchange
  (`EXCHANGE_FEES`) unless the account overrides them.
- **Size**: at most `volume_cap` × the bar's volume fills (the rest is canceled, IOC), the
  quantity is rounded down to the market's quantity precision, and a fill whose notional is
  below `min_notional` does not happen at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

BPS = Decimal("10000")
ZERO = Decimal("0")

# Published base-tier spot fees (maker, taker) in bps, for backtests of accounts that do not
# set their own. Operators with VIP tiers or fee tokens override them per account.
EXCHANGE_FEES: dict[str, tuple[Decimal, Decimal]] = {
    "binance": (Decimal("10"), Decimal("10")),
    "bybit": (Decimal("10"), Decimal("10")),
    "okx": (Decimal("8"), Decimal("10")),
    "kraken": (Decimal("25"), Decimal("40")),
    "coinbase": (Decimal("40"), Decimal("60")),
}


@dataclass(frozen=True, slots=True)
class BarView:
    """What the fill model may know about the bar an order fills in."""

    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True, slots=True)
class Execution:
    """What the model says happens to a market order: a fill (maybe partial) or nothing."""

    price: Decimal
    quantity: Decimal  # filled; zero when nothing fills
    fee: Decimal
    unfilled: Decimal  # canceled remainder (volume cap, precision)
    reason: str = ""  # why nothing (or less) filled


@dataclass(frozen=True, slots=True)
class FillModel:
    fee_bps: Decimal  # taker
    slippage_bps: Decimal
    maker_fee_bps: Decimal | None = None  # None: same as the taker fee
    delay_bars: int = 1  # 0: the decision bar's close; n: the open n bars later
    vol_slippage: Decimal = ZERO  # extra bps per bp of the fill bar's high-low range
    impact_bps: Decimal = ZERO  # extra bps × sqrt(quantity / bar volume)
    volume_cap: Decimal | None = None  # max fraction of the fill bar's volume
    min_notional: Decimal = ZERO

    @classmethod
    def for_exchange(cls, code: str, **overrides: object) -> FillModel:
        """Base-tier fees of a known exchange (Binance's for an unknown one)."""
        maker, taker = EXCHANGE_FEES.get(code, EXCHANGE_FEES["binance"])
        params: dict[str, object] = {
            "fee_bps": taker,
            "maker_fee_bps": maker,
            "slippage_bps": Decimal("5"),
        }
        params.update(overrides)
        return cls(**params)  # type: ignore[arg-type]

    def slippage_for(self, quantity: Decimal, bar: BarView | None) -> Decimal:
        """Slippage in bps for `quantity` filling in `bar`: fixed + volatility + impact."""
        bps = self.slippage_bps
        if bar is None:
            return bps
        if self.vol_slippage and bar.close > 0:
            bps += self.vol_slippage * (bar.high - bar.low) / bar.close * BPS
        if self.impact_bps and bar.volume > 0 and quantity > 0:
            bps += self.impact_bps * (quantity / bar.volume).sqrt()
        return bps

    def price(
        self, reference: Decimal, side: str, precision: int, slippage_bps: Decimal | None = None
    ) -> Decimal:
        """Reference price moved against the taker by the slippage, at market precision.

        Rounding is adverse too (buys up, sells down) so that precision never hands back
        part of the slippage and results are never flattered.
        """
        factor = (self.slippage_bps if slippage_bps is None else slippage_bps) / BPS
        if side == "BUY":
            return quantize(reference * (1 + factor), precision, ROUND_CEILING)
        return quantize(reference * (1 - factor), precision, ROUND_FLOOR)

    def fee(self, price: Decimal, quantity: Decimal, *, maker: bool = False) -> Decimal:
        """Taker (or maker) fee on the notional, in the quote currency."""
        bps = self.fee_bps if not maker or self.maker_fee_bps is None else self.maker_fee_bps
        return quantize(price * quantity * bps / BPS, 8, ROUND_HALF_EVEN)

    def fillable(self, quantity: Decimal, bar: BarView | None, qty_precision: int) -> Decimal:
        """The part of `quantity` the bar's volume lets fill, at the quantity precision."""
        if self.volume_cap is not None and bar is not None:
            quantity = min(quantity, bar.volume * self.volume_cap)
        return quantize(max(quantity, ZERO), qty_precision, ROUND_DOWN)

    def execute(
        self,
        *,
        side: str,
        quantity: Decimal,
        reference: Decimal,
        bar: BarView | None,
        price_precision: int,
        qty_precision: int,
    ) -> Execution:
        """A market order of `quantity` at `reference`, filling in `bar` (None: unknown)."""
        filled = self.fillable(quantity, bar, qty_precision)
        if filled <= 0:
            reason = "no volume to fill against" if quantity > 0 else "nothing to fill"
            return Execution(reference, ZERO, ZERO, quantity, reason)
        price = self.price(reference, side, price_precision, self.slippage_for(filled, bar))
        if price * filled < self.min_notional:
            return Execution(
                price, ZERO, ZERO, quantity, f"notional below minimum {self.min_notional}"
            )
        reason = "" if filled == quantity else "capped by bar volume"
        return Execution(price, filled, self.fee(price, filled), quantity - filled, reason)


def quantize(value: Decimal, places: int, rounding: str = ROUND_DOWN) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=rounding)
