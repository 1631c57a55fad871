"""Training data: features and labels per bar from stored candles and news, and the
walk-forward split with purging and an embargo."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from marketdata.lib.features import (
    FEATURES,
    compute_features,
    make_labels,
    triple_barrier_labels,
)
from marketdata.models import TIMEFRAMES, CandleGap, Market
from marketdata.news import news_frame_for_bars
from marketdata.selectors import candles_frame

LABELS = ("forward", "triple_barrier")
MIN_BARS = 300


@dataclass
class Dataset:
    """One row per (market, bar) whose features are all defined, in time order."""

    x: np.ndarray  # features, float64
    y: np.ndarray  # 0 SELL / 1 HOLD / 2 BUY, NaN where the label's horizon is not complete
    times: pd.DatetimeIndex  # the bar's open time
    label_end: pd.DatetimeIndex  # open time of the last bar the label looks at (NaT: none)
    market: np.ndarray  # symbol per row
    close: np.ndarray
    step: timedelta
    lineage: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def labelled(self) -> np.ndarray:
        return ~np.isnan(self.y)


def labels_for(
    bars: pd.DataFrame, *, label: str, horizon: int, threshold: float, stop_loss: float | None
) -> pd.Series:
    """The configured labelling of `bars` (see marketdata/lib/features.py)."""
    if label == "forward":
        return make_labels(bars["close"], horizon, threshold)
    if label == "triple_barrier":
        return triple_barrier_labels(
            bars, horizon, threshold, stop_loss if stop_loss else threshold
        )
    raise ValueError(f"unknown label method {label!r}; choose one of {LABELS}")


def dataset_build(
    *,
    markets: list[Market],
    timeframe: str,
    label: str,
    horizon: int,
    threshold: float,
    stop_loss: float | None = None,
) -> Dataset:
    """Features (with the markets' news) and labels for every market, with their lineage."""
    step = TIMEFRAMES[timeframe]
    parts = []
    lineage: dict[str, Any] = {}
    for market in markets:
        bars = candles_frame(market=market, timeframe=timeframe)
        if bars.empty:
            continue
        news = news_frame_for_bars(asset=market.base, bars=bars, bar_duration=step)
        feats = compute_features(bars, news, bar_duration=step)
        y = labels_for(bars, label=label, horizon=horizon, threshold=threshold, stop_loss=stop_loss)
        # Labels are built only from later bars; they never enter the feature matrix.
        ends = pd.Series(bars.index, index=bars.index).shift(-horizon)
        keep = np.isfinite(feats.to_numpy()).all(axis=1)
        parts.append(
            pd.DataFrame(
                {
                    "market": market.symbol,
                    "y": y.to_numpy()[keep],
                    "label_end": ends.to_numpy()[keep],
                    "close": bars["close"].to_numpy()[keep],
                },
                index=bars.index[keep],
            ).join(feats[keep])
        )
        lineage[market.symbol] = {
            "source": f"{market.exchange.code} {market.symbol} {timeframe} candles "
            "(marketdata.Candle)",
            "candles": len(bars),
            "start": bars.index[0].isoformat(),
            "end": bars.index[-1].isoformat(),
            "checksum": hashlib.sha256(bars.to_csv().encode()).hexdigest(),
            "gaps": CandleGap.objects.filter(
                market=market, timeframe=timeframe, backfilled=False
            ).count(),
            "headlines": len(news),
        }
    if not parts:
        raise ValueError("no candles to train on")
    frame = pd.concat(parts)
    frame = frame.iloc[np.lexsort((frame["market"].to_numpy(), frame.index.asi8))]
    return Dataset(
        x=np.ascontiguousarray(frame[FEATURES].to_numpy(dtype="float64")),
        y=frame["y"].to_numpy(dtype="float64"),
        times=pd.DatetimeIndex(frame.index),
        label_end=pd.DatetimeIndex(frame["label_end"]),
        market=frame["market"].to_numpy(),
        close=frame["close"].to_numpy(dtype="float64"),
        step=step,
        lineage=lineage,
    )


@dataclass(frozen=True)
class Fold:
    """Row masks of one walk-forward step: fit and validate on the past, test after it."""

    fit: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    test_start: pd.Timestamp
    test_end: pd.Timestamp


def purged_train_valid(
    data: Dataset, *, before: pd.Timestamp | None, gap: timedelta, valid_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Training rows whose labels end `gap` before `before`, split into fit and validation.

    Purging: a row is only used if the bars its label looks at all come before the cut, so
    no training label overlaps what comes after it. Validation (for early stopping) is the
    latest `valid_fraction` of those rows, and the fit rows are purged against it the same way.
    """
    labelled = data.labelled & ~data.label_end.isna()
    candidates = labelled.copy()
    if before is not None:
        candidates &= np.asarray(data.label_end < before - gap)
    times = data.times[candidates].unique().sort_values()
    if len(times) == 0:
        return candidates, candidates
    valid_start = times[min(len(times) - 1, int(len(times) * (1 - valid_fraction)))]
    valid = candidates & np.asarray(data.times >= valid_start)
    fit = candidates & np.asarray(data.label_end < valid_start)
    return fit, valid


def walk_forward(
    data: Dataset,
    *,
    folds: int,
    test_fraction: float,
    test_start: str,
    test_end: str,
    embargo: int,
    valid_fraction: float,
) -> list[Fold]:
    """Consecutive test windows over the evaluation period, each trained only on its past."""
    times = data.times.unique().sort_values()
    if len(times) < MIN_BARS:
        raise ValueError(f"need at least {MIN_BARS} labelled bars to train, have {len(times)}")
    start = _utc(test_start) if test_start else times[int(len(times) * (1 - test_fraction))]
    end = _utc(test_end) if test_end else times[-1]
    window = times[(times >= start) & (times <= end)]
    if len(window) < folds:
        raise ValueError(f"the evaluation window {start} - {end} has fewer bars than folds")
    gap = embargo * data.step
    out = []
    for chunk in np.array_split(np.asarray(window), folds):
        lo, hi = pd.Timestamp(chunk[0]), pd.Timestamp(chunk[-1])
        fit, valid = purged_train_valid(data, before=lo, gap=gap, valid_fraction=valid_fraction)
        if fit.sum() < MIN_BARS // 2 or valid.sum() == 0:
            raise ValueError(
                f"need at least {MIN_BARS // 2} training rows before {lo:%Y-%m-%d %H:%M}, "
                f"have {int(fit.sum())}"
            )
        test = np.asarray((data.times >= lo) & (data.times <= hi))
        out.append(Fold(fit=fit, valid=valid, test=test, test_start=lo, test_end=hi))
    return out


def _utc(value: str) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
