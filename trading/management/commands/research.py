"""Research on a strategy: guarded sweeps, walk-forward, Monte Carlo, optuna, portfolios.

    python manage.py research sweep --data F.csv --grid 'fast=10:50:10,slow=50:200:50' --holdout 0.3
    python manage.py research walk-forward --data F.csv --grid ... --train 2000 --test 500
    python manage.py research monte-carlo --data F.csv --params fast=20,slow=50 --samples 1000
    python manage.py research optuna --data F.csv --space 'fast=5:50,slow=20:200' --trials 50
    python manage.py research portfolio --data BTC.csv --data ETH.csv --fraction 0.25 \\
        --max-open-positions 2 --max-gross-exposure 6000

Every mode prints one JSON document (stdout, or --json FILE). Bars come from CSV files
(--data) or stored candles (--market, --timeframe, --start, --end), as for `backtest`.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from risk.lib.pretrade import Limits
from trading.lib.backtest import engine, portfolio, research, strategies
from trading.lib.backtest.data import BarsError
from trading.services.backtests import (
    BacktestConfigError,
    bars_for,
    config_validate,
    engine_config,
)

MODES = ("sweep", "walk-forward", "monte-carlo", "optuna", "portfolio")
BIG = Decimal("1e18")


def _dec(name: str, value: str | None, default: Decimal = BIG) -> Decimal:
    if value is None:
        return default
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise CommandError(f"--{name}: {value!r} is not a number") from None
    if not number.is_finite() or number <= 0:
        raise CommandError(f"--{name}: must be positive")
    return number


class Command(BaseCommand):
    help = "Strategy research: sweep, walk-forward, monte-carlo, optuna, portfolio."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("mode", choices=MODES)
        parser.add_argument("--data", action="append", help="CSV file (portfolio: repeat)")
        parser.add_argument("--market", action="append", help="stored market (portfolio: repeat)")
        parser.add_argument("--exchange", default="binance")
        parser.add_argument("--timeframe", default="1h")
        parser.add_argument("--start")
        parser.add_argument("--end")
        parser.add_argument("--strategy", default="ema_cross", help="ema_cross or rsi_reversion")
        parser.add_argument("--params", default="", help="fixed parameters, e.g. fast=20,slow=50")
        parser.add_argument("--fee-bps", default="10")
        parser.add_argument("--slippage-bps", default="5")
        parser.add_argument("--cash", default="10000")
        parser.add_argument("--delay-bars", type=int, default=1)
        parser.add_argument("--long-short", action="store_true")
        parser.add_argument("--grid", help="sweep grid: fast=10:50:10,slow=50:200:50 or a=1|2")
        parser.add_argument("--holdout", type=float, default=0.3, help="hold-out fraction")
        parser.add_argument("--train", type=int, help="walk-forward train bars")
        parser.add_argument("--test", type=int, help="walk-forward test bars")
        parser.add_argument("--samples", type=int, default=1000, help="Monte Carlo paths")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--space", help="optuna ranges: fast=5:50,slow=20:200")
        parser.add_argument("--trials", type=int, default=50)
        parser.add_argument("--fraction", default="0.25", help="portfolio: equity per entry")
        parser.add_argument("--max-gross-exposure")
        parser.add_argument("--max-position-notional")
        parser.add_argument("--max-open-positions", type=int)
        parser.add_argument("--max-leverage", default="1")
        parser.add_argument("--json", dest="json_out")

    def handle(self, *args: Any, **o: Any) -> None:
        if o["strategy"] not in strategies.RULES:
            raise CommandError(f"--strategy: research needs one of {', '.join(strategies.RULES)}")
        try:
            out = self._run(o)
        except (BarsError, BacktestConfigError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        text = json.dumps(out, indent=1, default=str)
        if o["json_out"] and o["json_out"] != "-":
            Path(o["json_out"]).write_text(text)
        else:
            self.stdout.write(text)

    def _config(self, o: dict[str, Any], data: str | None, market: str | None) -> dict[str, Any]:
        return config_validate(
            {
                "data": data,
                "market": market,
                "exchange": o["exchange"],
                "timeframe": o["timeframe"],
                "start": o["start"],
                "end": o["end"],
                "strategy": o["strategy"],
                "params": o["params"],
                "fee_bps": o["fee_bps"],
                "slippage_bps": o["slippage_bps"],
                "cash": o["cash"],
                "delay_bars": o["delay_bars"],
                "long_short": o["long_short"],
                "seed": o["seed"],
            }
        )

    def _run(self, o: dict[str, Any]) -> dict[str, Any]:
        sources = [(d, None) for d in o["data"] or []] + [(None, m) for m in o["market"] or []]
        if not sources:
            raise CommandError("give --data FILE.csv or --market SYMBOL")
        if o["mode"] == "portfolio":
            return self._portfolio(o, sources)
        if len(sources) > 1:
            raise CommandError(f"{o['mode']} takes one --data or --market")
        config = self._config(o, *sources[0])
        bars, market = bars_for(config)
        run_config = engine_config(config, market)
        strategy = o["strategy"]
        if o["mode"] == "monte-carlo":
            actions = strategies.rule_actions(strategy, bars, config["params"])
            result = engine.run(bars, actions, run_config)
            return research.monte_carlo(
                [t.pnl for t in result.trades],
                cash=float(run_config.cash),
                samples=o["samples"],
                seed=o["seed"],
            )
        if o["mode"] == "optuna":
            if not o["space"]:
                raise CommandError("optuna needs --space NAME=LOW:HIGH,...")
            space = research.parse_space(strategy, o["space"])
            return research.optuna_search(
                bars,
                run_config,
                strategy,
                space,
                trials=o["trials"],
                seed=o["seed"],
                holdout=o["holdout"],
            )
        if not o["grid"]:
            raise CommandError(f"{o['mode']} needs --grid NAME=START:STOP:STEP,...")
        grid = research.parse_grid(strategy, o["grid"])
        if o["mode"] == "sweep":
            return research.guarded_sweep(bars, run_config, strategy, grid, o["holdout"])
        if not o["train"] or not o["test"]:
            raise CommandError("walk-forward needs --train BARS and --test BARS")
        return research.walk_forward(
            bars, run_config, strategy, grid, train=o["train"], test=o["test"]
        )

    def _portfolio(self, o: dict[str, Any], sources: list[tuple[Any, Any]]) -> dict[str, Any]:
        legs = []
        config: dict[str, Any] = {}
        for k, (data, market_symbol) in enumerate(sources, start=1):
            config = self._config(o, data, market_symbol)
            bars, market = bars_for(config)
            legs.append(
                portfolio.Leg(
                    symbol=market.symbol if market else Path(data).stem,
                    bars=bars,
                    actions=strategies.rule_actions(o["strategy"], bars, config["params"]),
                    market_id=market.pk if market else k,
                    price_precision=market.price_precision if market else 2,
                    qty_precision=market.qty_precision if market else 5,
                )
            )
        cash = Decimal(config["cash"])
        limits = Limits(
            max_order_notional=BIG,
            max_position_notional=_dec("max-position-notional", o["max_position_notional"]),
            max_gross_exposure=_dec("max-gross-exposure", o["max_gross_exposure"]),
            max_leverage=_dec("max-leverage", o["max_leverage"]),
            max_open_positions=o["max_open_positions"] or len(legs),
            max_daily_loss=BIG,
            max_drawdown=Decimal(1),
            max_orders_per_window=10**9,
        )
        pconfig = portfolio.PortfolioConfig(
            fill=engine_config(config).fill,
            cash=cash,
            fraction=_dec("fraction", o["fraction"]),
            long_short=o["long_short"],
            limits=limits,
        )
        result = portfolio.run(legs, pconfig)
        return portfolio.build_report(legs, pconfig, result)
