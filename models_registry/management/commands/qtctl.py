"""Operate the model registry: list, retrain, promote, rollback, shadow, drift.

manage.py qtctl list [--json]
manage.py qtctl retrain --market BTC/USDT --market ETH/USDT --timeframe 1h
manage.py qtctl promote ID
manage.py qtctl rollback --market BTC/USDT --market ETH/USDT --timeframe 1h
manage.py qtctl shadow ID on|off
manage.py qtctl drift
"""

from __future__ import annotations

import getpass
import json
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from marketdata.models import TIMEFRAMES, Market
from models_registry.models import ModelVersion, TrainingRun
from models_registry.selectors import market_group_for, model_versions
from models_registry.services.datasets import LABELS
from models_registry.services.drift import model_drift_check
from models_registry.services.registry import (
    PromotionError,
    model_shadow_start,
    model_shadow_stop,
    model_version_hold,
    model_version_promote,
    model_version_rollback,
)
from models_registry.services.retraining import training_run_execute, training_run_request
from models_registry.services.training import TrainingConfig


def version_summary(mv: ModelVersion) -> dict[str, Any]:
    """One line of `list --json`."""
    metrics = dict(mv.metrics_json)
    if isinstance(metrics.get("backtest"), dict):
        metrics["backtest"] = {k: v for k, v in metrics["backtest"].items() if k != "equity_curve"}
    return {
        "id": mv.pk,
        "version": mv.version,
        "market_group": mv.market_group,
        "timeframe": mv.timeframe,
        "status": mv.status,
        "is_active": mv.is_active,
        "ungated": mv.ungated,
        "shadow": mv.shadow,
        "drift_status": mv.drift_status,
        "trained_at": mv.trained_at.isoformat(),
        "sha256": mv.sha256,
        "gates": mv.gates_json,
        "metrics": metrics,
    }


class Command(BaseCommand):
    help = "Model registry: list, retrain, promote, rollback, shadow, drift."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="command", required=True)
        listing = sub.add_parser("list", help="model versions with their gates")
        listing.add_argument("--json", action="store_true", help="machine-readable output")
        listing.add_argument("--timeframe", default="")

        retrain = sub.add_parser("retrain", help="train, evaluate and register a candidate")
        self._family_arguments(retrain)
        retrain.add_argument("--label", choices=LABELS, default="forward")
        retrain.add_argument("--horizon", type=int, default=TrainingConfig.horizon)
        retrain.add_argument("--threshold", type=float, default=TrainingConfig.threshold)
        retrain.add_argument("--stop-loss", type=float, default=None)
        retrain.add_argument("--folds", type=int, default=TrainingConfig.folds)
        retrain.add_argument("--test-fraction", type=float, default=TrainingConfig.test_fraction)
        retrain.add_argument("--test-start", default="", help="ISO time the evaluation starts")
        retrain.add_argument("--test-end", default="")
        retrain.add_argument("--n-estimators", type=int, default=TrainingConfig.n_estimators)
        retrain.add_argument(
            "--no-refit", action="store_true", help="register the evaluated model itself"
        )
        retrain.add_argument(
            "--promote", action="store_true", help="activate it if it passed its gates"
        )
        retrain.add_argument(
            "--queue", action="store_true", help="hand the run to a worker instead"
        )

        promote = sub.add_parser("promote", help="make a model that passed its gates active")
        promote.add_argument("id", type=int)

        rollback = sub.add_parser("rollback", help="put back the previous model of a family")
        self._family_arguments(rollback)

        shadow = sub.add_parser("shadow", help="run a candidate in shadow, or stop")
        shadow.add_argument("id", type=int)
        shadow.add_argument("state", choices=["on", "off"])

        hold = sub.add_parser("hold", help="force a model's calls to HOLD, or lift that")
        hold.add_argument("id", type=int)
        hold.add_argument("state", choices=["on", "off"])
        hold.add_argument("--reason", default="")

        sub.add_parser("drift", help="check drift of the active and shadow models now")

    def _family_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--market", action="append", default=[], help="repeat for each market of the group"
        )
        parser.add_argument("--exchange", default=settings.QT_EXCHANGE)
        parser.add_argument("--timeframe", default=settings.QT_TIMEFRAME)

    def handle(self, *args: Any, **options: Any) -> None:
        self.actor = f"cli:{getpass.getuser()}"
        getattr(self, f"_{options['command']}")(options)

    def _family(self, options: dict[str, Any], *, registered: bool = False) -> tuple[str, str]:
        """The (market group, timeframe) named by --market/--exchange/--timeframe."""
        if options["timeframe"] not in TIMEFRAMES:
            raise CommandError(f"unknown timeframe {options['timeframe']!r}")
        if not options["market"]:
            return market_group_for(), options["timeframe"]
        if not registered:
            symbols = ",".join(sorted(set(options["market"])))
            return f"{options['exchange']}:{symbols}", options["timeframe"]
        markets = list(
            Market.objects.filter(
                exchange__code=options["exchange"], symbol__in=options["market"]
            ).select_related("exchange")
        )
        missing = set(options["market"]) - {m.symbol for m in markets}
        if missing:
            raise CommandError(f"unknown market(s) on {options['exchange']}: {sorted(missing)}")
        return market_group_for(markets), options["timeframe"]

    def _list(self, options: dict[str, Any]) -> None:
        versions = list(model_versions(timeframe=options["timeframe"]))
        if options["json"]:
            self.stdout.write(json.dumps([version_summary(mv) for mv in versions], indent=2))
            return
        for mv in versions:
            failed = [n for n, g in mv.gates_json.items() if not g.get("passed")]
            bt = mv.metrics_json.get("backtest", {})
            gates = (
                "-"
                if not mv.gates_json
                else ("passed" if not failed else "failed: " + ",".join(failed))
            )
            self.stdout.write(
                f"#{mv.pk:<4} v{mv.version:<3} {mv.market_group} {mv.timeframe} "
                f"{mv.status:<9}{' ACTIVE' if mv.is_active else ''}"
                f"{' UNGATED(paper only)' if mv.ungated else ''}{' SHADOW' if mv.shadow else ''} "
                f"sharpe={bt.get('sharpe', float('nan')):.2f} "
                f"maxdd={100 * bt.get('max_drawdown', float('nan')):.1f}% "
                f"trades={bt.get('trades', '-')} gates={gates} drift={mv.drift_status}"
            )

    def _retrain(self, options: dict[str, Any]) -> None:
        market_group, timeframe = self._family(options, registered=True)
        config = TrainingConfig(
            label=options["label"],
            horizon=options["horizon"],
            threshold=options["threshold"],
            stop_loss=options["stop_loss"],
            folds=options["folds"],
            test_fraction=options["test_fraction"],
            test_start=options["test_start"],
            test_end=options["test_end"],
            n_estimators=options["n_estimators"],
            refit=not options["no_refit"],
        )
        run = training_run_request(
            market_group=market_group,
            timeframe=timeframe,
            actor=self.actor,
            config=config,
            enqueue=options["queue"],
        )
        if options["queue"]:
            self.stdout.write(f"training #{run.pk} queued for {market_group} {timeframe}")
            return
        self.stdout.write(f"training #{run.pk}: {market_group} {timeframe}")
        run = training_run_execute(
            run=run, promote=options["promote"], shadow=False, on_progress=_Progress(self)
        )
        if run.status != TrainingRun.Status.SUCCEEDED:
            raise CommandError(f"training #{run.pk} {run.status}: {run.error or run.message}")
        assert run.model_version is not None
        self.stdout.write(json.dumps(version_summary(run.model_version), indent=2))

    def _promote(self, options: dict[str, Any]) -> None:
        mv = self._model(options["id"])
        try:
            mv = model_version_promote(model_version=mv, actor=self.actor)
        except PromotionError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"model v{mv.version} of {mv.market_group} {mv.timeframe} is active")

    def _rollback(self, options: dict[str, Any]) -> None:
        market_group, timeframe = self._family(options)
        try:
            mv = model_version_rollback(
                market_group=market_group, timeframe=timeframe, actor=self.actor
            )
        except PromotionError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"rolled back {market_group} {timeframe} to model v{mv.version}")

    def _shadow(self, options: dict[str, Any]) -> None:
        mv = self._model(options["id"])
        try:
            if options["state"] == "on":
                model_shadow_start(model_version=mv, actor=self.actor)
            else:
                model_shadow_stop(model_version=mv, actor=self.actor)
        except PromotionError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"model v{mv.version} shadow {options['state']}")

    def _hold(self, options: dict[str, Any]) -> None:
        mv = model_version_hold(
            model_version=self._model(options["id"]),
            hold=options["state"] == "on",
            actor=self.actor,
            reason=options["reason"],
        )
        self.stdout.write(f"model v{mv.version} forced HOLD {options['state']}")

    def _drift(self, options: dict[str, Any]) -> None:
        for mv in ModelVersion.objects.filter(is_active=True) | ModelVersion.objects.filter(
            shadow=True
        ):
            result = model_drift_check(model_version=mv)
            score = result.get("score")
            self.stdout.write(
                f"v{mv.version} {mv.market_group} {mv.timeframe}: {result['status']}"
                + (f" (score {score:.3f})" if score is not None else "")
                + (f"; fallback: {result['fallback']}" if result.get("fallback") else "")
            )

    def _model(self, pk: int) -> ModelVersion:
        try:
            return ModelVersion.objects.get(pk=pk)
        except ModelVersion.DoesNotExist as exc:
            raise CommandError(f"no model version with id {pk}") from exc


class _Progress:
    def __init__(self, command: BaseCommand) -> None:
        self.command = command
        self.last = ""

    def __call__(self, progress: int, message: str) -> None:
        line = f"[{progress:3d}%] {message}"
        if line != self.last:
            self.command.stdout.write(line)
            self.last = line
