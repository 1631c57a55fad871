"""Turning a closed candle into a stored Signal from the active model."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction

from marketdata.lib.features import FEATURE_SET_HASH, LOOKBACK, compute_features
from marketdata.models import TIMEFRAMES, Candle, Market
from marketdata.news import news_frame
from marketdata.selectors import candles_frame
from models_registry.selectors import active_model_for
from models_registry.services.inference import model_predict
from quantum.realtime import push_html
from trading.models import Signal

logger = logging.getLogger(__name__)


def signal_generate(*, market: Market, timeframe: str, candle_time: datetime) -> Signal | None:
    """Features from the last bars up to `candle_time`, the active model's call, a Signal."""
    model = active_model_for(market, timeframe)
    if model is None:
        logger.warning("no active model for %s %s", market.symbol, timeframe)
        return None
    existing = Signal.objects.filter(
        market=market, timeframe=timeframe, candle_time=candle_time, model_version=model
    ).first()
    if existing:
        return existing  # a redelivered task finds the signal it already made
    bars = candles_frame(market=market, timeframe=timeframe, until=candle_time, last=LOOKBACK)
    if bars.empty or bars.index[-1] != candle_time:
        logger.warning("candle %s for %s not stored", candle_time, market.symbol)
        return None
    step = TIMEFRAMES[timeframe]
    news = news_frame(asset=market.base, until=candle_time + step)  # published before the close
    row = compute_features(bars, news, bar_duration=step).iloc[[-1]]
    if row.isna().any(axis=None):
        logger.info("not enough history for %s at %s", market.symbol, candle_time)
        return None
    from quantum.metrics import INFERENCE_LATENCY, SIGNALS

    with INFERENCE_LATENCY.labels(market=market.symbol).time():
        proba = model_predict(model_version=model, features=row.to_numpy())[0]
    sell, hold, buy = (float(p) for p in proba)
    action = ("SELL", "HOLD", "BUY")[int(proba.argmax())]
    try:
        with transaction.atomic():
            signal = Signal.objects.create(
                market=market,
                timeframe=timeframe,
                candle_time=candle_time,
                action=action,
                prob_buy=buy,
                prob_hold=hold,
                prob_sell=sell,
                price=_close(market, timeframe, candle_time),
                model_version=model,
                feature_set_hash=FEATURE_SET_HASH,
            )
            push_html(template="trading/push/signal.html", context={"signal": signal})
    except IntegrityError:
        return Signal.objects.get(
            market=market, timeframe=timeframe, candle_time=candle_time, model_version=model
        )
    SIGNALS.labels(market=market.symbol, action=action).inc()
    return signal


def _close(market: Market, timeframe: str, candle_time: datetime) -> Decimal:
    """The stored close as a Decimal (the float frame is for features only)."""
    return Candle.objects.values_list("close", flat=True).get(
        market=market, timeframe=timeframe, open_time=candle_time
    )


def signals_catch_up(*, timeframe: str | None = None) -> list[tuple[int, datetime]]:
    """Beat: re-drive the newest closed bar of each market that has no signal yet.

    The closed-candle task is sent once, after the ingest commits. If its message is lost
    (the Redis transport marks a fetched message unacknowledged only after the pop, so a
    worker killed in between drops it) or the send itself failed, nothing else would ever
    make that bar's signal. This sweep sends the task again for a bar that closed at least
    CATCH_UP_AFTER ago and at most QT_INTENT_TTL_S ago (later, a decision is stale anyway).
    Both the signal and the order are idempotent, so a bar whose task is merely slow is
    signalled and traded once. Returns the (market id, bar time) pairs sent.
    """
    from django.conf import settings
    from django.utils import timezone

    from trading.tasks import process_closed_candle

    timeframe = timeframe or settings.QT_TIMEFRAME
    step = TIMEFRAMES[timeframe]
    now = timezone.now()
    sent = []
    for market in Market.objects.filter(active=True):
        model = active_model_for(market, timeframe)
        if model is None:
            continue
        last = (
            Candle.objects.filter(market=market, timeframe=timeframe)
            .order_by("-open_time")
            .values_list("open_time", flat=True)
            .first()
        )
        if last is None:
            continue
        closed_ago = now - (last + step)
        if not CATCH_UP_AFTER <= closed_ago <= timedelta(seconds=settings.QT_INTENT_TTL_S):
            continue
        if Signal.objects.filter(
            market=market, timeframe=timeframe, candle_time=last, model_version=model
        ).exists():
            continue
        logger.warning(
            "no signal yet for %s %s bar %s closed %ss ago: sending its task again",
            market.symbol,
            timeframe,
            last.isoformat(),
            int(closed_ago.total_seconds()),
        )
        process_closed_candle.delay(market.pk, timeframe, last.isoformat())
        sent.append((market.pk, last))
    return sent


# Long enough for the ingest's own task to have run on a healthy worker.
CATCH_UP_AFTER = timedelta(seconds=20)
