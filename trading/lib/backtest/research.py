"""Research tools: parameter sweeps with an overfitting guard, walk-forward, Monte Carlo, optuna.

All pure (bars and configs in, numbers out). Sweeps score every parameter set with the
vectorized engine on the daily mark-to-market curve; the winner is then judged where it
was not chosen: on a hold-out window (the last fraction of the bars, never seen by the
search) and by the deflated Sharpe ratio, which asks how likely its Sharpe is to beat the
best of N luckless trials (Bailey & López de Prado, 2014).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import product
from statistics import NormalDist
from typing import Any

import numpy as np

from trading.lib.backtest import engine, metrics, strategies, vectorized
from trading.lib.backtest.data import Bars

EULER_GAMMA = 0.5772156649015329
_N = NormalDist()


@dataclass(frozen=True)
class Score:
    params: dict[str, Any]
    sharpe: float  # annualized, daily curve
    total_return: float
    max_drawdown: float
    trades: int
    daily_returns: np.ndarray = field(repr=False, compare=False)


def parse_grid(strategy: str, text: str) -> list[dict[str, Any]]:
    """`fast=10:50:10,slow=50:200:50` (start:stop:step, stop included; or a=1|2|5) -> every
    valid combination (combinations the strategy refuses, like fast >= slow, are dropped)."""
    types = strategies.PARAM_TYPES.get(strategy)
    if types is None:
        raise ValueError(f"unknown strategy {strategy!r} (known: {', '.join(strategies.RULES)})")
    axes: dict[str, list[Any]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, spec = part.partition("=")
        name = name.strip()
        if not sep or name not in types:
            raise ValueError(
                f"sweep: {part!r} is not NAME=START:STOP:STEP with NAME in {list(types)}"
            )
        kind = types[name]
        try:
            if "|" in spec:
                values = [kind(v) for v in spec.split("|")]
            else:
                start, stop, step = (kind(v) for v in spec.split(":"))
                if step <= 0 or stop < start:
                    raise ValueError
                values = list(np.arange(start, stop + step / 2, step).astype(kind).tolist())
        except (TypeError, ValueError):
            raise ValueError(f"sweep: {part!r} needs START:STOP:STEP (step > 0) or A|B|C") from None
        axes[name] = values
    if not axes:
        raise ValueError("sweep: no parameters given")
    grid = []
    for combo in product(*axes.values()):
        params = dict(zip(axes, combo, strict=True))
        try:
            strategies.RULES[strategy](np.ones(3), **params)
        except ValueError:
            continue
        grid.append(params)
    if not grid:
        raise ValueError("sweep: no valid parameter combination")
    return grid


def score(
    bars: Bars, actions: np.ndarray, config: engine.Config, params: Mapping[str, Any]
) -> Score:
    """One run of the vectorized engine, summarized on its daily mark-to-market curve."""
    fast = vectorized.run(bars, actions, config)
    _, daily = metrics.daily_equity(bars.times, fast.equity, float(config.cash))
    depth, _ = metrics.max_drawdown(daily)
    return Score(
        params=dict(params),
        sharpe=metrics.sharpe(daily),
        total_return=float(daily[-1] / daily[0] - 1),
        max_drawdown=depth,
        trades=len(fast.trades),
        daily_returns=daily[1:] / daily[:-1] - 1,
    )


def sweep(
    bars: Bars, config: engine.Config, strategy: str, grid: Sequence[Mapping[str, Any]]
) -> list[Score]:
    """Every parameter set scored, best Sharpe first."""
    scores = [
        score(bars, strategies.rule_actions(strategy, bars, params), config, params)
        for params in grid
    ]
    return sorted(scores, key=lambda s: s.sharpe, reverse=True)


def expected_max_sharpe(n_trials: int, variance: float) -> float:
    """E[max SR] of `n_trials` independent zero-skill trials whose Sharpes have `variance`."""
    if n_trials < 2 or variance <= 0:
        return 0.0
    return math.sqrt(variance) * (
        (1 - EULER_GAMMA) * _N.inv_cdf(1 - 1 / n_trials)
        + EULER_GAMMA * _N.inv_cdf(1 - 1 / (n_trials * math.e))
    )


def deflated_sharpe(
    *,
    sharpe: float,
    n_obs: int,
    skew: float,
    kurtosis: float,
    n_trials: int,
    trials_variance: float,
) -> float:
    """Probability that the true Sharpe beats the best of `n_trials` luckless ones.

    Sharpes are per period (not annualized); `kurtosis` is the plain (not excess) one.
    DSR = Φ((SR − SR0)·√(T−1) / √(1 − γ3·SR + (γ4 − 1)/4·SR²)), SR0 = expected_max_sharpe.
    """
    sr0 = expected_max_sharpe(n_trials, trials_variance)
    denominator = 1 - skew * sharpe + (kurtosis - 1) / 4 * sharpe**2
    if n_obs < 2 or denominator <= 0:
        return 0.0
    return _N.cdf((sharpe - sr0) * math.sqrt(n_obs - 1) / math.sqrt(denominator))


def _moments(r: np.ndarray) -> tuple[float, float, float]:
    """(per-period Sharpe, skewness, plain kurtosis) of a return series (population moments)."""
    sd = r.std()
    if len(r) < 2 or sd == 0:
        return 0.0, 0.0, 3.0
    z = (r - r.mean()) / sd
    return float(r.mean() / r.std(ddof=1)), float((z**3).mean()), float((z**4).mean())


def deflated_sharpe_of(best: Score, scores: Sequence[Score]) -> float:
    """The DSR of the chosen score given every trial of the search."""
    per_period = [_moments(s.daily_returns)[0] for s in scores]
    sharpe, skew, kurt = _moments(best.daily_returns)
    return deflated_sharpe(
        sharpe=sharpe,
        n_obs=len(best.daily_returns),
        skew=skew,
        kurtosis=kurt,
        n_trials=len(scores),
        trials_variance=float(np.var(per_period, ddof=1)) if len(per_period) > 1 else 0.0,
    )


def split(bars: Bars, holdout: float) -> tuple[Bars, Bars]:
    if not 0 < holdout < 1:
        raise ValueError(f"holdout: {holdout} must be between 0 and 1")
    cut = int(len(bars) * (1 - holdout))
    if cut < 2 or len(bars) - cut < 2:
        raise ValueError("holdout: too few bars on one side")
    return bars.slice(0, cut), bars.slice(cut, len(bars))


def _out_of_sample(
    bars: Bars, cut: int, config: engine.Config, strategy: str, params: Mapping[str, Any]
) -> Score:
    """Score bars[cut:] with indicators warmed up on everything before (causal, no peeking)."""
    actions = strategies.rule_actions(strategy, bars, params)[cut:]
    return score(bars.slice(cut, len(bars)), actions, config, params)


def guarded_sweep(
    bars: Bars,
    config: engine.Config,
    strategy: str,
    grid: Sequence[Mapping[str, Any]],
    holdout: float = 0.3,
) -> dict[str, Any]:
    """Sweep the first (1 − holdout) of the bars; judge the winner on the rest and by DSR."""
    train, _ = split(bars, holdout)
    scores = sweep(train, config, strategy, grid)
    best = scores[0]
    test = _out_of_sample(bars, len(train), config, strategy, best.params)
    return {
        "best": _summary(best),
        "holdout": _summary(test),
        "deflated_sharpe": deflated_sharpe_of(best, scores),
        "trials": len(scores),
        "top": [_summary(s) for s in scores[:10]],
    }


def _summary(s: Score) -> dict[str, Any]:
    return {
        "params": s.params,
        "sharpe": round(s.sharpe, 4),
        "total_return": round(s.total_return, 6),
        "max_drawdown": round(s.max_drawdown, 6),
        "trades": s.trades,
    }


def walk_forward(
    bars: Bars,
    config: engine.Config,
    strategy: str,
    grid: Sequence[Mapping[str, Any]],
    *,
    train: int,
    test: int,
) -> dict[str, Any]:
    """Rolling windows: choose parameters by sweep on `train` bars, trade the next `test`.

    The windows step by `test`, so the test segments tile the data after the first train
    window; the out-of-sample return is those segments compounded.
    """
    if train < 2 or test < 2:
        raise ValueError("walk-forward: train and test must be at least 2 bars")
    if train + test > len(bars):
        raise ValueError(f"walk-forward: train + test ({train + test}) exceed the {len(bars)} bars")
    windows = []
    growth = 1.0
    for start in range(0, len(bars) - train - test + 1, test):
        chosen = sweep(bars.slice(start, start + train), config, strategy, grid)[0]
        window = bars.slice(start, start + train + test)
        result = _out_of_sample(window, train, config, strategy, chosen.params)
        growth *= 1 + result.total_return
        windows.append(
            {
                "train_start": window.time(0).isoformat(),
                "test_start": window.time(train).isoformat(),
                "test_end": window.time(len(window) - 1).isoformat(),
                "params": chosen.params,
                "train_sharpe": round(chosen.sharpe, 4),
                "test_sharpe": round(result.sharpe, 4),
                "test_return": round(result.total_return, 6),
                "test_trades": result.trades,
            }
        )
    return {"windows": windows, "out_of_sample_return": growth - 1}


def monte_carlo(
    trade_pnls: Sequence[Decimal | float], *, cash: float, samples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Bootstrap the trade sequence: `samples` reorderings drawn with replacement.

    Each trade's return is its PnL over the equity before it (sizing compounds), so a
    resampled path is cash × Π(1 + r). Returns percentiles of total return and of the
    max drawdown of the closed-trade equity path, and the share of losing paths.
    """
    if not trade_pnls:
        raise ValueError("monte carlo: the run has no trades to resample")
    pnl = np.array([float(p) for p in trade_pnls])
    before = cash + np.r_[0.0, np.cumsum(pnl)[:-1]]
    returns = pnl / before
    rng = np.random.default_rng(seed)
    draws = returns[rng.integers(0, len(returns), size=(samples, len(returns)))]
    paths = np.cumprod(1 + draws, axis=1)
    paths = np.hstack([np.ones((samples, 1)), paths])
    totals = paths[:, -1] - 1
    drawdowns = (paths / np.maximum.accumulate(paths, axis=1) - 1).min(axis=1)
    levels = (5, 25, 50, 75, 95)

    def pct(values: np.ndarray) -> dict[str, float]:
        return {
            f"p{q}": float(v) for q, v in zip(levels, np.percentile(values, levels), strict=True)
        }

    return {
        "samples": samples,
        "seed": seed,
        "trades": len(returns),
        "total_return": pct(totals),
        "max_drawdown": pct(drawdowns),
        "probability_of_loss": float(np.mean(totals < 0)),
    }


def optuna_search(
    bars: Bars,
    config: engine.Config,
    strategy: str,
    space: Mapping[str, tuple[float, float]],
    *,
    trials: int = 50,
    seed: int = 0,
    holdout: float = 0.3,
) -> dict[str, Any]:
    """TPE search (optuna, seeded) on the in-sample bars; the winner judged like a sweep's."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    types = strategies.PARAM_TYPES[strategy]
    unknown = set(space) - set(types)
    if unknown:
        raise ValueError(f"optuna: {strategy} has no parameter(s) {', '.join(sorted(unknown))}")
    train, _ = split(bars, holdout)
    scores: list[Score] = []

    def objective(trial: optuna.Trial) -> float:
        params: dict[str, Any] = {}
        for name, (low, high) in space.items():
            if types[name] is int:
                params[name] = trial.suggest_int(name, int(low), int(high))
            else:
                params[name] = trial.suggest_float(name, float(low), float(high))
        try:
            actions = strategies.rule_actions(strategy, train, params)
        except ValueError:
            raise optuna.TrialPruned() from None  # an invalid combination (fast >= slow)
        result = score(train, actions, config, params)
        scores.append(result)
        return result.sharpe

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials)
    if not scores:
        raise ValueError("optuna: no trial produced a valid parameter set")
    best = max(scores, key=lambda s: s.sharpe)
    test = _out_of_sample(bars, len(train), config, strategy, best.params)
    return {
        "best": _summary(best),
        "holdout": _summary(test),
        "deflated_sharpe": deflated_sharpe_of(best, scores),
        "trials": len(scores),
    }


def parse_space(strategy: str, text: str) -> dict[str, tuple[float, float]]:
    """`fast=5:50,slow=20:200` -> {"fast": (5, 50), ...} for optuna."""
    types = strategies.PARAM_TYPES.get(strategy, {})
    space = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, spec = part.partition("=")
        try:
            low, high = (float(v) for v in spec.split(":"))
        except ValueError:
            raise ValueError(f"optuna: {part!r} is not NAME=LOW:HIGH") from None
        if name.strip() not in types or low >= high:
            raise ValueError(f"optuna: {part!r} needs a known parameter and LOW < HIGH")
        space[name.strip()] = (low, high)
    if not space:
        raise ValueError("optuna: no parameters given")
    return space
