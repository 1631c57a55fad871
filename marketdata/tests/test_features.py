from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib
from django.conf import settings
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from marketdata.lib.features import (
    FEATURE_SET_HASH,
    FEATURES,
    LOOKBACK,
    WARMUP,
    compute_features,
    make_labels,
    triple_barrier_labels,
)

N_BARS = 2000


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    """2,000 real BTC/USDT 1h bars, indexed by open time."""
    path = Path(settings.QT_DATA_DIR) / "binance_BTCUSDT_1h.csv"
    frame = pd.read_csv(path, nrows=N_BARS, parse_dates=["timestamp"], index_col="timestamp")
    assert len(frame) == N_BARS
    return frame


@pytest.fixture(scope="module")
def features(bars: pd.DataFrame) -> pd.DataFrame:
    return compute_features(bars)


def warm(series: pd.Series | np.ndarray) -> np.ndarray:
    """The rows after the warm-up, where every feature is defined."""
    return np.asarray(series, dtype="float64")[WARMUP - 1 :]


def test_it_computes_one_row_per_bar_with_the_same_index(
    bars: pd.DataFrame, features: pd.DataFrame
) -> None:
    assert features.index.equals(bars.index)
    assert list(features.columns) == FEATURES


def test_it_leaves_the_warm_up_rows_empty_and_fills_every_row_after_them(
    features: pd.DataFrame,
) -> None:
    assert features.iloc[: WARMUP - 1].isna().all().all()
    assert np.isfinite(features.iloc[WARMUP - 1 :].to_numpy()).all()


def test_it_matches_ta_lib_for_each_indicator(bars: pd.DataFrame, features: pd.DataFrame) -> None:
    close = bars["close"].to_numpy(dtype="float64")
    high = bars["high"].to_numpy(dtype="float64")
    low = bars["low"].to_numpy(dtype="float64")
    macd, signal, hist = talib.MACD(close, 12, 26, 9)
    upper, middle, lower = talib.BBANDS(close, 20, 2, 2)
    pairs = {
        "rsi_14": (features["rsi_14"] * 100, talib.RSI(close, 14)),
        "sma_30_ratio": ((features["sma_30_ratio"] + 1), close / talib.SMA(close, 30)),
        "ema_12_ratio": ((features["ema_12_ratio"] + 1), close / talib.EMA(close, 12)),
        "ema_26_ratio": ((features["ema_26_ratio"] + 1), close / talib.EMA(close, 26)),
        "macd": (features["macd"] * close, macd),
        "macd_signal": (features["macd_signal"] * close, signal),
        "macd_hist": (features["macd_hist"] * close, hist),
        "bb_width": (features["bb_width"] * middle, upper - lower),
        "atr_14_pct": (features["atr_14_pct"] * close, talib.ATR(high, low, close, 14)),
    }
    for name, (ours, reference) in pairs.items():
        np.testing.assert_allclose(warm(ours), warm(reference), rtol=1e-9, err_msg=name)


def test_it_matches_a_rolling_mean_for_the_moving_average_ratio(
    bars: pd.DataFrame, features: pd.DataFrame
) -> None:
    close = bars["close"]
    sma_10 = close / (features["sma_10_ratio"] + 1)

    np.testing.assert_allclose(warm(sma_10), warm(close.rolling(10).mean()), rtol=1e-9)


def test_it_matches_wilders_rsi_computed_by_hand(
    bars: pd.DataFrame, features: pd.DataFrame
) -> None:
    # Wilder (1978): seed with the mean gain/loss of the first 14 changes, then smooth by 1/14.
    change = np.diff(bars["close"].to_numpy(dtype="float64"))
    gains, losses = np.clip(change, 0, None), np.clip(-change, 0, None)
    avg_gain, avg_loss = gains[:14].mean(), losses[:14].mean()
    rsi = np.full(len(change) + 1, np.nan)
    rsi[14] = 100 - 100 / (1 + avg_gain / avg_loss)
    for i in range(14, len(change)):
        avg_gain = (avg_gain * 13 + gains[i]) / 14
        avg_loss = (avg_loss * 13 + losses[i]) / 14
        rsi[i + 1] = 100 - 100 / (1 + avg_gain / avg_loss)

    np.testing.assert_allclose(warm(features["rsi_14"] * 100), warm(rsi), rtol=1e-9)


def test_it_matches_pandas_for_returns_bollinger_position_and_volume_z(
    bars: pd.DataFrame, features: pd.DataFrame
) -> None:
    close, volume = bars["close"], bars["volume"]
    middle = close.rolling(20).mean()
    std = close.rolling(20).std(ddof=0)  # Bollinger bands use the population deviation
    lower, upper = middle - 2 * std, middle + 2 * std
    volume_z = (volume - volume.rolling(20).mean()) / volume.rolling(20).std(ddof=0)
    returns = close / close.shift(1) - 1

    np.testing.assert_allclose(warm(features["ret_1"]), warm(returns), rtol=1e-12)
    np.testing.assert_allclose(
        warm(features["ret_12"]), warm(close / close.shift(12) - 1), rtol=1e-12
    )
    np.testing.assert_allclose(
        warm(features["bb_pctb"]), warm((close - lower) / (upper - lower)), rtol=1e-6
    )
    np.testing.assert_allclose(warm(features["volume_z_20"]), warm(volume_z), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(
        warm(features["vol_20"]), warm(returns.rolling(20).std(ddof=0)), rtol=1e-6
    )


@hypothesis_settings(max_examples=25, deadline=None)
@given(
    t=st.integers(min_value=0, max_value=298),
    multiplier=st.floats(min_value=0.2, max_value=5.0).filter(lambda m: abs(m - 1) > 1e-3),
)
def test_it_never_looks_ahead(bars: pd.DataFrame, t: int, multiplier: float) -> None:
    window = bars.iloc[:300]
    future_changed = window.copy()
    future_changed.iloc[t + 1 :] = future_changed.iloc[t + 1 :] * multiplier

    before = compute_features(window)
    after = compute_features(future_changed)

    pd.testing.assert_frame_equal(after.iloc[: t + 1], before.iloc[: t + 1], check_exact=True)
    # The change is visible from the next bar on, so the comparison above had teeth.
    assert not after.iloc[t + 1 :].equals(before.iloc[t + 1 :])


def test_it_labels_buy_sell_and_hold_from_the_forward_return() -> None:
    close = pd.Series([100.0, 101.0, 125.0, 100.0, 50.0, 50.0, 80.0, 90.0])

    labels = make_labels(close, horizon=2, threshold=0.25)

    # forward returns: 0.25 (not above), -0.0099, -0.6, -0.5, 0.6, 0.8, n/a, n/a
    assert labels.tolist()[:6] == [1.0, 1.0, 0.0, 0.0, 2.0, 2.0]
    assert labels.iloc[-2:].isna().all()


def test_it_labels_real_bars_by_their_forward_return(bars: pd.DataFrame) -> None:
    close = bars["close"]
    horizon, threshold = 4, 0.005

    labels = make_labels(close, horizon=horizon, threshold=threshold)

    values = close.to_numpy()
    expected = []
    for i in range(len(values) - horizon):
        forward = values[i + horizon] / values[i] - 1
        expected.append(2.0 if forward > threshold else 0.0 if forward < -threshold else 1.0)
    assert labels.index.equals(close.index)
    assert labels.iloc[:-horizon].tolist() == expected
    assert labels.iloc[-horizon:].isna().all()
    assert set(expected) == {0.0, 1.0, 2.0}


# --- TA-Lib on every real 1h file ------------------------------------------------------


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT"])
def test_it_equals_ta_lib_on_every_real_hourly_file(symbol: str) -> None:
    path = Path(settings.QT_DATA_DIR) / f"binance_{symbol}_1h.csv"
    frame = pd.read_csv(path, parse_dates=["timestamp"], index_col="timestamp")
    close = frame["close"].to_numpy(dtype="float64")
    high = frame["high"].to_numpy(dtype="float64")
    low = frame["low"].to_numpy(dtype="float64")
    volume = frame["volume"].to_numpy(dtype="float64")

    features = compute_features(frame)

    macd, signal, hist = talib.MACD(close, 12, 26, 9)
    upper, middle, lower = talib.BBANDS(close, 20, 2, 2)
    expected = {
        "sma_10_ratio": close / talib.SMA(close, 10) - 1,
        "sma_30_ratio": close / talib.SMA(close, 30) - 1,
        "ema_12_ratio": close / talib.EMA(close, 12) - 1,
        "ema_26_ratio": close / talib.EMA(close, 26) - 1,
        "rsi_14": talib.RSI(close, 14) / 100,
        "macd": macd / close,
        "macd_signal": signal / close,
        "macd_hist": hist / close,
        "bb_pctb": (close - lower) / (upper - lower),
        "bb_width": (upper - lower) / middle,
        "atr_14_pct": talib.ATR(high, low, close, 14) / close,
        "vol_20": talib.STDDEV(np.r_[np.nan, close[1:] / close[:-1] - 1], 20),
        "volume_z_20": (volume - talib.SMA(volume, 20)) / talib.STDDEV(volume, 20),
    }
    assert len(features) == len(frame)
    for name, reference in expected.items():
        ours = warm(features[name])
        ref = warm(reference)
        finite = np.isfinite(ref)  # a flat 20-bar volume window has no z-score in TA-Lib
        np.testing.assert_allclose(ours[finite], ref[finite], rtol=1e-9, atol=1e-12, err_msg=name)


# --- Sentiment features -----------------------------------------------------------------


@pytest.fixture(scope="module")
def headlines() -> pd.DataFrame:
    """The real headlines about Bitcoin, scored with VADER (the news service does the same)."""
    from marketdata.lib.news import records_from_csv
    from marketdata.lib.sentiment import assets_mentioned, sentiment_score

    path = Path(settings.QT_DATA_DIR) / "crypto_news_headlines.csv"
    rows = [
        (r.published_at, sentiment_score(r.title))
        for r in records_from_csv(path)
        if "BTC" in assets_mentioned(f"{r.title} {r.summary}", subject=r.subject)
    ]
    return pd.DataFrame(rows, columns=["published_at", "sentiment"])


@pytest.fixture(scope="module")
def bars_2022() -> pd.DataFrame:
    """Real BTC/USDT 1h bars over the months the headlines cover most."""
    path = Path(settings.QT_DATA_DIR) / "binance_BTCUSDT_1h.csv"
    frame = pd.read_csv(path, parse_dates=["timestamp"], index_col="timestamp")
    return frame.loc["2022-01-01":"2022-03-31"]


def brute_force_sentiment(bars: pd.DataFrame, news: pd.DataFrame) -> np.ndarray:
    """Count, mean and decayed score per bar by looping over headlines (the definitions)."""
    published = news["published_at"].to_numpy(dtype="datetime64[ns]").astype("int64") / 1e9
    score = news["sentiment"].to_numpy()
    tau = 6 * 3600 / np.log(2)
    out = []
    for open_time in bars.index:
        close = open_time.timestamp() + 3600
        age = close - published
        day = (age > 0) & (age <= 24 * 3600)
        three_days = (age > 0) & (age <= 72 * 3600)
        out.append(
            (
                day.sum(),
                score[day].mean() if day.any() else 0.0,
                (score[three_days] * np.exp(-age[three_days] / tau)).sum(),
            )
        )
    return np.array(out)


def test_it_aggregates_real_headlines_per_bar_as_defined(
    bars_2022: pd.DataFrame, headlines: pd.DataFrame
) -> None:
    features = compute_features(bars_2022, headlines, bar_duration=pd.Timedelta(hours=1))

    ours = features[["news_count_24h", "news_sent_mean_24h", "news_sent_decay"]].to_numpy()
    expected = brute_force_sentiment(bars_2022, headlines)
    np.testing.assert_allclose(ours[WARMUP - 1 :], expected[WARMUP - 1 :], rtol=1e-9, atol=1e-12)
    assert ours[WARMUP - 1 :, 0].max() >= 5, "the window holds real headlines"
    assert (ours[WARMUP - 1 :, 2] != 0).mean() > 0.5


def test_it_counts_a_headline_stamped_at_the_close_in_the_next_bar(bars: pd.DataFrame) -> None:
    window = bars.iloc[:100]
    close_of_50 = window.index[50] + pd.Timedelta(hours=1)
    news = pd.DataFrame({"published_at": [close_of_50], "sentiment": [0.8]})

    features = compute_features(window, news, bar_duration=pd.Timedelta(hours=1))

    assert features["news_count_24h"].iloc[50] == 0
    assert features["news_count_24h"].iloc[51] == 1
    assert features["news_sent_mean_24h"].iloc[51] == pytest.approx(0.8)
    assert features["news_count_24h"].iloc[50 + 24] == 1  # still inside the 24h window
    assert features["news_count_24h"].iloc[50 + 25] == 0


def test_bars_off_the_grid_give_the_same_aggregates_as_bars_on_it(
    bars_2022: pd.DataFrame, headlines: pd.DataFrame
) -> None:
    with_gaps = bars_2022.drop(bars_2022.index[[300, 301, 302, 900]])
    step = pd.Timedelta(hours=1)
    # A 59-minute bar duration puts closes off the hourly grid: the binary-search path.
    shifted = with_gaps.copy()
    shifted.index = shifted.index + pd.Timedelta(minutes=1)

    on_grid = compute_features(with_gaps, headlines, bar_duration=step)
    off_grid = compute_features(shifted, headlines, bar_duration=pd.Timedelta(minutes=59))

    columns = ["news_count_24h", "news_sent_mean_24h", "news_sent_decay"]
    np.testing.assert_allclose(
        on_grid[columns].to_numpy()[WARMUP:], off_grid[columns].to_numpy()[WARMUP:], atol=1e-12
    )
    np.testing.assert_allclose(
        on_grid[columns].to_numpy()[WARMUP:],
        brute_force_sentiment(with_gaps, headlines)[WARMUP:],
        rtol=1e-9,
        atol=1e-12,
    )


@hypothesis_settings(max_examples=25, deadline=None)
@given(
    t=st.integers(min_value=40, max_value=298),
    multiplier=st.floats(min_value=0.2, max_value=5.0).filter(lambda m: abs(m - 1) > 1e-3),
    flip=st.floats(min_value=-1.0, max_value=1.0),
)
def test_no_feature_sees_bars_or_headlines_after_its_bar_closes(
    bars_2022: pd.DataFrame, headlines: pd.DataFrame, t: int, multiplier: float, flip: float
) -> None:
    window = bars_2022.iloc[:300]
    step = pd.Timedelta(hours=1)
    close_t = window.index[t] + step
    news = headlines[headlines["published_at"] < window.index[-1] + step].reset_index(drop=True)
    # The future changes: every later bar, every headline published at or after the close
    # of bar t re-scored, and a burst of new headlines right at that close.
    future_bars = window.copy()
    future_bars.iloc[t + 1 :] = future_bars.iloc[t + 1 :] * multiplier
    future_news = news.copy()
    later = future_news["published_at"] >= close_t
    future_news.loc[later, "sentiment"] = flip
    burst = pd.DataFrame({"published_at": [close_t] * 5, "sentiment": [flip] * 5})
    future_news = pd.concat([future_news, burst], ignore_index=True)

    before = compute_features(window, news, bar_duration=step)
    after = compute_features(future_bars, future_news, bar_duration=step)

    pd.testing.assert_frame_equal(after.iloc[: t + 1], before.iloc[: t + 1], check_exact=True)
    # The change is visible from the next bar on, so the comparison above had teeth.
    assert not after.iloc[t + 1 :].equals(before.iloc[t + 1 :])
    assert after["news_count_24h"].iloc[t + 1] == before["news_count_24h"].iloc[t + 1] + 5


def test_live_rows_on_the_lookback_window_match_rows_on_the_full_history(
    bars_2022: pd.DataFrame, headlines: pd.DataFrame
) -> None:
    step = pd.Timedelta(hours=1)
    full = compute_features(bars_2022, headlines, bar_duration=step)
    for end in (LOOKBACK + 10, 1000, len(bars_2022)):
        live = compute_features(bars_2022.iloc[end - LOOKBACK : end], headlines, bar_duration=step)
        np.testing.assert_allclose(
            live.iloc[-1].to_numpy(), full.iloc[end - 1].to_numpy(), rtol=1e-6, atol=1e-9
        )


def test_the_feature_set_hash_commits_to_the_definitions() -> None:
    from marketdata.lib import features as module

    assert len(FEATURE_SET_HASH) == 64
    assert set(module.SENTIMENT) <= set(FEATURES)
    assert list(module.TECHNICAL) + list(module.SENTIMENT) == FEATURES


# --- Labels -------------------------------------------------------------------------------


def test_it_labels_by_the_first_barrier_touched() -> None:
    bars = pd.DataFrame(
        {
            "close": [100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0],
            "high": [100.0, 101.0, 103.0, 100.0, 100.5, 100.5, 100.5, 100.5],
            "low": [100.0, 99.5, 99.5, 96.0, 99.5, 99.5, 99.5, 99.5],
        }
    )
    labels = triple_barrier_labels(bars, horizon=2, take_profit=0.02, stop_loss=0.03)

    # bar 0: bar 2's high 103 ≥ 102 first → BUY; bar 1: bar 2 high 103 → BUY;
    # bar 2: bar 3's low 96 ≤ 97 → SELL; bar 3..5: no barrier within 2 bars → HOLD
    assert labels.tolist()[:6] == [2.0, 2.0, 0.0, 1.0, 1.0, 1.0]
    assert labels.iloc[-2:].isna().all()


def test_a_bar_touching_both_barriers_counts_as_the_stop() -> None:
    bars = pd.DataFrame(
        {"close": [100.0, 100.0, 100.0], "high": [100.0, 110.0, 100.0], "low": [100.0, 90.0, 100.0]}
    )
    assert triple_barrier_labels(bars, horizon=1, take_profit=0.05, stop_loss=0.05).iloc[0] == 0.0


@hypothesis_settings(max_examples=25, deadline=None)
@given(
    t=st.integers(min_value=1, max_value=280),
    multiplier=st.floats(min_value=0.5, max_value=2.0).filter(lambda m: abs(m - 1) > 1e-3),
    method=st.sampled_from(["forward", "triple_barrier"]),
)
def test_a_label_only_reads_its_own_bar_and_the_horizon_after_it(
    bars: pd.DataFrame, t: int, multiplier: float, method: str
) -> None:
    from models_registry.services.datasets import labels_for

    horizon = 4
    window = bars.iloc[:300]
    changed = window.copy()
    changed.iloc[:t] = changed.iloc[:t] * multiplier  # the past
    changed.iloc[t + horizon + 1 :] = changed.iloc[t + horizon + 1 :] * multiplier  # far future

    def label(frame: pd.DataFrame) -> float:
        series = labels_for(frame, label=method, horizon=horizon, threshold=0.005, stop_loss=None)
        return float(series.iloc[t])

    assert label(changed) == label(window)


def test_labels_never_enter_the_features(bars: pd.DataFrame) -> None:
    window = bars.iloc[:400]
    with_label = window.assign(label=make_labels(window["close"], 4, 0.005))

    assert_frame = pd.testing.assert_frame_equal
    assert_frame(compute_features(with_label), compute_features(window), check_exact=True)
    assert "label" not in compute_features(with_label).columns


# --- The runnable module ----------------------------------------------------------------


def test_the_module_writes_the_feature_matrix_of_any_csv(tmp_path: Path) -> None:
    import subprocess
    import sys

    source = Path(settings.QT_DATA_DIR) / "binance_BTCUSDT_1h.csv"
    rows = pd.read_csv(source, skiprows=range(1, 11000), nrows=1500)  # Jan-Mar 2022
    csv = tmp_path / "bars.csv"
    rows.to_csv(csv, index=False)
    out = tmp_path / "features.csv"
    news = Path(settings.QT_DATA_DIR) / "crypto_news_headlines.csv"

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "marketdata.features",
            "--csv",
            str(csv),
            "--out",
            str(out),
            "--news",
            str(news),
            "--asset",
            "BTC",
        ],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    written = pd.read_csv(out)
    assert list(written.columns) == ["timestamp", *FEATURES]
    assert written["timestamp"].tolist() == rows["timestamp"].tolist()
    assert written["news_count_24h"].max() > 0
    expected = compute_features(rows.set_index(pd.to_datetime(rows["timestamp"])))
    np.testing.assert_allclose(
        written["rsi_14"].to_numpy()[WARMUP:], expected["rsi_14"].to_numpy()[WARMUP:], rtol=1e-9
    )
