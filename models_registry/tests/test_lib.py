"""The pure parts of the lifecycle: backtest, PSI, gates, metrics, plot geometry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models_registry.lib.backtest import BUY, HOLD, SELL, Costs, backtest, equity_curve
from models_registry.lib.backtest import positions_from_actions as positions
from models_registry.lib.drift import drift_level, drift_score, psi, psi_by_feature, reference_build
from models_registry.lib.gates import GateConfig, gates_evaluate, gates_failed
from models_registry.lib.metrics import confusion_matrix
from models_registry.lib.plots import confusion_rows, equity_plot, importance_bars

FREE = Costs(fee_bps=0, slippage_bps=0)


def test_long_flat_positions_follow_the_last_buy_or_sell() -> None:
    actions = np.array([HOLD, SELL, BUY, HOLD, BUY, SELL, HOLD, BUY])
    assert positions(actions).tolist() == [0, 0, 1, 1, 1, 0, 0, 1]


def test_the_equity_curve_compounds_held_returns_and_charges_each_side() -> None:
    close = np.array([100.0, 110.0, 121.0, 100.0, 90.0])
    actions = np.array([BUY, HOLD, SELL, HOLD, HOLD])
    costs = Costs(fee_bps=10, slippage_bps=5)

    equity, trades = equity_curve(close, actions, costs)

    entry = 1 / (1.0005 * 1.001)
    exit_ = 0.9995 * 0.999
    expected = entry * 1.1 * 1.1 * exit_
    assert equity.tolist() == pytest.approx([entry, entry * 1.1, expected, expected, expected])
    assert trades == pytest.approx([expected - 1])


def test_an_open_position_is_closed_at_the_last_bar() -> None:
    equity, trades = equity_curve(np.array([100.0, 50.0]), np.array([BUY, HOLD]), FREE)
    assert equity[-1] == pytest.approx(0.5)
    assert trades == pytest.approx([-0.5])


def test_the_backtest_reports_the_strategy_beside_buy_and_hold() -> None:
    index = pd.date_range("2024-01-01", periods=6, freq="h", tz="UTC")
    close = [100.0, 100.0, 105.0, 100.0, 95.0, 100.0]
    frames = {
        "BTC/USDT": pd.DataFrame(
            {"close": close, "action": [BUY, HOLD, SELL, HOLD, BUY, SELL]}, index=index
        )
    }

    result = backtest(frames, FREE, periods_per_year=8766)

    assert result["trades"] == 2
    assert result["win_rate"] == 1.0
    assert result["profit_factor"] is None  # no losing trade
    assert result["total_return"] == pytest.approx(1.05 * (100 / 95) - 1)
    assert result["buy_and_hold"]["total_return"] == pytest.approx(0.0)
    assert result["max_drawdown"] == pytest.approx(0.0)
    returns = pd.Series([1.0, 1.0, 1.05, 1.05, 1.05, 1.05 * 100 / 95]).pct_change().dropna()
    assert result["sharpe"] == pytest.approx(returns.mean() / returns.std() * np.sqrt(8766))
    curve = result["equity_curve"]
    assert len(curve["time"]) == len(curve["strategy"]) == len(curve["buy_and_hold"]) == 6


def test_the_portfolio_splits_capital_equally_between_markets() -> None:
    index = pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC")
    up = pd.DataFrame({"close": [100.0, 200.0, 200.0], "action": [BUY, HOLD, HOLD]}, index=index)
    flat = pd.DataFrame({"close": [100.0, 50.0, 50.0], "action": [HOLD] * 3}, index=index)

    result = backtest({"A": up, "B": flat}, FREE, periods_per_year=8766)

    assert result["total_return"] == pytest.approx(0.5)  # half the capital doubled
    assert result["buy_and_hold"]["total_return"] == pytest.approx(0.25)


def test_psi_matches_the_textbook_formula() -> None:
    expected = np.array([0.5, 0.3, 0.2])
    actual = np.array([0.3, 0.3, 0.4])
    by_hand = (0.3 - 0.5) * np.log(0.3 / 0.5) + 0 + (0.4 - 0.2) * np.log(0.4 / 0.2)
    assert psi(expected, actual) == pytest.approx(by_hand)
    assert psi(expected, expected) == 0.0


def test_a_shifted_distribution_has_a_large_psi_and_the_same_one_a_small_psi() -> None:
    rng = np.random.default_rng(7)
    train = rng.normal(0, 1, (5000, 2))
    reference = reference_build(train, ["a", "b"])
    same = psi_by_feature(reference, rng.normal(0, 1, (2000, 2)), ["a", "b"])
    shifted = psi_by_feature(reference, rng.normal(0, 3, (2000, 2)), ["a", "b"])

    assert max(same.values()) < 0.05
    assert min(shifted.values()) > 0.5
    assert drift_level(drift_score(same), warning=0.25, critical=0.5) == "ok"
    assert drift_level(drift_score(shifted), warning=0.25, critical=0.5) == "critical"


def test_a_feature_that_is_mostly_zero_keeps_finite_bins() -> None:
    column = np.r_[np.zeros(900), np.linspace(0.1, 1, 100)][:, None]
    reference = reference_build(column, ["news"])
    assert len(reference["news"]["edges"]) < 9
    live = np.r_[np.zeros(180), np.linspace(0.1, 1, 20)][:, None]
    assert psi_by_feature(reference, live, ["news"])["news"] < 0.01


def test_gates_report_value_threshold_and_outcome() -> None:
    config = GateConfig(min_sharpe=1.5, max_drawdown=0.05, min_trades=30, max_psi=0.5)
    gates = gates_evaluate(
        backtest={"sharpe": 2.0, "max_drawdown": 0.08, "trades": 30}, drift=0.1, config=config
    )
    assert gates == {
        "sharpe": {"value": 2.0, "threshold": 1.5, "passed": True},
        "max_drawdown": {"value": 0.08, "threshold": 0.05, "passed": False},
        "min_trades": {"value": 30, "threshold": 30, "passed": True},
        "drift": {"value": 0.1, "threshold": 0.5, "passed": True},
    }
    assert gates_failed(gates) == ["max_drawdown"]
    missing = gates_evaluate(backtest={}, drift=None, config=config)
    assert gates_failed(missing) == ["sharpe", "max_drawdown", "min_trades", "drift"]


def test_the_default_gates_are_the_business_plan_bar() -> None:
    config = GateConfig()
    assert (config.min_sharpe, config.max_drawdown) == (1.5, 0.05)


def test_confusion_matrix_counts_true_by_predicted() -> None:
    matrix = confusion_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)
    assert matrix == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    rows = confusion_rows(matrix, ("SELL", "HOLD", "BUY"))
    assert rows[0]["cells"][0]["share"] == 0.5 and rows[2]["total"] == 2


def test_plot_geometry_fits_the_curves_in_the_box() -> None:
    plot = equity_plot(
        {"time": ["a", "b", "c"], "strategy": [1.0, 1.2, 0.9], "buy_and_hold": [1.0, 1.1, 1.3]},
        ("strategy", "buy_and_hold"),
    )
    assert plot is not None
    ys = [float(p.split(",")[1]) for p in plot["lines"]["buy_and_hold"].split()]
    assert all(0 <= y <= plot["height"] for y in ys)
    assert ys[-1] < ys[0]  # higher equity is higher on the plot
    bars = importance_bars({"a": 1.0, "b": 4.0})
    assert [b["name"] for b in bars] == ["b", "a"] and bars[1]["pct"] == 25.0
