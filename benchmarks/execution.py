"""Closed candle → signal → order acknowledged by the (loopback) exchange, end to end.

    python -m benchmarks.execution [--bars 300] [--burst 2000] [--json]

Runs the real path: the ingestion service commits a candle, Celery (a real worker process,
Redis broker) builds the features, asks the model, stores the Signal, runs the risk checks,
persists the order intent and submits it through ccxt to the loopback Binance on 127.0.0.1.

Latency is measured per bar from the candle's commit to the signal row and to the order's
`accepted` event (wall clock, one machine). Throughput: a burst of bars is committed as fast
as possible and the signals stored per minute are counted. Orders follow the model's
long/flat strategy, so order acknowledgement is measured on the bars where it trades.

Use a scratch database: DATABASE_URL (PostgreSQL for the published figures) or, by default,
var/benchmark-execution.sqlite3. The peer figure is the signal latency of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path


def _setup_django() -> None:
    from cryptography.fernet import Fernet

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantum.settings")
    # The benchmark's account keys are the loopback's; any key encrypts them.
    os.environ.setdefault("QT_FERNET_KEY", Fernet.generate_key().decode())
    if "DATABASE_URL" not in os.environ:
        os.environ["DATABASE_URL"] = "sqlite:///var/benchmark-execution.sqlite3"
        Path("var/benchmark-execution.sqlite3").unlink(missing_ok=True)
    import django

    django.setup()


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=300, help="bars for the latency phase")
    parser.add_argument("--burst", type=int, default=2000, help="bars for the throughput phase")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between bars")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    _setup_django()

    from decimal import Decimal

    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from marketdata.models import Candle, Market
    from marketdata.services.ingestion import candles_ingest
    from marketdata.services.sync import market_register
    from marketdata.sources import read_candle_csv
    from models_registry.lib.gates import GateConfig
    from models_registry.services.training import TrainingConfig, model_train
    from quantum.bootstrap import roles_ensure, trading_defaults_ensure
    from quantum.embedded import redis_start
    from quantum.processes import WorkerProcess, child_env
    from trading.adapters.ccxt_adapter import _clients
    from trading.models import ExchangeAccount, OrderEvent, Signal
    from trading.services.accounts import account_keys_set
    from trading.services.chaos import limits_wide_open
    from trading.services.reconcile import account_reconcile
    from venues.binance import LoopbackExchange

    if settings.EMBEDDED_REDIS:
        redis_start(settings.REDIS_SOCKET)
    call_command("migrate", verbosity=0)
    roles_ensure()
    trading_defaults_ensure()
    ExchangeAccount.objects.filter(mode="paper").update(strategy_enabled=False)
    rows = read_candle_csv(settings.QT_DATA_DIR / "binance_BTCUSDT_1h.csv")
    history, live = rows[:3000], rows[3000 : 3000 + args.bars + args.burst]
    market = market_register(exchange_code=settings.QT_EXCHANGE, symbol="BTC/USDT")
    Market.objects.exclude(pk=market.pk).update(active=False)
    Candle.objects.filter(market=market).delete()
    candles_ingest(market=market, timeframe="1h", rows=history, source="benchmark")
    # The benchmark measures the path, not the model: its gates are opened so that the
    # model may drive the testnet account (real deployments keep the defaults).
    open_gates = GateConfig(min_sharpe=-1e9, max_drawdown=1e9, min_trades=0, max_psi=1e9)
    model_train(
        markets=[market],
        timeframe="1h",
        config=TrainingConfig(n_estimators=60),
        gates=open_gates,
    )

    with LoopbackExchange(
        port=0,
        seed=1,
        api_key="bench-key-0001",
        api_secret="bench-secret",
        balances={"USDT": "100000000", "BTC": "0"},
    ) as exchange:
        _clients.clear()
        account = ExchangeAccount.objects.create(
            name=f"bench-{int(time.time())}",
            exchange=market.exchange,
            mode="testnet",
            cash=Decimal("100000000"),
            starting_cash=Decimal("100000000"),
            api_url_override=exchange.url,
        )
        account_keys_set(
            account=account, api_key="bench-key-0001", api_secret="bench-secret", actor="benchmark"
        )
        limits_wide_open(account)
        if not account_reconcile(account=account).ok:
            raise SystemExit("benchmark account did not reconcile")
        worker = WorkerProcess("celery", child_env())
        worker.start()
        time.sleep(4)  # the worker's start-up is not what is measured
        try:
            committed: dict[object, float] = {}
            for row in live[: args.bars]:
                candles_ingest(market=market, timeframe="1h", rows=[row], source="bench", live=True)
                committed[Candle.objects.filter(market=market).latest("open_time").open_time] = (
                    time.time()
                )
                time.sleep(args.interval)
            deadline = time.time() + 120
            while Signal.objects.filter(candle_time__in=list(committed)).count() < len(committed):
                if time.time() > deadline:
                    break
                time.sleep(0.2)
            time.sleep(2)
            signal_ms = [
                (s.created_at.timestamp() - committed[s.candle_time]) * 1000
                for s in Signal.objects.filter(candle_time__in=list(committed))
            ]
            order_ms = [
                (e.created_at.timestamp() - committed[e.order.signal.candle_time]) * 1000
                for e in OrderEvent.objects.filter(
                    to_status="accepted",
                    order__account=account,
                    order__signal__candle_time__in=list(committed),
                ).select_related("order__signal")
                if e.order.signal is not None
            ]
            before = Signal.objects.count()
            start = time.time()
            for row in live[args.bars :]:
                candles_ingest(market=market, timeframe="1h", rows=[row], source="bench", live=True)
            deadline = time.time() + 600
            while Signal.objects.count() - before < args.burst and time.time() < deadline:
                time.sleep(0.2)
            burst_s = time.time() - start
            burst_signals = Signal.objects.count() - before
        finally:
            worker.stop()
    result = {
        "benchmark": "execution",
        "database": connection.vendor,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpu",
        "bars": len(committed),
        "orders_acknowledged": len(order_ms),
        "p50_ms": round(_pct(order_ms, 0.50), 1),
        "p95_ms": round(_pct(order_ms, 0.95), 1),
        "p99_ms": round(_pct(order_ms, 0.99), 1),
        "signal_p50_ms": round(_pct(signal_ms, 0.50), 1),
        "signal_p95_ms": round(_pct(signal_ms, 0.95), 1),
        "signals_per_min": round(burst_signals / burst_s * 60),
        "burst_signals": burst_signals,
        "order_vs_signal_p50_ratio": round(_pct(order_ms, 0.5) / _pct(signal_ms, 0.5), 2)
        if signal_ms and order_ms
        else None,
        "mean_order_ms": round(statistics.fmean(order_ms), 1) if order_ms else None,
    }
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
