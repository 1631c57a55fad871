"""Parity, proven: the live paper loop and the backtest agree on real candles, to the cent.

The live side is the production path of test_e2e: replayed Binance candles go through the
ingestion service, each closed bar is handed to a real Celery worker over Redis, which makes
the signal, sizes, runs the risk checks and fills on the paper adapter. The backtest side
replays the same stored candles through the event engine configured as the paper account
(`paper_config`), with the model strategy computed the way the live signal is.
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connections

from marketdata.lib.features import LOOKBACK
from marketdata.models import TIMEFRAMES
from marketdata.services.sync import market_backfill, market_register, market_sync
from marketdata.sources import ReplaySource
from models_registry.selectors import active_model_for
from models_registry.services.training import TrainingConfig, model_train
from quantum.bootstrap import trading_defaults_ensure
from quantum.celery import app
from trading.lib.backtest import engine
from trading.models import Fill, Order, Signal, Trade
from trading.services.backtests import bars_from_db, model_actions, paper_config

LIVE_BARS = 120


def _wait_for(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    pytest.fail("the worker did not finish in time")


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_the_paper_loop_and_the_backtest_make_the_same_orders_fills_and_pnl_on_real_candles(
    settings, tmp_path, data_dir
) -> None:  # type: ignore[no-untyped-def]
    settings.QT_ARTIFACT_DIR = tmp_path
    settings.QT_DATA_DIR = data_dir
    # A window of 2024 with trends both ways; the model is trained on the 120 days before.
    source = ReplaySource(data_dir=data_dir, start="2024-08-01T00:00:00Z")
    btc = market_register(exchange_code="binance", symbol="BTC/USDT")
    account = trading_defaults_ensure()
    history = market_backfill(market=btc, timeframe="1h", source=source, days=120)
    assert history.inserted == 120 * 24
    model_train(markets=[btc], timeframe="1h", config=TrainingConfig(n_estimators=60))
    config = paper_config(account=account, market=btc)

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        for n in range(1, LIVE_BARS + 1):
            assert market_sync(market=btc, timeframe="1h", source=source).inserted == 1
            # One bar at a time, as live: the next candle arrives after this one is handled
            # (sizing marks equity at the newest close, so a faster replay would differ).
            _wait_for(lambda n=n: Signal.objects.filter(market=btc).count() == n)
            _wait_for(lambda: not Order.objects.exclude(status__in=["filled", "rejected"]).exists())
    connections.close_all()

    # The backtest: the same stored candles, the same model, the paper account's config.
    signals = Signal.objects.filter(market=btc).order_by("candle_time")
    first, last = signals.first().candle_time, signals.last().candle_time  # type: ignore[union-attr]
    bars = bars_from_db(
        market=btc,
        timeframe="1h",
        start=first - (LOOKBACK - 1) * TIMEFRAMES["1h"],
        end=last,
    )
    warm = len(bars) - LIVE_BARS
    actions = model_actions(
        market=btc, timeframe="1h", bars=bars, model_version=active_model_for(btc, "1h")
    )
    # Every live signal is the backtest's action on the same bar.
    live_actions = [
        {"BUY": 1, "HOLD": 0, "SELL": -1}[a] for a in signals.values_list("action", flat=True)
    ]
    assert actions[warm:].tolist() == live_actions

    result = engine.run(bars.slice(warm, len(bars)), actions[warm:], config)

    orders = list(Order.objects.filter(market=btc).order_by("created_at", "id"))
    # The window is short for CI's budget but still holds round trips both ways.
    assert {o.side for o in orders} == {"BUY", "SELL"}, "the window should buy and sell"
    assert Trade.objects.filter(market=btc).count() >= 2, "several round trips"
    fills = {f.order_id: f for f in Fill.objects.filter(order__market=btc)}
    live = [(o.side, o.quantity, fills[o.pk].price, fills[o.pk].fee) for o in orders]
    back = [(f.side, f.quantity, f.price, f.fee) for f in result.fills]
    assert back == live

    live_trades = [
        (t.quantity, t.entry_price, t.exit_price, t.fees, t.pnl)
        for t in Trade.objects.filter(market=btc).order_by("exit_time")
    ]
    back_trades = [(t.quantity, t.entry_price, t.exit_price, t.fee, t.pnl) for t in result.trades]
    assert back_trades == live_trades
    account.refresh_from_db()
    assert result.final_cash == account.cash
    assert sum((t.pnl for t in result.trades), Decimal(0)) == sum(t[-1] for t in live_trades)
