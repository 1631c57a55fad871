"""Backtests: configs validated into engine runs, runs stored as records, "as paper" configs.

The engines are pure (`trading.lib.backtest`); this module supplies the data (CSV or the
candles table), the model strategy (which needs the registry), and the BacktestRun rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from marketdata.lib.candles import Bar, parse_time
from marketdata.models import TIMEFRAMES, Candle, Market
from trading.lib.backtest import engine, report, strategies
from trading.lib.backtest.data import Bars, BarsError, load_csv
from trading.lib.fills import FillModel
from trading.models import BacktestRun, ExchangeAccount

logger = logging.getLogger(__name__)

STRATEGIES = ("ema_cross", "rsi_reversion", "model")
DEFAULTS: dict[str, Any] = {
    "strategy": "ema_cross",
    "params": {},
    "exchange": "binance",
    "market": None,
    "timeframe": "1h",
    "start": None,
    "end": None,
    "data": None,
    "fee_bps": "10",
    "slippage_bps": "5",
    "cash": "10000",
    "delay_bars": 1,
    "long_short": False,
    "fraction": "1",
    "volume_cap": None,
    "vol_slippage": "0",
    "impact_bps": "0",
    "min_notional": "0",
    "model_version": None,
    "seed": 0,
}


class BacktestConfigError(ValueError):
    """A config that cannot run; the message names the field and the problem."""


def _decimal(config: dict[str, Any], key: str, *, positive: bool = False) -> str:
    try:
        value = Decimal(str(config[key]))
    except (InvalidOperation, ValueError):
        raise BacktestConfigError(f"{key}: {config[key]!r} is not a number") from None
    if not value.is_finite() or value < 0 or (positive and value == 0):
        raise BacktestConfigError(f"{key}: must be {'positive' if positive else '>= 0'}")
    return str(value)


def config_validate(raw: dict[str, Any]) -> dict[str, Any]:
    """The canonical config (every field, typed as JSON) or BacktestConfigError."""
    unknown = set(raw) - set(DEFAULTS)
    if unknown:
        raise BacktestConfigError(f"unknown field(s): {', '.join(sorted(unknown))}")
    config = {**DEFAULTS, **{k: v for k, v in raw.items() if v is not None}}
    if config["strategy"] not in STRATEGIES:
        raise BacktestConfigError(
            f"strategy: {config['strategy']!r} is not one of {', '.join(STRATEGIES)}"
        )
    if config["strategy"] != "model":
        try:
            config["params"] = strategies.parse_params(config["strategy"], config["params"])
            strategies.RULES[config["strategy"]](np.ones(3), **config["params"])
        except ValueError as exc:
            raise BacktestConfigError(f"params: {exc}") from None
    for key in ("fee_bps", "slippage_bps", "vol_slippage", "impact_bps", "min_notional"):
        config[key] = _decimal(config, key)
    for key in ("cash", "fraction"):
        config[key] = _decimal(config, key, positive=True)
    if config["volume_cap"] is not None:
        config["volume_cap"] = _decimal(config, "volume_cap", positive=True)
    try:
        config["delay_bars"] = int(config["delay_bars"])
        config["seed"] = int(config["seed"])
    except (TypeError, ValueError):
        raise BacktestConfigError("delay_bars and seed must be integers") from None
    if not 0 <= config["delay_bars"] <= 10:
        raise BacktestConfigError("delay_bars: must be between 0 and 10")
    config["long_short"] = bool(config["long_short"])
    if config["timeframe"] not in TIMEFRAMES:
        raise BacktestConfigError(f"timeframe: {config['timeframe']!r} is not supported")
    for key in ("start", "end"):
        if config[key] is not None:
            try:
                config[key] = parse_time(config[key]).isoformat()
            except (ValueError, TypeError):
                raise BacktestConfigError(f"{key}: {config[key]!r} is not a date/time") from None
    if config["data"] is None and not config["market"]:
        raise BacktestConfigError("either a CSV file (data) or a market is required")
    return config


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


@cache
def code_version() -> str:
    """`git describe` of the checkout, else the project version (containers have no .git)."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()[:64] or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "0.1.0+unknown"


def bars_from_db(
    *, market: Market, timeframe: str, start: datetime | None, end: datetime | None
) -> Bars:
    """Stored candles of a market in [start, end] (stored candles were validated on ingest)."""
    qs = Candle.objects.filter(market=market, timeframe=timeframe).order_by("open_time")
    if start is not None:
        qs = qs.filter(open_time__gte=start)
    if end is not None:
        qs = qs.filter(open_time__lte=end)
    rows = [
        Bar(*row) for row in qs.values_list("open_time", "open", "high", "low", "close", "volume")
    ]
    if len(rows) < 2:
        raise BarsError(f"{market.symbol} {timeframe}: fewer than two stored candles in the window")
    return Bars.from_bars(rows, int(TIMEFRAMES[timeframe].total_seconds()))


def model_actions(*, market: Market, timeframe: str, bars: Bars, model_version: Any) -> np.ndarray:
    """The model strategy's action on every bar, computed exactly as the live signal is:
    features on the last LOOKBACK bars up to the bar, plus the headlines before its close."""
    import pandas as pd

    from marketdata.lib.features import LOOKBACK, compute_features
    from marketdata.news import news_frame
    from models_registry.services.inference import model_predict

    step = TIMEFRAMES[timeframe]
    frame = pd.DataFrame(
        {"open": bars.open, "high": bars.high, "low": bars.low, "close": bars.close,
         "volume": bars.volume},
        index=pd.to_datetime(bars.times, unit="s", utc=True),
    )  # fmt: skip
    news = news_frame(asset=market.base, since=bars.time(0) - step * LOOKBACK,
                      until=bars.time(len(bars) - 1) + step)  # fmt: skip
    rows, where = [], []
    for i in range(len(bars)):
        window = frame.iloc[max(0, i - LOOKBACK + 1) : i + 1]
        close_time = window.index[-1] + step
        seen = news[news["published_at"] < close_time] if len(news) else news
        row = compute_features(window, seen, bar_duration=step).iloc[[-1]]
        if not row.isna().any(axis=None):
            rows.append(row.to_numpy()[0])
            where.append(i)
    actions = np.zeros(len(bars), dtype=np.int8)
    if rows:
        proba = model_predict(model_version=model_version, features=np.vstack(rows))
        # Classes are (SELL, HOLD, BUY): argmax 0 -> -1, 1 -> 0, 2 -> +1.
        actions[np.asarray(where)] = proba.argmax(axis=1).astype(np.int8) - 1
    return actions


def fill_model(config: dict[str, Any]) -> FillModel:
    return FillModel(
        fee_bps=Decimal(config["fee_bps"]),
        slippage_bps=Decimal(config["slippage_bps"]),
        delay_bars=config["delay_bars"],
        vol_slippage=Decimal(config["vol_slippage"]),
        impact_bps=Decimal(config["impact_bps"]),
        volume_cap=Decimal(config["volume_cap"]) if config["volume_cap"] else None,
        min_notional=Decimal(config["min_notional"]),
    )


def engine_config(config: dict[str, Any], market: Market | None = None) -> engine.Config:
    return engine.Config(
        fill=fill_model(config),
        cash=Decimal(config["cash"]),
        long_short=config["long_short"],
        fraction=Decimal(config["fraction"]),
        price_precision=market.price_precision if market else 2,
        qty_precision=market.qty_precision if market else 5,
        market_id=market.pk if market else 1,
    )


def paper_config(*, account: ExchangeAccount, market: Market) -> engine.Config:
    """The engine configured as the paper account trades: its fill model, sizing and the
    risk engine's limits for the market — the configuration the parity test proves."""
    from risk.services.checks import _limits, limits_for
    from trading.adapters.paper import paper_fill_model

    limits = limits_for(account)
    return engine.Config(
        fill=paper_fill_model(account, market),
        cash=account.cash,
        fraction=Decimal(limits.position_fraction),
        max_notional=min(limits.max_position_notional, limits.max_order_notional),
        max_leverage=min(Decimal(1), Decimal(limits.max_leverage)),
        price_precision=market.price_precision,
        qty_precision=market.qty_precision,
        limits=_limits(limits, market),
        market_id=market.pk,
    )


def _market(config: dict[str, Any]) -> Market:
    market = (
        Market.objects.select_related("exchange")
        .filter(exchange__code=config["exchange"], symbol=config["market"])
        .first()
    )
    if market is None:
        raise BacktestConfigError(f"market: no {config['market']} on {config['exchange']}")
    return market


def bars_for(config: dict[str, Any]) -> tuple[Bars, Market | None]:
    """The bars a validated config names: its CSV file, or the market's stored candles."""
    if config["data"]:
        return load_csv(Path(config["data"])), None
    market = _market(config)
    bars = bars_from_db(
        market=market,
        timeframe=config["timeframe"],
        start=parse_time(config["start"]) if config["start"] else None,
        end=parse_time(config["end"]) if config["end"] else None,
    )
    return bars, market


def backtest_execute(
    *, config: dict[str, Any], progress: Callable[[int, int], None] | None = None
) -> tuple[dict[str, Any], Bars]:
    """Run a validated config to its report (the JSON the CLI writes)."""
    bars, market = bars_for(config)
    if config["strategy"] == "model":
        from models_registry.models import ModelVersion
        from models_registry.selectors import active_model_for

        if market is None:
            raise BacktestConfigError("strategy model needs a market from the database")
        version = (
            ModelVersion.objects.filter(pk=config["model_version"]).first()
            if config["model_version"]
            else active_model_for(market, config["timeframe"])
        )
        if version is None:
            raise BacktestConfigError("model_version: no such model (and no active model)")
        actions = model_actions(
            market=market, timeframe=config["timeframe"], bars=bars, model_version=version
        )
    else:
        actions = strategies.rule_actions(config["strategy"], bars, config["params"])
    result = engine.run(bars, actions, engine_config(config, market), progress=progress)
    return report.build(result), bars


def backtest_start(*, config: dict[str, Any], user: Any) -> BacktestRun:
    """Validate a config (database candles only), store the run, queue it after commit.

    Raises BacktestConfigError naming the bad field; nothing is stored then.
    """
    if config.get("data"):
        # A server never reads a file path given by a web or API user.
        raise BacktestConfigError("data: CSV files can only be backtested from the CLI")
    canonical = config_validate(config)
    _market(canonical)
    with transaction.atomic():
        run = BacktestRun.objects.create(
            created_by=user if getattr(user, "pk", None) else None,
            config=canonical,
            config_hash=config_hash(canonical),
            data_source=f"db:{canonical['exchange']}:{canonical['market']}:{canonical['timeframe']}",
            code_version=code_version(),
            seed=canonical["seed"],
            schema_version=report.SCHEMA_VERSION,
        )
        from trading.tasks import run_backtest

        transaction.on_commit(lambda: run_backtest.delay(run.pk))
    return run


def backtest_run(*, run_id: int) -> BacktestRun:
    """Execute a stored run, recording progress, results or the error."""
    run = BacktestRun.objects.get(pk=run_id)
    if run.status in (BacktestRun.Status.DONE, BacktestRun.Status.FAILED):
        return run  # a redelivered task finds the run finished
    BacktestRun.objects.filter(pk=run_id).update(
        status=BacktestRun.Status.RUNNING, started_at=timezone.now(), progress=0.0
    )

    pushed = [-1]

    def progress(done: int, total: int) -> None:
        fraction = round(done / max(total, 1), 3)
        BacktestRun.objects.filter(pk=run_id).update(progress=fraction)
        # Open report pages poll every second; the push (every 5 %) just makes it smoother.
        if int(fraction * 100) >= pushed[0] + 5:
            pushed[0] = int(fraction * 100)
            progress_push(run_id=run_id)

    try:
        results, bars = backtest_execute(config=run.config, progress=progress)
    except (BarsError, BacktestConfigError, ValueError) as exc:
        BacktestRun.objects.filter(pk=run_id).update(
            status=BacktestRun.Status.FAILED, error=str(exc)[:2000], finished_at=timezone.now()
        )
        progress_push(run_id=run_id)
        return BacktestRun.objects.get(pk=run_id)
    BacktestRun.objects.filter(pk=run_id).update(
        status=BacktestRun.Status.DONE,
        progress=1.0,
        results=results,
        bars=len(bars),
        data_start=bars.time(0),
        data_end=bars.time(len(bars) - 1),
        finished_at=timezone.now(),
    )
    progress_push(run_id=run_id)
    return BacktestRun.objects.get(pk=run_id)


def progress_push(*, run_id: int) -> None:
    """Push a run's progress bar to open pages (traders and up: they can start runs)."""
    from quantum.realtime import task_progress_push

    run = BacktestRun.objects.only("id", "status", "progress", "error").get(pk=run_id)
    task_progress_push(
        kind="backtest",
        task_id=run.pk,
        percent=int(run.progress * 100),
        status=run.status,
        message=run.error[:120],
        role="trader",
    )
