"""The paper exchange: an in-process simulator filling through the backtests' fill model."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.conf import settings

from marketdata.models import Candle, Market
from trading.adapters.base import FillReport, OrderRejected, OrderSnapshot, SubmitResult
from trading.lib.fills import BarView, FillModel
from trading.models import ExchangeAccount, Order


def paper_fill_model(account: ExchangeAccount, market: Market) -> FillModel:
    """The fill model of a paper account on a market; a backtest "as paper" uses this too.

    The live loop decides on a bar's close and sends at once, so its reference is that
    close (`delay_bars=0`); see docs/BACKTESTING.md for why that is the equivalent rule.
    """
    cap = getattr(settings, "QT_PAPER_VOLUME_CAP", None)
    return FillModel(
        fee_bps=account.fee_bps,
        slippage_bps=account.slippage_bps,
        delay_bars=0,
        vol_slippage=Decimal(str(getattr(settings, "QT_PAPER_VOL_SLIPPAGE", 0))),
        impact_bps=Decimal(str(getattr(settings, "QT_PAPER_IMPACT_BPS", 0))),
        volume_cap=Decimal(str(cap)) if cap else None,
        min_notional=market.min_notional,
    )


class PaperAdapter:
    """Fills market orders at the reference price moved by slippage, charging the taker fee.

    Uses the same FillModel.execute as the backtest engines, so a paper result is a
    backtest result. A fill capped by the bar's volume cancels the remainder (IOC).
    """

    def __init__(self, account: ExchangeAccount) -> None:
        self.account = account

    def submit(self, order: Order, *, reference_price: Decimal, at: datetime) -> SubmitResult:
        model = paper_fill_model(self.account, order.market)
        needs_bar = model.volume_cap is not None or model.vol_slippage or model.impact_bps
        execution = model.execute(
            side=order.side,
            quantity=order.quantity,
            reference=reference_price,
            bar=self._bar(order) if needs_bar else None,
            price_precision=order.market.price_precision,
            qty_precision=order.market.qty_precision,
        )
        if execution.quantity <= 0:
            raise OrderRejected(f"paper: nothing filled ({execution.reason})")
        fill = FillReport(
            trade_id=f"paper-{order.client_order_id}-1",
            price=execution.price,
            quantity=execution.quantity,
            fee=execution.fee,
            fee_currency=self.account.quote_currency,
            filled_at=at,
        )
        status = "canceled" if execution.unfilled > 0 else "accepted"
        return SubmitResult(exchange_order_id=f"paper-{order.pk}", fills=[fill], status=status)

    @staticmethod
    def _bar(order: Order) -> BarView | None:
        """The bar the decision was made on (the signal's), else the market's newest."""
        candles = Candle.objects.filter(market_id=order.market_id)
        if order.signal_id is not None and order.signal is not None:
            candles = candles.filter(
                timeframe=order.signal.timeframe, open_time=order.signal.candle_time
            )
        row = (
            candles.order_by("-open_time").values("open", "high", "low", "close", "volume").first()
        )
        return BarView(**row) if row else None

    def normalize_quantity(self, market: Market, quantity: Decimal, price: Decimal) -> Decimal:
        """The simulator's market rules are the market row's precision (already applied)."""
        return quantity

    def fetch(self, order: Order) -> OrderSnapshot | None:
        # The simulator is in process: what the database holds is what "the exchange" did.
        return None

    def cancel(self, order: Order) -> None:
        return None
