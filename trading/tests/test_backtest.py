"""The backtest engines, metrics, strategies and CLI, on real candles and tiny hand cases."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from risk.lib.pretrade import Limits
from trading.lib.backtest import engine, metrics, strategies, vectorized
from trading.lib.backtest.data import Bars, load_csv
from trading.lib.backtest.report import build
from trading.lib.fills import FillModel

COSTS = FillModel(fee_bps=Decimal("10"), slippage_bps=Decimal("5"))


@pytest.fixture(scope="module")
def btc(data_dir_path: Path) -> Bars:
    return load_csv(data_dir_path / "binance_BTCUSDT_1h.csv").slice(20000, 30000)


@pytest.fixture(scope="module")
def data_dir_path() -> Path:
    from django.conf import settings

    return Path(settings.QT_DATA_DIR)


def _bars(closes: list[float], opens: list[float] | None = None, volume: float = 1e9) -> Bars:
    n = len(closes)
    opens = opens or closes
    c, o = np.array(closes, float), np.array(opens, float)
    return Bars(
        times=np.arange(n, dtype=np.int64) * 3600 + 1_700_006_400,
        open=o,
        high=np.maximum(o, c) + 1,
        low=np.minimum(o, c) - 1,
        close=c,
        volume=np.full(n, volume),
        step=3600,
    )


@pytest.mark.parametrize("delay", [0, 1])
@pytest.mark.parametrize("long_short", [False, True])
@pytest.mark.parametrize("strategy", ["ema_cross", "rsi_reversion"])
def test_the_event_and_vectorized_engines_make_the_same_trades_on_real_candles(
    btc: Bars, delay: int, long_short: bool, strategy: str
) -> None:
    config = engine.Config(
        fill=FillModel(fee_bps=Decimal("10"), slippage_bps=Decimal("5"), delay_bars=delay),
        long_short=long_short,
        fraction=Decimal("0.5"),
    )
    actions = strategies.rule_actions(strategy, btc, {})
    event = engine.run(btc, actions, config)
    fast = vectorized.run(btc, actions, config)
    assert len(event.trades) > 10
    assert len(fast.trades) == len(event.trades)
    for mine, theirs in zip(event.trades, fast.trades, strict=True):
        assert mine.side == ("LONG" if theirs["side"] > 0 else "SHORT")
        assert mine.exit_time == btc.time(int(theirs["exit_bar"])) + (
            pd.Timedelta(hours=1) if delay == 0 else pd.Timedelta(0)
        )
        assert float(mine.quantity) == pytest.approx(theirs["qty"], abs=1e-9)
        assert float(mine.entry_price) == pytest.approx(theirs["entry_price"], abs=1e-9)
        assert float(mine.exit_price) == pytest.approx(theirs["exit_price"], abs=1e-9)
        assert float(mine.pnl) == pytest.approx(theirs["pnl"], abs=0.005)
    assert event.equity[-1] == pytest.approx(fast.equity[-1], abs=0.01)
    assert np.array_equal(event.position, fast.position)


def test_a_long_flat_run_fills_at_the_next_open_with_slippage_and_fees_by_hand() -> None:
    # BUY decided on bar 0's close fills at bar 1's open; SELL on bar 2 fills at bar 3's open.
    bars = _bars([100, 110, 120, 130], opens=[100, 105, 115, 125])
    actions = np.array([1, 0, -1, 0], dtype=np.int8)
    result = engine.run(bars, actions, engine.Config(fill=COSTS, cash=Decimal("1000")))
    buy, sell = result.fills
    # qty = 1000 / 100 (the decision close) = 10; buy 105 × 1.0005 = 105.0525 -> 105.06
    assert (buy.side, buy.quantity, buy.price) == ("BUY", Decimal("10.00000"), Decimal("105.06"))
    assert buy.fee == Decimal("1.05060000")  # 1050.60 × 10 bps
    # sell 125 × 0.9995 = 124.9375 -> 124.93 (adverse rounding)
    assert (sell.price, sell.fee) == (Decimal("124.93"), Decimal("1.24930000"))
    (trade,) = result.trades
    assert trade.pnl == Decimal("1249.30") - Decimal("1050.60") - Decimal("2.29990000")
    assert result.final_cash == Decimal("1000") - Decimal("1051.65060000") + Decimal("1248.0507")


def test_a_volume_cap_fills_part_of_an_order_and_cancels_the_rest() -> None:
    bars = _bars([100.0] * 5, volume=4.0)
    # Cap 50 % of a 4-unit bar: at most 2 units per fill; the strategy wants 10.
    model = FillModel(fee_bps=Decimal("0"), slippage_bps=Decimal("0"), volume_cap=Decimal("0.5"))
    actions = np.array([1, 0, -1, -1, -1], dtype=np.int8)
    result = engine.run(bars, actions, engine.Config(fill=model, cash=Decimal("1000")))
    assert [o.status for o in result.orders] == ["partially_filled", "filled"]
    assert result.orders[0].quantity == Decimal("10.00000")
    assert [f.quantity for f in result.fills] == [Decimal("2.00000")] * 2
    assert result.final_quantity == Decimal("0")  # 2 bought (8 canceled), 2 sold


def test_the_risk_engine_denies_an_order_over_its_notional_limit_in_a_backtest() -> None:
    bars = _bars([100.0, 100.0, 100.0])
    limits = Limits(
        max_order_notional=Decimal("500"),
        max_position_notional=Decimal("1e9"),
        max_gross_exposure=Decimal("1e9"),
        max_leverage=Decimal("1"),
        max_open_positions=5,
        max_daily_loss=Decimal("1e9"),
        max_drawdown=Decimal("1"),
        max_orders_per_window=100,
    )
    config = engine.Config(fill=COSTS, cash=Decimal("1000"), limits=limits)
    result = engine.run(bars, np.array([1, 0, 0], dtype=np.int8), config)
    assert result.fills == []
    (order,) = result.orders
    assert order.status == "denied" and order.detail.startswith("MAX_NOTIONAL")


def test_the_metrics_match_an_independent_pandas_computation() -> None:
    times = np.array([0, 86400, 2 * 86400, 3 * 86400, 4 * 86400, 5 * 86400]) + 1_700_006_400
    values = np.array([100.0, 110.0, 99.0, 105.0, 120.0, 90.0])
    s = pd.Series(values)
    r = s.pct_change().dropna()
    assert metrics.sharpe(values) == pytest.approx(r.mean() / r.std() * math.sqrt(365))
    downside = math.sqrt(sum(min(x, 0) ** 2 for x in r) / len(r))
    assert metrics.sortino(values) == pytest.approx(r.mean() / downside * math.sqrt(365))
    depth, days = metrics.max_drawdown(values)
    assert depth == pytest.approx((s / s.cummax() - 1).min())  # 90 / 120 - 1 = -0.25
    assert depth == pytest.approx(-0.25)
    assert days == 2  # 99 and 105 stay under the 110 peak for two days; 90 under 120: one
    pnls = [Decimal("10"), Decimal("-4"), Decimal("6"), Decimal("-2")]
    figures = metrics.compute(
        day_times=times,
        day_values=values,
        trade_pnls=pnls,
        fees=Decimal("1.5"),
        traded_notional=Decimal("420"),
        position=np.array([0, 1, 1, 0]),
        first_close=50.0,
        last_close=60.0,
    )
    years = 5 / 365.25
    assert figures["total_return"] == pytest.approx(-0.1)
    assert figures["cagr"] == pytest.approx(0.9 ** (1 / years) - 1)
    assert figures["calmar"] == pytest.approx(figures["cagr"] / 0.25)  # type: ignore[operator]
    assert figures["win_rate"] == 0.5
    assert figures["profit_factor"] == pytest.approx(16 / 6)
    assert figures["expectancy"] == "2.50"
    assert figures["exposure"] == 0.5
    assert figures["turnover"] == pytest.approx(420 / s.mean())
    assert figures["fees_paid"] == "1.5" and figures["trade_count"] == 4
    assert figures["buy_and_hold_return"] == pytest.approx(0.2)


def test_the_daily_curve_marks_equity_at_each_days_last_close(btc: Bars) -> None:
    actions = strategies.ema_cross(btc.close, fast=10, slow=30)
    result = engine.run(btc, actions, engine.Config(fill=COSTS))
    day_times, day_values = metrics.daily_equity(btc.times, result.equity, 10000.0)
    frame = pd.Series(result.equity, index=pd.to_datetime(btc.times, unit="s", utc=True))
    expected = frame.groupby(frame.index.floor("D")).last()
    assert np.allclose(day_values[1:], expected.to_numpy())
    assert day_values[0] == 10000.0 and len(day_times) == len(expected) + 1


def test_the_strategies_are_causal_and_validate_their_parameters(btc: Bars) -> None:
    full = strategies.ema_cross(btc.close, fast=12, slow=26)
    cut = strategies.ema_cross(btc.close[:5000], fast=12, slow=26)
    assert np.array_equal(full[:5000], cut)  # later bars never change an earlier action
    assert set(np.unique(strategies.rsi_reversion(btc.close))) == {-1, 0, 1}
    with pytest.raises(ValueError, match="fast < slow"):
        strategies.ema_cross(btc.close, fast=50, slow=20)
    with pytest.raises(ValueError, match="no parameter 'fsat'"):
        strategies.parse_params("ema_cross", "fsat=3")
    assert strategies.parse_params("ema_cross", "fast=20,slow=50") == {"fast": 20, "slow": 50}


def test_the_cli_writes_metrics_trades_and_equity_for_a_csv(tmp_path: Path, data_dir_path) -> None:
    source = (data_dir_path / "binance_SOLUSDT_1h.csv").read_text().splitlines()
    data = tmp_path / "sol.csv"
    data.write_text("\n".join(source[:3001]) + "\n")
    out = tmp_path / "out.json"
    call_command(
        "backtest", "--data", str(data), "--strategy", "ema_cross", "--params", "fast=20,slow=50",
        "--fee-bps", "10", "--slippage-bps", "5", "--cash", "10000", "--json", str(out),
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert set(report) == {"metrics", "trades", "equity"}
    assert report["trades"] and set(report["trades"][0]) == {
        "entry_time", "exit_time", "side", "qty", "entry_price", "exit_price", "fee", "pnl",
    }  # fmt: skip
    for key in ("total_return", "cagr", "sharpe", "sortino", "calmar", "max_drawdown",
                "max_drawdown_days", "win_rate", "profit_factor", "expectancy", "exposure",
                "turnover", "fees_paid", "trade_count", "buy_and_hold_return"):  # fmt: skip
        assert key in report["metrics"]
    assert report["metrics"]["trade_count"] == len(report["trades"])
    assert report["equity"][0] == ["2021-04-04T00:00:00Z", 10000.0]
    # Money is exact decimal text; a closed trade's pnl is its gross move less its fees.
    t = report["trades"][0]
    gross = (Decimal(t["exit_price"]) - Decimal(t["entry_price"])) * Decimal(t["qty"])
    assert Decimal(t["pnl"]) == gross - Decimal(t["fee"])


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("timestamp,open,high,low,close\n2021-01-01T00:00:00Z,1,1,1,1\n", "missing column"),
        (
            "timestamp,open,high,low,close,volume\n2021-01-01T00:00:00Z,1,1,1,1,1\n"
            "2021-01-01T01:00:00Z,1,1,1,1,1\nyesterday,1,1,1,1,1\n",
            "row 4: unparsable timestamp 'yesterday'",
        ),
        (
            "timestamp,open,high,low,close,volume\n2021-01-01T00:00:00Z,1,1,1,1,1\n"
            "2021-01-01T01:00:00Z,1,1,1,1,1\n2021-01-01T01:00:00Z,1,1,1,1,1\n",
            "row 4 (2021-01-01T01:00:00Z): duplicate timestamp",
        ),
        (
            "timestamp,open,high,low,close,volume\n2021-01-01T00:00:00Z,1,1,1,1,1\n"
            "2021-01-01T01:00:00Z,1,1,0,1,1\n",
            "row 3 (2021-01-01T01:00:00Z): non-positive price",
        ),
    ],
)
def test_the_cli_refuses_a_bad_csv_naming_the_row_and_the_problem(
    tmp_path: Path, rows: str, message: str
) -> None:
    data = tmp_path / "bad.csv"
    data.write_text(rows)
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call_command("backtest", "--data", str(data), "--json", str(tmp_path / "o.json"))
    assert not (tmp_path / "o.json").exists()


def test_a_golden_master_run_on_real_btc_candles_is_unchanged(data_dir_path: Path) -> None:
    # Pinned results of a fixed run: any change to the fill model, the engine or the metrics
    # that moves them must be deliberate (update the figures with the reason in the commit).
    bars = load_csv(data_dir_path / "binance_BTCUSDT_1h.csv").slice(30000, 37090)
    actions = strategies.ema_cross(bars.close, fast=20, slow=50)
    report = build(engine.run(bars, actions, engine.Config(fill=COSTS)))
    m = report["metrics"]
    assert (m["trade_count"], m["final_equity"], m["fees_paid"]) == GOLDEN
    assert bars.time(0) == datetime(2024, 3, 11, 14, tzinfo=UTC)


GOLDEN = (59, "10956.97", "1062.18695551")


@pytest.mark.parametrize("delay", [0, 1])
@pytest.mark.parametrize("long_short", [False, True])
def test_the_lockstep_sweep_gives_each_combination_the_final_equity_of_its_own_run(
    btc: Bars, delay: int, long_short: bool
) -> None:
    config = engine.Config(
        fill=FillModel(
            fee_bps=Decimal("10"), slippage_bps=Decimal("5"), delay_bars=delay,
            min_notional=Decimal("10"),
        ),
        long_short=long_short,
        fraction=Decimal("0.7"),
    )  # fmt: skip
    grid = [(f, s) for f in (3, 9, 21) for s in (30, 55, 140)]
    swept = vectorized.sweep_ema(btc, config, grid)
    assert [(f, s) for f, s, _ in swept] == grid
    for fast, slow, final in swept:
        own = vectorized.run(btc, strategies.ema_cross(btc.close, fast=fast, slow=slow), config)
        event = engine.run(btc, strategies.ema_cross(btc.close, fast=fast, slow=slow), config)
        assert final == pytest.approx(float(own.equity[-1]), abs=1e-6)
        assert final == pytest.approx(float(event.equity[-1]), abs=0.01)
