"""Feature matrix on a million bars and one live inference, with TA-Lib as the peer.

    python -m benchmarks.features [--json] [--bars 1000000] [--repeat 5]

The bars are the real BTC/USDT 1h candles of the months the real headlines cover
(2021-10-12 → 2022-07-05), tiled end to end (each copy rescaled to continue from the last
close) to a million bars, with the real Bitcoin headlines repeated at the same density
(about one every two hours). Each matrix is timed --repeat times; the figure is the best run
(as `timeit` reports: the least disturbed by other processes), the median is printed beside it.

- features_1m_bars_ms: marketdata.lib.features.compute_features, the whole matrix with the
  sentiment columns (the no-news figure is printed too);
- talib_reference_ms: only the TA-Lib calls the feature set is built on, same arrays, same
  run (the floor any TA-Lib based implementation pays);
- inference_p95_ms: one live inference as the signal service makes it — the feature row
  from the last LOOKBACK bars and their headlines, then the model's probabilities — the
  95th percentile over 2,000 calls (database reads excluded); `inference_p95_cpu_ms` is the
  same in thread CPU time, which leaves out time spent waiting for a core on a shared machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import talib

HOUR = pd.Timedelta(hours=1)


def real_window(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    from marketdata.lib.news import records_from_csv
    from marketdata.lib.sentiment import assets_mentioned, sentiment_score

    bars = pd.read_csv(
        data_dir / "binance_BTCUSDT_1h.csv", parse_dates=["timestamp"], index_col="timestamp"
    ).loc["2021-10-12":"2022-07-05"]
    news = pd.DataFrame(
        [
            (r.published_at, sentiment_score(r.title))
            for r in records_from_csv(data_dir / "crypto_news_headlines.csv")
            if "BTC" in assets_mentioned(f"{r.title} {r.summary}", subject=r.subject)
        ],
        columns=["published_at", "sentiment"],
    )
    return bars, news


def tiled(bars: pd.DataFrame, news: pd.DataFrame, n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`n` bars made of copies of the real window, each continuing the last one's price."""
    span = bars.index[-1] - bars.index[0] + HOUR
    copies = -(-n // len(bars))
    prices = bars[["open", "high", "low", "close"]].to_numpy()
    scale = prices[-1, 3] / prices[0, 0]
    blocks, stamps, headlines = [], [], []
    for k in range(copies):
        blocks.append(np.c_[prices * scale**k, bars["volume"].to_numpy()])
        stamps.append(bars.index + k * span)
        headlines.append(news.assign(published_at=news["published_at"] + k * span))
    index = pd.DatetimeIndex(np.concatenate([s.to_numpy() for s in stamps]))[:n]
    frame = pd.DataFrame(
        np.concatenate(blocks)[:n], index=index, columns=["open", "high", "low", "close", "volume"]
    )
    all_news = pd.concat(headlines, ignore_index=True)
    return frame, all_news[all_news["published_at"] < index[-1] + HOUR]


def talib_reference(bars: pd.DataFrame) -> None:
    close = bars["close"].to_numpy()
    high, low = bars["high"].to_numpy(), bars["low"].to_numpy()
    volume = bars["volume"].to_numpy()
    talib.SMA(close, 10)
    talib.SMA(close, 30)
    talib.EMA(close, 12)
    talib.EMA(close, 26)
    talib.RSI(close, 14)
    talib.MACD(close, 12, 26, 9)
    talib.BBANDS(close, 20, 2, 2)
    talib.ATR(high, low, close, 14)
    talib.STDDEV(close, 20)
    talib.STDDEV(volume, 20)
    talib.SMA(volume, 20)


def timed_ms(fn, repeat: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(best, median) wall time of `repeat` calls, in milliseconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return round(min(times), 1), round(statistics.median(times), 1)


def inference_p95(bars: pd.DataFrame, news: pd.DataFrame, calls: int) -> tuple[float, float]:
    """A model trained on the first bars, then the live path on the following ones."""
    import xgboost as xgb

    from marketdata.lib.features import LOOKBACK, compute_features, make_labels
    from models_registry.models import ModelVersion
    from models_registry.services.inference import model_predict

    history = bars.iloc[:3000]
    features = compute_features(history, news, bar_duration=timedelta(hours=1))
    labels = make_labels(history["close"], 4, 0.006)
    keep = features.notna().all(axis=1) & labels.notna()
    booster = xgb.train(
        {"objective": "multi:softprob", "num_class": 3, "max_depth": 4, "nthread": 2},
        xgb.DMatrix(features[keep].to_numpy(), label=labels[keep].to_numpy()),
        num_boost_round=150,
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.json"
        booster.save_model(str(path))
        mv = ModelVersion(
            version=1, path=str(path), sha256=hashlib.sha256(path.read_bytes()).hexdigest()
        )
        durations, cpu = [], []
        for i in range(calls):
            end = 3000 + i % (len(bars) - 3000)
            window = bars.iloc[end - LOOKBACK : end]
            close = window.index[-1] + HOUR
            recent = news[
                (news["published_at"] >= close - pd.Timedelta(hours=72))
                & (news["published_at"] < close)
            ]
            t0, c0 = time.perf_counter(), time.thread_time()
            row = compute_features(window, recent, bar_duration=timedelta(hours=1)).iloc[[-1]]
            model_predict(model_version=mv, features=row.to_numpy())
            durations.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.thread_time() - c0) * 1000)
    # The first calls load the model and warm up; CPU time leaves out waiting for a core.
    return float(np.percentile(durations[50:], 95)), float(np.percentile(cpu[50:], 95))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true", help="print only the JSON figures")
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantum.settings")
    import django

    django.setup()
    from django.conf import settings

    from marketdata.lib.features import compute_features

    window, window_news = real_window(Path(settings.QT_DATA_DIR))
    bars, news = tiled(window, window_news, args.bars)
    step = timedelta(hours=1)
    compute_features(bars.iloc[:1000], news, bar_duration=step)  # imports, first allocations
    features = timed_ms(lambda: compute_features(bars, news, bar_duration=step), args.repeat)
    reference = timed_ms(lambda: talib_reference(bars), args.repeat)
    no_news = timed_ms(lambda: compute_features(bars, None, bar_duration=step), args.repeat)
    inference_wall, inference_cpu = inference_p95(window, window_news, args.calls)
    figures = {
        "features_1m_bars_ms": features[0],
        "talib_reference_ms": reference[0],
        "inference_p95_ms": round(inference_wall, 3),
        "inference_p95_cpu_ms": round(inference_cpu, 3),
        "features_1m_bars_median_ms": features[1],
        "talib_reference_median_ms": reference[1],
        "features_1m_bars_no_news_ms": no_news[0],
        "features_over_talib": round(features[0] / reference[0], 2),
        "bars": len(bars),
        "headlines": len(news),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpu",
        "python": platform.python_version(),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        print(json.dumps({"benchmark": "features", **figures}, indent=2))


if __name__ == "__main__":
    main()
