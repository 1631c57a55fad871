"""The whole loop on real data: replayed candles -> features -> signal -> risk -> paper fill.

Candles are ingested by the real ingestion service; each new bar is handed to a real Celery
worker through the real broker (Redis) after commit, exactly as in production.
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connections

from marketdata.models import Candle
from marketdata.services.sync import market_backfill, market_register, market_sync
from marketdata.sources import ReplaySource
from models_registry.services.training import TrainingConfig, model_train
from quantum.bootstrap import trading_defaults_ensure
from quantum.celery import app
from risk.models import AuditEvent, RiskDecision
from risk.services.audit import audit_verify
from trading.models import Fill, Order, Position, Signal, Trade

LIVE_BARS = 500


def _wait_for(predicate, timeout: float = 180.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail("the worker did not finish in time")


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_replayed_real_candles_flow_through_the_worker_into_audited_paper_fills(
    settings, tmp_path, data_dir
) -> None:  # type: ignore[no-untyped-def]
    settings.QT_ARTIFACT_DIR = tmp_path
    settings.QT_DATA_DIR = data_dir
    # 500 bars before the end of the BTC file are the 'live' part of the replay.
    source = ReplaySource(data_dir=data_dir, start="2024-12-11T04:00:00Z")
    btc = market_register(exchange_code="binance", symbol="BTC/USDT")
    account = trading_defaults_ensure()

    history = market_backfill(market=btc, timeframe="1h", source=source, days=120)
    assert history.inserted == 120 * 24 and not history.rejected
    model_train(markets=[btc], timeframe="1h", config=TrainingConfig(n_estimators=60))

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        for _ in range(LIVE_BARS):
            report = market_sync(market=btc, timeframe="1h", source=source)
            assert report.inserted == 1
        _wait_for(lambda: Signal.objects.filter(market=btc).count() == LIVE_BARS)
        # Execution runs right after each signal in the same task; let the last one finish.
        _wait_for(lambda: not Order.objects.exclude(status=Order.Status.FILLED).exists())
        time.sleep(1)
    connections.close_all()

    assert Candle.objects.filter(market=btc).count() == 120 * 24 + LIVE_BARS
    signals = Signal.objects.filter(market=btc)
    assert signals.count() == LIVE_BARS
    assert set(signals.values_list("action", flat=True)) <= {"BUY", "SELL", "HOLD"}

    orders = list(Order.objects.filter(market=btc))
    fills = list(Fill.objects.filter(order__market=btc))
    assert len(orders) >= 2, "500 real bars should produce some trading"
    assert len(fills) == len(orders)
    assert all(o.status == Order.Status.FILLED for o in orders)
    assert len({o.client_order_id for o in orders}) == len(orders)
    assert len({o.signal_id for o in orders}) == len(orders), "one order per decision"

    # Every order and every fill is in the audit trail, and the chain is intact.
    for order in orders:
        actions = set(
            AuditEvent.objects.filter(
                object_type="trading.order", object_id=str(order.pk)
            ).values_list("action", flat=True)
        )
        assert {"order.created", "order.submitted", "order.accepted", "order.filled"} <= actions
    for fill in fills:
        assert AuditEvent.objects.filter(
            action="fill.recorded", object_type="trading.fill", object_id=str(fill.pk)
        ).exists()
    assert RiskDecision.objects.filter(approved=True).count() == len(orders)
    ok, detail = audit_verify()
    assert ok, detail

    # Position and cash follow exactly from the fills (Decimal, to the last digit).
    bought = sum((f.quantity for f in fills if f.order.side == "BUY"), Decimal(0))
    sold = sum((f.quantity for f in fills if f.order.side == "SELL"), Decimal(0))
    position = Position.objects.get(account=account, market=btc)
    assert position.quantity == bought - sold
    cash = account.starting_cash
    for f in fills:
        cash += (
            -(f.price * f.quantity + f.fee)
            if f.order.side == "BUY"
            else f.price * f.quantity - f.fee
        )
    account.refresh_from_db()
    assert account.cash == cash
    trades = Trade.objects.filter(market=btc)
    assert trades.count() == sum(1 for o in orders if o.side == "SELL")
    assert position.realized_pnl == sum((t.pnl for t in trades), Decimal(0))
