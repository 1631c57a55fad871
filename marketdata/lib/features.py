"""The feature set: TA-Lib indicators on OHLCV bars plus news sentiment, all causal.

One source of truth for the feature list: FEATURES names every column, and
FEATURE_SET_HASH is the sha256 of the definitions (and their parameters), recorded by each
model and signal. A row sees only its past: indicators use bars up to and including its own
(closed) bar, and sentiment uses only headlines published before that bar closes.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import numpy as np
import pandas as pd
import talib
from scipy.signal import lfilter

FEATURE_SET = "qt_v2"

# Sentiment aggregation: headlines in a trailing window before the bar's close.
NEWS_WINDOW = timedelta(hours=24)
DECAY_HALF_LIFE = timedelta(hours=6)
DECAY_WINDOW = timedelta(hours=72)

# name -> definition; the definitions are hashed, so changing one changes the hash.
TECHNICAL: dict[str, str] = {
    "ret_1": "close.pct_change(1)",
    "ret_4": "close.pct_change(4)",
    "ret_12": "close.pct_change(12)",
    "sma_10_ratio": "close / SMA(close, 10) - 1",
    "sma_30_ratio": "close / SMA(close, 30) - 1",
    "ema_12_ratio": "close / EMA(close, 12) - 1",
    "ema_26_ratio": "close / EMA(close, 26) - 1",
    "rsi_14": "RSI(close, 14) / 100",
    "macd": "MACD(close, 12, 26, 9).macd / close",
    "macd_signal": "MACD(close, 12, 26, 9).signal / close",
    "macd_hist": "MACD(close, 12, 26, 9).hist / close",
    "bb_pctb": "(close - BBANDS(close, 20, 2).lower) / (upper - lower)",
    "bb_width": "(BBANDS(close, 20, 2).upper - lower) / middle",
    "atr_14_pct": "ATR(high, low, close, 14) / close",
    "vol_20": "STDDEV(ret_1, 20)",
    "volume_z_20": "(volume - SMA(volume, 20)) / STDDEV(volume, 20)",
}
SENTIMENT: dict[str, str] = {
    "news_count_24h": "count of headlines on the asset published in [close - 24h, close)",
    "news_sent_mean_24h": "mean VADER compound of those headlines (0 without any)",
    "news_sent_decay": "sum VADER compound * 2^-((close - published)/6h) in [close - 72h, close)",
}
DEFINITIONS: dict[str, str] = TECHNICAL | SENTIMENT
FEATURES = list(DEFINITIONS)
_COLUMNS = pd.Index(FEATURES)  # built once: a live row's frame should not rebuild it
FEATURE_SET_HASH = hashlib.sha256(
    json.dumps(
        {
            "name": FEATURE_SET,
            "definitions": DEFINITIONS,
            "windows": [str(NEWS_WINDOW), str(DECAY_HALF_LIFE), str(DECAY_WINDOW)],
        },
        sort_keys=True,
    ).encode()
).hexdigest()
# Bars of history a feature row needs before all its columns are defined.
WARMUP = 34
# Bars the live signal computes features on. EMA/RSI/ATR are recursive; with 250 bars the
# seed's influence on the last row is below 1e-6 of the value computed on the full history,
# so live rows match the rows a model was trained on.
LOOKBACK = 250

_NS = 1_000_000_000
_SMALL = 20_000


def compute_features(
    bars: pd.DataFrame,
    news: pd.DataFrame | None = None,
    *,
    bar_duration: timedelta | None = None,
) -> pd.DataFrame:
    """One row per input bar (same index); early rows are NaN until indicators warm up.

    `news` has a `published_at` (aware UTC) and a `sentiment` column (VADER compound) for
    the bars' asset; a bar's close is its open time plus `bar_duration` (inferred from the
    index when not given).
    """
    close = bars["close"].to_numpy(dtype="float64")
    high = bars["high"].to_numpy(dtype="float64")
    low = bars["low"].to_numpy(dtype="float64")
    volume = bars["volume"].to_numpy(dtype="float64")
    n = len(close)
    # Each column is computed in place in the array TA-Lib returned: on a million bars the
    # cost is memory traffic, so no temporaries are made that are not needed.
    col: dict[str, np.ndarray] = {}
    for k in (1, 4, 12):
        ret = np.empty(n)
        ret[: min(k, n)] = np.nan
        np.divide(close[k:], close[:-k], out=ret[k:])
        ret[k:] -= 1
        col[f"ret_{k}"] = ret
    for fn, period, name in (
        (talib.SMA, 10, "sma_10_ratio"),
        (talib.SMA, 30, "sma_30_ratio"),
        (talib.EMA, 12, "ema_12_ratio"),
        (talib.EMA, 26, "ema_26_ratio"),
    ):
        average = fn(close, period)
        np.divide(close, average, out=average)
        average -= 1
        col[name] = average
    rsi = talib.RSI(close, 14)
    rsi /= 100
    col["rsi_14"] = rsi
    macd, signal, hist = talib.MACD(close, 12, 26, 9)
    for array, name in ((macd, "macd"), (signal, "macd_signal"), (hist, "macd_hist")):
        array /= close
        col[name] = array
    upper, middle, lower = talib.BBANDS(close, 20, 2, 2)
    band = np.subtract(upper, lower, out=upper)
    pctb = np.subtract(close, lower, out=lower)
    flat = band <= 0
    if flat.any():
        pctb /= np.where(flat, 1.0, band)
        pctb[flat] = 0.5  # a flat band: the close sits in its middle
    else:
        pctb /= band
    col["bb_pctb"] = pctb
    col["bb_width"] = np.divide(band, middle, out=middle)
    atr = talib.ATR(high, low, close, 14)
    atr /= close
    col["atr_14_pct"] = atr
    col["vol_20"] = talib.STDDEV(col["ret_1"], 20)
    vol_std = talib.STDDEV(volume, 20)
    volume_z = talib.SMA(volume, 20)
    np.subtract(volume, volume_z, out=volume_z)
    still = vol_std <= 0
    if still.any():
        volume_z /= np.where(still, 1.0, vol_std)
        volume_z[still] = 0.0
    else:
        volume_z /= vol_std
    col["volume_z_20"] = volume_z
    col.update(_sentiment(bars.index, news, bar_duration))
    warm = min(WARMUP - 1, n)
    for array in col.values():
        array[:warm] = np.nan
    if n <= _SMALL:
        # A live row's window: one block is far cheaper to wrap than nineteen columns.
        block = np.vstack([col[name] for name in FEATURES])
        return pd.DataFrame(block.T, index=bars.index, columns=_COLUMNS, copy=False)
    # A long history: the columns are wrapped as they are, no 2-D copy of the whole matrix.
    return pd.DataFrame({name: col[name] for name in FEATURES}, index=bars.index, copy=False)


def _sentiment(
    index: pd.Index, news: pd.DataFrame | None, bar_duration: timedelta | None
) -> dict[str, np.ndarray]:
    n = len(index)
    if news is None or news.empty or n == 0:
        return {name: np.zeros(n) for name in SENTIMENT}
    step = bar_duration if bar_duration is not None else _infer_step(index)
    step_ns = int(step.total_seconds() * _NS)
    closes = _ns(index) + step_ns
    published = _ns(news["published_at"])
    s = news["sentiment"].to_numpy(dtype="float64")
    if np.any(published[1:] < published[:-1]):
        order = np.argsort(published, kind="stable")
        published, s = published[order], s[order]
    window = int(NEWS_WINDOW.total_seconds() * _NS)
    decay_window = int(DECAY_WINDOW.total_seconds() * _NS)
    tau = DECAY_HALF_LIFE.total_seconds() * _NS / np.log(2)
    # "Before the close" is strict: a headline stamped at the close is the next bar's.
    first = int(closes[0]) - decay_window - step_ns
    rel = closes - first
    bar_slot = rel // step_ns
    on_grid = (
        not (window % step_ns or decay_window % step_ns)
        and bool(np.all(closes[1:] > closes[:-1]))
        and np.array_equal(bar_slot * step_ns, rel)
    )
    if on_grid:
        return _sentiment_on_grid(published, s, bar_slot, first, step_ns, window, decay_window, tau)
    return _sentiment_searched(published, s, closes, window, decay_window, tau)


def _sentiment_on_grid(
    t: np.ndarray,
    s: np.ndarray,
    bar_slot: np.ndarray,
    first: int,
    step_ns: int,
    window: int,
    decay_window: int,
    tau: float,
) -> dict[str, np.ndarray]:
    """Exchange bars sit on a grid of whole bar durations and the windows are whole bars.

    Slot j holds the headlines published in [first + j*step, first + (j+1)*step); bar i
    closes at the end of slot bar_slot[i] - 1. Per-slot counts and sums, their cumulative
    sums and one recursive filter for the decay answer every bar in O(bars + headlines),
    where a binary search per bar would dominate the whole feature matrix.
    """
    slots = int(bar_slot[-1])
    lo, hi = np.searchsorted(t, [first, first + slots * step_ns], side="left")
    t, s = t[lo:hi], s[lo:hi]
    slot = (t - first) // step_ns
    slot_end = (slot + 1) * step_ns
    slot_end += first
    weights = np.subtract(t, slot_end, out=slot_end).astype("float64")
    weights /= tau
    np.exp(weights, out=weights)
    weights *= s
    # running[j] = sum of s * exp(-(end of slot j - published)/tau) over slots <= j
    running = lfilter(
        [1.0], [1.0, -np.exp(-step_ns / tau)], np.bincount(slot, weights=weights, minlength=slots)
    )
    # counted[m] / summed[m]: headlines (and their scores) in the slots before slot m
    counted = np.zeros(slots + 1, dtype=np.int64)
    np.cumsum(np.bincount(slot, minlength=slots), out=counted[1:])
    summed = np.zeros(slots + 1)
    np.cumsum(np.bincount(slot, weights=s, minlength=slots), out=summed[1:])
    w, wd = window // step_ns, decay_window // step_ns
    contiguous = bar_slot[-1] - bar_slot[0] == len(bar_slot) - 1

    def at(values: np.ndarray, shift: int) -> np.ndarray:
        if contiguous:  # no gaps: a slice, not a gather
            start = int(bar_slot[0]) - shift
            return values[start : start + len(bar_slot)]
        return values[bar_slot - shift]

    news_count = (at(counted, 0) - at(counted, w)).astype("float64")
    mean = at(summed, 0) - at(summed, w)
    np.divide(mean, news_count, out=mean, where=news_count > 0)  # no headline: the sum is 0
    # bar i closes at the end of slot bar_slot[i] - 1 (>= 0: `first` leaves room for it)
    decay = at(running, 1 + wd) * -np.exp(-decay_window / tau)  # a new array: `at` may be a view
    decay += at(running, 1)
    decay[at(counted, 0) == at(counted, wd)] = 0.0  # no headline in the window: exactly 0
    return {"news_count_24h": news_count, "news_sent_mean_24h": mean, "news_sent_decay": decay}


def _sentiment_searched(
    t: np.ndarray,
    s: np.ndarray,
    closes: np.ndarray,
    window: int,
    decay_window: int,
    tau: float,
) -> dict[str, np.ndarray]:
    """The same aggregates for bars off a regular grid, by binary search per bar."""
    hi = np.searchsorted(t, closes, side="left")
    lo = np.searchsorted(t, closes - window, side="left")
    lo_decay = np.searchsorted(t, closes - decay_window, side="left")
    sums = np.concatenate(([0.0], np.cumsum(s)))
    count = (hi - lo).astype("float64")
    mean = sums[hi] - sums[lo]
    mean /= np.where(count > 0, count, 1.0)
    if len(t) == 0:
        return {name: np.zeros(len(closes)) for name in SENTIMENT}
    acc, base = _decay_running_sums(t, s, tau)
    decay = _decayed_at(acc, base, int(t[0]), hi, closes, tau)
    old = _decayed_at(acc, base, int(t[0]), lo_decay, closes - decay_window, tau)
    old *= np.exp(-decay_window / tau)
    decay -= old
    decay[hi == lo_decay] = 0.0  # rounding can leave a few ulps where the window is empty
    return {"news_count_24h": count, "news_sent_mean_24h": mean, "news_sent_decay": decay}


def _decay_running_sums(t: np.ndarray, s: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """A(k) = sum_{j<=k} s_j exp(-(t_k - t_j)/tau), as acc[k] * exp(base[k] - u_k).

    A is a cumulative sum once every term is scaled by exp(t_j/tau); that overflows over
    long histories, so times (in units of tau) are cut into chunks of 300, each with its own
    base, and the running sum carries across chunks.
    """
    u = (t - t[0]) / tau
    chunk = np.floor(u / 300.0)
    base = chunk * 300.0
    acc = s * np.exp(u - base)
    starts = np.flatnonzero(np.r_[True, chunk[1:] != chunk[:-1]])
    ends = np.r_[starts[1:], len(u)]
    carry, carry_base = 0.0, base[0]
    for start, end in zip(starts, ends, strict=True):
        b = base[start]
        carry *= np.exp(carry_base - b)
        part = acc[start:end]
        np.cumsum(part, out=part)
        part += carry
        carry, carry_base = part[-1], b
    return acc, base


def _decayed_at(
    acc: np.ndarray, base: np.ndarray, t0: int, before: np.ndarray, at: np.ndarray, tau: float
) -> np.ndarray:
    """sum(s_j * exp(-(at - t_j)/tau)) over t_j < at, given how many headlines are `before` it."""
    k = before - 1
    empty = k < 0
    k[empty] = 0
    exponent = base[k]
    exponent -= (at - t0) / tau
    out = np.exp(exponent, out=exponent)
    out *= acc[k]
    out[empty] = 0.0
    return out


def _ns(index: pd.Index | pd.Series) -> np.ndarray:
    """Aware UTC times as int64 nanoseconds (naive times are taken as UTC)."""
    values = index.array if isinstance(index, pd.Series) else index
    if (
        isinstance(values, (pd.DatetimeIndex, pd.arrays.DatetimeArray))
        and values.tz is not None
        and values.unit == "ns"
    ):
        return values.asi8  # the common case, without building anything
    idx = pd.DatetimeIndex(index)
    if idx.tz is None:
        idx = idx.tz_localize("UTC")
    return idx.as_unit("ns").asi8


def _infer_step(index: pd.Index) -> timedelta:
    times = _ns(index)
    if len(times) < 2:
        raise ValueError("cannot infer the bar duration from one bar; pass bar_duration")
    return timedelta(seconds=float(np.median(np.diff(times))) / _NS)


def make_labels(close: pd.Series, horizon: int, threshold: float) -> pd.Series:
    """0 SELL / 1 HOLD / 2 BUY from the return over the next `horizon` bars (NaN at the end)."""
    forward = close.astype("float64").shift(-horizon) / close.astype("float64") - 1
    labels = pd.Series(1.0, index=close.index)
    labels[forward > threshold] = 2.0
    labels[forward < -threshold] = 0.0
    labels[forward.isna()] = np.nan
    return labels


def triple_barrier_labels(
    bars: pd.DataFrame, horizon: int, take_profit: float, stop_loss: float
) -> pd.Series:
    """The triple-barrier method: which of +take_profit, -stop_loss or `horizon` bars comes first.

    Entry at bar t's close; bars t+1..t+horizon are scanned with their highs and lows.
    Touching the upper barrier first is BUY (2), the lower one SELL (0), neither HOLD (1).
    When one bar touches both, the order inside the bar is unknown: it counts as SELL, the
    conservative reading. The last `horizon` bars have no label (NaN).
    """
    close = bars["close"].to_numpy(dtype="float64")
    high = bars["high"].to_numpy(dtype="float64")
    low = bars["low"].to_numpy(dtype="float64")
    n = len(close)
    labels = np.full(n, np.nan)
    m = n - horizon
    if m <= 0:
        return pd.Series(labels, index=bars.index)
    upper = close[:m] * (1 + take_profit)
    lower = close[:m] * (1 - stop_loss)
    decided = np.zeros(m, dtype=bool)
    out = np.ones(m)
    for h in range(1, horizon + 1):
        hit_low = low[h : h + m] <= lower
        hit_high = high[h : h + m] >= upper
        sell = hit_low & ~decided
        buy = hit_high & ~hit_low & ~decided
        out[sell] = 0.0
        out[buy] = 2.0
        decided |= sell | buy
    labels[:m] = out
    return pd.Series(labels, index=bars.index)


def label_end_index(n: int, horizon: int) -> np.ndarray:
    """Position of the last bar each label looks at (t + horizon); -1 where there is none."""
    ends = np.arange(n) + horizon
    ends[ends >= n] = -1
    return ends
