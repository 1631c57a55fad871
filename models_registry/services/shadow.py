"""Shadow models: calls on live bars without orders, and their paper PnL beside the active one."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.db.models import Max

from marketdata.lib.features import LOOKBACK, compute_features
from marketdata.models import TIMEFRAMES, Candle
from marketdata.news import news_frame_for_bars
from marketdata.selectors import candles_frame
from models_registry.lib.backtest import Costs, backtest
from models_registry.models import ModelVersion, ShadowSignal
from models_registry.selectors import markets_of_group
from models_registry.services.inference import model_predict

logger = logging.getLogger(__name__)

ACTIONS = ("SELL", "HOLD", "BUY")


def shadow_run(*, model_version: ModelVersion) -> int:
    """Predict every stored bar after the shadow start not predicted yet; returns how many."""
    if not model_version.shadow or model_version.shadow_since is None:
        return 0
    step = TIMEFRAMES[model_version.timeframe]
    created = 0
    for market in markets_of_group(model_version.market_group):
        done = ShadowSignal.objects.filter(
            model_version=model_version, market=market, timeframe=model_version.timeframe
        ).aggregate(t=Max("candle_time"))["t"]
        after = max(done, model_version.shadow_since) if done else model_version.shadow_since
        new = Candle.objects.filter(
            market=market, timeframe=model_version.timeframe, open_time__gt=after
        ).count()
        if not new:
            continue
        bars = candles_frame(market=market, timeframe=model_version.timeframe, last=new + LOOKBACK)
        news = news_frame_for_bars(asset=market.base, bars=bars, bar_duration=step)
        feats = compute_features(bars, news, bar_duration=step)
        feats = feats[(feats.index > after) & np.isfinite(feats.to_numpy()).all(axis=1)]
        if feats.empty:
            continue
        proba = model_predict(model_version=model_version, features=feats.to_numpy())
        closes = bars["close"].reindex(feats.index)
        signals = [
            ShadowSignal(
                model_version=model_version,
                market=market,
                timeframe=model_version.timeframe,
                candle_time=t.to_pydatetime(),
                action=ACTIONS[int(p.argmax())],
                prob_sell=float(p[0]),
                prob_hold=float(p[1]),
                prob_buy=float(p[2]),
                price=Decimal(str(closes.loc[t])),
            )
            for t, p in zip(feats.index, proba, strict=True)
        ]
        created += len(ShadowSignal.objects.bulk_create(signals, ignore_conflicts=True))
    return created


def shadow_run_all() -> int:
    total = 0
    for mv in ModelVersion.objects.filter(shadow=True):
        try:
            total += shadow_run(model_version=mv)
        except Exception:
            logger.exception("shadow run of %s failed", mv)
    return total


def shadow_compare(*, model_version: ModelVersion) -> dict[str, Any] | None:
    """The shadow's paper PnL and the live signals' over the same bars, by the same rules.

    Both go through the evaluation backtest (long/flat, paper fees and slippage), so the
    comparison is like for like; None until the shadow has made calls.
    """
    from trading.models import Signal

    markets = markets_of_group(model_version.market_group)
    shadow_frames, live_frames = {}, {}
    code = {name: i for i, name in enumerate(ACTIONS)}
    for market in markets:
        rows = list(
            ShadowSignal.objects.filter(model_version=model_version, market=market)
            .order_by("candle_time")
            .values_list("candle_time", "action", "price")
        )
        if not rows:
            continue
        index = pd.DatetimeIndex([r[0] for r in rows])
        close = np.array([float(r[2]) for r in rows])
        shadow_frames[market.symbol] = pd.DataFrame(
            {"close": close, "action": [code[r[1]] for r in rows]}, index=index
        )
        live = dict(
            Signal.objects.filter(
                market=market,
                timeframe=model_version.timeframe,
                candle_time__gte=index[0],
                candle_time__lte=index[-1],
            )
            .exclude(model_version=model_version)
            .order_by("candle_time", "id")
            .values_list("candle_time", "action")
        )
        live_frames[market.symbol] = pd.DataFrame(
            {"close": close, "action": [code[live.get(t, "HOLD")] for t in index]}, index=index
        )
    if not shadow_frames:
        return None
    costs = Costs(fee_bps=float(settings.QT_FEE_BPS), slippage_bps=float(settings.QT_SLIPPAGE_BPS))
    per_year = 365.25 * 86400 / TIMEFRAMES[model_version.timeframe].total_seconds()
    shadow = backtest(shadow_frames, costs, per_year)
    followed = backtest(live_frames, costs, per_year)
    keys = ("total_return", "sharpe", "max_drawdown", "trades", "win_rate")
    return {
        "bars": shadow["bars"],
        "start": shadow["start"],
        "end": shadow["end"],
        "shadow": {k: shadow[k] for k in keys},
        "active": {k: followed[k] for k in keys},
        "equity_curve": {
            "time": shadow["equity_curve"]["time"],
            "shadow": shadow["equity_curve"]["strategy"],
            "active": followed["equity_curve"]["strategy"],
        },
    }
