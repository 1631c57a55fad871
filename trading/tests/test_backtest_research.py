"""Research tools and portfolio backtests, on real candles and hand-computed cases."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from scipy.stats import norm

from risk.lib.pretrade import Limits
from trading.lib.backtest import engine, portfolio, research, strategies
from trading.lib.backtest.data import Bars, load_csv
from trading.lib.fills import FillModel

COSTS = FillModel(fee_bps=Decimal("10"), slippage_bps=Decimal("5"))
CONFIG = engine.Config(fill=COSTS)
GRID = [{"fast": f, "slow": s} for f in (8, 20) for s in (30, 60)]
BIG = Decimal("1e18")


@pytest.fixture(scope="module")
def data() -> Path:
    from django.conf import settings

    return Path(settings.QT_DATA_DIR)


@pytest.fixture(scope="module")
def btc(data: Path) -> Bars:
    return load_csv(data / "binance_BTCUSDT_1h.csv").slice(20000, 26000)


@pytest.fixture(scope="module")
def four(data: Path) -> dict[str, Bars]:
    """BTC, ETH, SOL and BNB 1h over the same 2,000 hours of 2022."""
    out = {}
    for asset in ("BTC", "ETH", "SOL", "BNB"):
        bars = load_csv(data / f"binance_{asset}USDT_1h.csv")
        start = int(np.searchsorted(bars.times, 1_648_771_200))  # 2022-04-01
        out[f"{asset}/USDT"] = bars.slice(start, start + 2000)
    return out


def test_the_deflated_sharpe_ratio_matches_bailey_and_lopez_de_prados_worked_example() -> None:
    # Their example (2014, section 5): annual SR 2.5 over 1,250 days, 100 trials whose
    # annualized Sharpes vary by 0.5, skew -3, kurtosis 10: DSR ~ 0.9004.
    dsr = research.deflated_sharpe(
        sharpe=2.5 / math.sqrt(250),
        n_obs=1250,
        skew=-3,
        kurtosis=10,
        n_trials=100,
        trials_variance=0.5 / 250,
    )
    assert dsr == pytest.approx(0.9004, abs=5e-4)


def test_the_deflated_sharpe_ratio_matches_a_hand_computation_with_scipy() -> None:
    sr, t, skew, kurt, n, var = 0.08, 500, 0.4, 5.0, 30, 0.0015
    gamma = 0.5772156649015329
    sr0 = math.sqrt(var) * (
        (1 - gamma) * norm.ppf(1 - 1 / n) + gamma * norm.ppf(1 - 1 / (n * math.e))
    )
    expected = norm.cdf(
        (sr - sr0) * math.sqrt(t - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    )
    got = research.deflated_sharpe(
        sharpe=sr, n_obs=t, skew=skew, kurtosis=kurt, n_trials=n, trials_variance=var
    )
    assert got == pytest.approx(expected, rel=1e-9)
    # More trials raise the bar: the same Sharpe is less convincing.
    assert (
        research.deflated_sharpe(
            sharpe=sr, n_obs=t, skew=skew, kurtosis=kurt, n_trials=1000, trials_variance=var
        )
        < got
    )


def test_a_sweep_grid_includes_its_stop_and_drops_combinations_the_strategy_refuses() -> None:
    grid = research.parse_grid("ema_cross", "fast=10:50:20,slow=30:50:20")
    assert grid == [{"fast": 10, "slow": 30}, {"fast": 10, "slow": 50}, {"fast": 30, "slow": 50}]
    assert research.parse_grid("rsi_reversion", "lower=20|30") == [{"lower": 20.0}, {"lower": 30.0}]
    with pytest.raises(ValueError, match="'speed=1:2:1'"):
        research.parse_grid("ema_cross", "speed=1:2:1")
    with pytest.raises(ValueError, match="step > 0"):
        research.parse_grid("ema_cross", "fast=10:5:1")


def test_the_hold_out_score_of_the_sweep_winner_is_an_event_engine_run_it_never_saw(
    btc: Bars,
) -> None:
    out = research.guarded_sweep(btc, CONFIG, "ema_cross", GRID, holdout=0.3)
    cut = int(len(btc) * 0.7)
    train = btc.slice(0, cut)
    finals = {
        tuple(p.values()): engine.run(train, strategies.rule_actions("ema_cross", train, p), CONFIG)
        for p in GRID
    }
    assert out["trials"] == len(GRID)
    best = out["best"]
    assert best["sharpe"] == max(s["sharpe"] for s in out["top"])
    assert best["trades"] == len(finals[tuple(best["params"].values())].trades)
    # The hold-out: indicators warmed up on the train bars, trades only after the cut.
    actions = strategies.rule_actions("ema_cross", btc, best["params"])[cut:]
    event = engine.run(btc.slice(cut, len(btc)), actions, CONFIG)
    assert out["holdout"]["total_return"] == pytest.approx(
        float(event.equity[-1]) / 10000 - 1, abs=1e-6
    )
    assert 0.0 <= out["deflated_sharpe"] <= 1.0


def test_walk_forward_chooses_on_each_train_window_and_compounds_the_test_windows(
    btc: Bars,
) -> None:
    out = research.walk_forward(btc, CONFIG, "ema_cross", GRID, train=2000, test=1000)
    windows = out["windows"]
    assert len(windows) == (len(btc) - 2000 - 1000) // 1000 + 1 == 4
    for k, w in enumerate(windows):
        train = btc.slice(k * 1000, k * 1000 + 2000)
        chosen = research.sweep(train, CONFIG, "ema_cross", GRID)[0]
        assert w["params"] == chosen.params
        assert w["test_start"] == btc.time(k * 1000 + 2000).isoformat()
    growth = math.prod(1 + w["test_return"] for w in windows)
    assert out["out_of_sample_return"] == pytest.approx(growth - 1, abs=1e-5)
    with pytest.raises(ValueError, match="exceed"):
        research.walk_forward(btc, CONFIG, "ema_cross", GRID, train=5000, test=2000)


def test_monte_carlo_is_seeded_and_its_percentiles_match_a_hand_case() -> None:
    # Identical trades: every resampled path is the same, 1.01**4 - 1 with no drawdown.
    same = research.monte_carlo([Decimal("100")] * 4, cash=10000, samples=200, seed=1)
    pnl = [100, 101, 102.01, 103.0301]  # 1 % of equity each time
    compounding = research.monte_carlo(pnl, cash=10000, samples=200, seed=1)
    assert compounding["total_return"]["p5"] == pytest.approx(1.01**4 - 1, rel=1e-9)
    assert compounding["max_drawdown"]["p50"] == 0
    assert same["probability_of_loss"] == 0
    losers = research.monte_carlo([-50, -50, 30], cash=1000, samples=500, seed=7)
    again = research.monte_carlo([-50, -50, 30], cash=1000, samples=500, seed=7)
    other = research.monte_carlo([-50, -50, 30], cash=1000, samples=500, seed=8)
    assert losers == again and losers != other
    # The worst path loses all three draws (-5 %, ~-5.26 %, ...); percentiles are ordered.
    q = losers["total_return"]
    assert q["p5"] <= q["p25"] <= q["p50"] <= q["p75"] <= q["p95"]
    assert losers["max_drawdown"]["p5"] < 0 and 0 < losers["probability_of_loss"] < 1
    with pytest.raises(ValueError, match="no trades"):
        research.monte_carlo([], cash=1000)


def test_an_optuna_search_is_reproducible_with_a_seed_and_judged_on_the_hold_out(
    btc: Bars,
) -> None:
    space = research.parse_space("ema_cross", "fast=5:30,slow=31:120")
    first = research.optuna_search(btc, CONFIG, "ema_cross", space, trials=12, seed=3)
    second = research.optuna_search(btc, CONFIG, "ema_cross", space, trials=12, seed=3)
    assert first == second
    assert 5 <= first["best"]["params"]["fast"] <= 30 < first["best"]["params"]["slow"] <= 120
    assert first["trials"] == 12
    assert "total_return" in first["holdout"] and 0 <= first["deflated_sharpe"] <= 1


def _legs(four: dict[str, Bars], params: dict[str, int] | None = None) -> list[portfolio.Leg]:
    return [
        portfolio.Leg(symbol, bars, strategies.ema_cross(bars.close, **(params or {})), k)
        for k, (symbol, bars) in enumerate(four.items(), start=1)
    ]


def _limits(**overrides: object) -> Limits:
    values: dict[str, object] = {
        "max_order_notional": BIG,
        "max_position_notional": BIG,
        "max_gross_exposure": BIG,
        "max_leverage": Decimal(1),
        "max_open_positions": 4,
        "max_daily_loss": BIG,
        "max_drawdown": Decimal(1),
        "max_orders_per_window": 10**9,
    }
    values.update(overrides)
    return Limits(**values)  # type: ignore[arg-type]


def test_a_one_market_portfolio_trades_exactly_like_the_event_engine(four: dict[str, Bars]) -> None:
    bars = four["BTC/USDT"]
    actions = strategies.ema_cross(bars.close)
    alone = engine.run(bars, actions, CONFIG)
    pconfig = portfolio.PortfolioConfig(fill=COSTS, fraction=Decimal(1), limits=_limits())
    result = portfolio.run([portfolio.Leg("BTC/USDT", bars, actions, 1)], pconfig)
    assert [t for _, t in result.trades] == alone.trades
    assert [f for _, f in result.fills] == alone.fills
    assert result.final_cash == alone.final_cash
    assert result.equity[-1] == pytest.approx(alone.equity[-1], abs=1e-6)


def test_a_four_market_portfolio_shares_one_cash_pool(four: dict[str, Bars]) -> None:
    pconfig = portfolio.PortfolioConfig(fill=COSTS, fraction=Decimal("0.25"), limits=_limits())
    result = portfolio.run(_legs(four), pconfig)
    assert {s for s, _ in result.trades} == set(four)
    flows = sum(
        (
            -(f.price * f.quantity) - f.fee if f.side == "BUY" else f.price * f.quantity - f.fee
            for _, f in result.fills
        ),
        Decimal(0),
    )
    assert result.final_cash == Decimal("10000") + flows
    assert result.final_cash >= 0, "spot: never spends cash it does not have"
    report = portfolio.build_report(_legs(four), pconfig, result)
    assert report["metrics"]["trade_count"] == len(result.trades)
    assert report["metrics"]["orders_denied"] == 0


def test_an_open_positions_limit_denies_an_order_with_its_code_and_the_run_goes_on(
    four: dict[str, Bars],
) -> None:
    pconfig = portfolio.PortfolioConfig(
        fill=COSTS, fraction=Decimal("0.25"), limits=_limits(max_open_positions=2)
    )
    result = portfolio.run(_legs(four), pconfig)
    denied = [o for o in result.orders if o.order.status == "denied"]
    assert denied, "two positions at most: some entries must be refused"
    assert all(
        o.order.detail.startswith("MAX_OPEN_POSITIONS: 2 positions open (max 2)") for o in denied
    )
    assert all(o.order.side == "BUY" for o in denied), "exits are never refused"
    # Never more than two markets held at once, replaying the fills independently.
    held: dict[str, Decimal] = dict.fromkeys(four, Decimal(0))
    for symbol, f in sorted(result.fills, key=lambda sf: (sf[1].time, sf[1].order)):
        held[symbol] += f.quantity if f.side == "BUY" else -f.quantity
        assert sum(1 for q in held.values() if q != 0) <= 2
    first_denial = min(four[o.symbol].times[o.order.decided_bar] for o in denied)
    later = [f for _, f in result.fills if f.time.timestamp() > first_denial and f.side == "BUY"]
    assert later, "the run went on trading after the denial"
    report = portfolio.build_report(_legs(four), pconfig, result)
    assert report["metrics"]["orders_denied"] == len(denied) == len(report["denied"])


def test_a_gross_exposure_limit_binds_on_the_whole_book(four: dict[str, Bars]) -> None:
    pconfig = portfolio.PortfolioConfig(
        fill=COSTS, fraction=Decimal("0.25"), limits=_limits(max_gross_exposure=Decimal(6000))
    )
    result = portfolio.run(_legs(four), pconfig)
    codes = {o.order.detail.split(":")[0] for o in result.orders if o.order.status == "denied"}
    assert codes == {"MAX_GROSS_EXPOSURE"}
    # Marked at decisions the book stays under the limit plus what prices did since.
    assert result.exposure.max() < 6000 * 1.5


def test_the_research_command_writes_a_guarded_sweep_and_a_portfolio_as_json(
    tmp_path: Path, data: Path
) -> None:
    lines = (data / "binance_BTCUSDT_1h.csv").read_text().splitlines()
    csv_file = tmp_path / "btc.csv"
    csv_file.write_text("\n".join([lines[0], *lines[20001:23001]]) + "\n")
    out = tmp_path / "sweep.json"
    call_command(
        "research",
        "sweep",
        data=[str(csv_file)],
        grid="fast=8:20:12,slow=30:60:30",
        holdout=0.3,
        json_out=str(out),
    )
    sweep = json.loads(out.read_text())
    assert sweep["trials"] == 4 and set(sweep) >= {"best", "holdout", "deflated_sharpe"}
    mc = tmp_path / "mc.json"
    call_command(
        "research",
        "monte-carlo",
        data=[str(csv_file)],
        params="fast=8,slow=30",
        samples=100,
        seed=2,
        json_out=str(mc),
    )
    assert json.loads(mc.read_text())["samples"] == 100
    eth = tmp_path / "eth.csv"
    eth_lines = (data / "binance_ETHUSDT_1h.csv").read_text().splitlines()
    start = next(k for k, line in enumerate(eth_lines) if line.startswith(lines[20001][:20]))
    eth.write_text("\n".join([eth_lines[0], *eth_lines[start : start + 3000]]) + "\n")
    folio = tmp_path / "folio.json"
    call_command(
        "research",
        "portfolio",
        data=[str(csv_file), str(eth)],
        fraction="0.5",
        max_open_positions=1,
        json_out=str(folio),
    )
    report = json.loads(folio.read_text())
    assert set(report["markets"]) == {"btc", "eth"}
    assert report["denied"] and report["denied"][0]["reason"].startswith("MAX_OPEN_POSITIONS")
    with pytest.raises(CommandError, match="sweep: 'speed=1:2:1'"):
        call_command("research", "sweep", data=[str(csv_file)], grid="speed=1:2:1")
