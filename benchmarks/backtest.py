"""Backtest engines on real candles: bars per second and sweep combinations per second.

    python -m benchmarks.backtest [--json] [--repeat 5]

One process, the same EMA-cross rules (fast 20, slow 50; 10 bps fee, 5 bps slippage, next
bar's open) on BTC/USDT 1h from QT_DATA_DIR (37,090 bars), tiled to 1,000,000 bars for the
single-market figures (prices rebased at each tile so the series stays continuous). The
sweep runs a 30 × 34 (fast, slow) grid on the first 100,000 tiled bars with the vectorized
engine (all combinations in lockstep). Peers: backtesting.py is timed on the first 100,000
bars (it is ~100x slower); vectorbt is not installed and the reason is printed in its place.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from decimal import Decimal
from pathlib import Path


def _bars(n: int):  # type: ignore[no-untyped-def]
    import numpy as np

    from trading.lib.backtest.data import Bars, load_csv

    data = Path(
        os.environ.get("QT_DATA_DIR", Path(__file__).resolve().parents[1] / "../shared/data")
    )
    base = load_csv(data / "binance_BTCUSDT_1h.csv")
    reps = -(-n // len(base))
    cols = {
        name: np.concatenate([getattr(base, name)] * reps)[:n]
        for name in ("open", "high", "low", "close", "volume")
    }
    # Rebase each tile so its first open meets the previous tile's last close.
    tile, factor, f = len(base), np.ones(n), 1.0
    for k in range(1, reps):
        f *= base.close[-1] / base.open[0]
        factor[k * tile :] = f
    for name in ("open", "high", "low", "close"):
        cols[name] = np.round(cols[name] * factor, 2)
    times = base.times[0] + np.arange(n, dtype=np.int64) * 3600
    return Bars(times=times, step=3600, **cols)


def _best(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


PEER_BARS = 100_000


def _backtesting_py(bars, repeat: int) -> object:  # type: ignore[no-untyped-def]
    """backtesting.py on the same rules: EMA 20/50 long/flat, next open, 10 bps + 5 bps."""
    try:
        import pandas as pd
        import talib
        from backtesting import Backtest, Strategy
    except ImportError:
        return "not installed (pip install backtesting; requirements/dev.in)"

    class EmaCross(Strategy):  # type: ignore[misc]
        def init(self) -> None:
            self.fast = self.I(talib.EMA, self.data.Close, 20)
            self.slow = self.I(talib.EMA, self.data.Close, 50)

        def next(self) -> None:
            if self.fast[-1] > self.slow[-1]:
                if not self.position:
                    self.buy()
            elif self.fast[-1] < self.slow[-1] and self.position:
                self.position.close()

    frame = pd.DataFrame(
        {"Open": bars.open, "High": bars.high, "Low": bars.low, "Close": bars.close,
         "Volume": bars.volume},
        index=pd.to_datetime(bars.times, unit="s", utc=True).tz_localize(None),
    )  # fmt: skip
    import contextlib
    import io
    import warnings

    def once() -> None:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")  # and its progress bar: timing only
            Backtest(frame, EmaCross, cash=1e12, commission=0.001, spread=0.001).run()

    return round(len(bars) / _best(once, max(1, repeat // 3)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--bars", type=int, default=1_000_000)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantum.settings")
    import django

    django.setup()
    from trading.lib.backtest import engine, strategies, vectorized
    from trading.lib.fills import FillModel

    bars = _bars(args.bars)
    config = engine.Config(fill=FillModel(fee_bps=Decimal("10"), slippage_bps=Decimal("5")))
    actions = strategies.ema_cross(bars.close, fast=20, slow=50)
    event_s = _best(lambda: engine.run(bars, actions, config), max(1, args.repeat // 2))
    vec_s = _best(lambda: vectorized.run(bars, actions, config), args.repeat)
    small = bars.slice(0, 100_000)
    grid = [(f, s) for f in range(5, 35) for s in range(40, 210, 5)]
    sweep_s = _best(lambda: vectorized.sweep_ema(small, config, grid), max(1, args.repeat // 2))
    peers: dict[str, object] = {
        "vectorbt": (
            "not installed: vectorbt 1.2 pulls ipython, matplotlib, numba, plotly and "
            "scikit-learn and upgrades pandas past our pin (see docs/PERFORMANCE.md)"
        ),
        "backtesting": _backtesting_py(bars.slice(0, PEER_BARS), args.repeat),
    }
    result = {
        "event_bars_per_s": round(len(bars) / event_s),
        "vectorized_bars_per_s": round(len(bars) / vec_s),
        "sweep_combos_per_s": round(len(grid) / sweep_s, 1),
        "peers": peers,
        "bars": len(bars),
        "sweep_bars": len(small),
        "sweep_combos": len(grid),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
