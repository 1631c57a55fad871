"""(Re)training runs: one per model family at a time (a Redis lock), with progress."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from redis.exceptions import LockError

from models_registry.conf import setting_bool, setting_float
from models_registry.models import ModelVersion, TrainingRun
from models_registry.selectors import markets_of_group
from models_registry.services.registry import (
    model_shadow_start,
    model_version_activate_trained,
)
from models_registry.services.training import Progress, TrainingConfig, model_train
from quantum.realtime import task_progress_push
from risk.models import Incident
from risk.services.audit import audit_record
from risk.services.incidents import incident_open

logger = logging.getLogger(__name__)


def _redis() -> Any:
    # The cache's own client: the same Redis (embedded or REDIS_URL) every process shares.
    return cache._cache.get_client(write=True)  # type: ignore[attr-defined]


def training_lock_name(market_group: str, timeframe: str) -> str:
    return f"qt:training-lock:{market_group}|{timeframe}"


@transaction.atomic
def training_run_request(
    *,
    market_group: str,
    timeframe: str,
    actor: str,
    config: TrainingConfig | None = None,
    enqueue: bool = True,
) -> TrainingRun:
    """Record a training request; with `enqueue`, a worker runs it after commit."""
    run = TrainingRun.objects.create(
        market_group=market_group,
        timeframe=timeframe,
        requested_by=actor,
        config_json=asdict(config) if config else {},
        message="queued",
    )
    audit_record(
        actor=actor,
        action="model.retrain_requested",
        obj=run,
        payload={"market_group": market_group, "timeframe": timeframe},
    )
    if enqueue:
        from models_registry.tasks import execute_training_run

        transaction.on_commit(lambda: execute_training_run.delay(run.pk))
    return run


def _report(run: TrainingRun, progress: int, message: str) -> None:
    TrainingRun.objects.filter(pk=run.pk).update(progress=progress, message=message[:300])
    run.progress, run.message = progress, message[:300]
    _progress_push(run)


def _progress_push(run: TrainingRun) -> None:
    """The run's progress bar to open model pages (after commit); a finished run's whole row."""
    task_progress_push(
        kind="training",
        task_id=run.pk,
        percent=run.progress,
        status=run.status,
        message="" if run.done else run.message,
        refresh_url=reverse("models:run", args=[run.pk]),
    )


def training_run_execute(
    *,
    run: TrainingRun,
    promote: bool = False,
    shadow: bool = True,
    on_progress: Progress | None = None,
) -> TrainingRun:
    """Train, evaluate and register a candidate for the run's family.

    Another training of the same family holding the lock makes this run `skipped`. After
    success: with `promote`, a model that passed its gates becomes active; otherwise it can
    start in shadow. A family with no usable model gets the new one ungated, for paper.
    A failure is recorded on the run and raises an incident. Progress is stored on the run
    (and pushed to the open model pages) and passed to `on_progress` (the CLI prints it).
    """

    def report(progress: int, message: str) -> None:
        _report(run, progress, message)
        if on_progress is not None:
            on_progress(progress, message)

    lock = _redis().lock(
        training_lock_name(run.market_group, run.timeframe),
        timeout=int(setting_float("QT_TRAIN_LOCK_SECONDS")),
        blocking=False,
    )
    if not lock.acquire():
        run.status = TrainingRun.Status.SKIPPED
        run.finished_at = timezone.now()
        run.message = "another training of this model family is running"
        run.save(update_fields=["status", "finished_at", "message"])
        _progress_push(run)
        return run
    try:
        run.status = TrainingRun.Status.RUNNING
        run.started_at = timezone.now()
        run.save(update_fields=["status", "started_at"])
        _progress_push(run)
        markets = markets_of_group(run.market_group)
        if not markets:
            raise ValueError(f"no registered markets for {run.market_group}")
        config = TrainingConfig(**run.config_json) if run.config_json else None
        mv = model_train(
            markets=markets,
            timeframe=run.timeframe,
            config=config,
            tag="retrain",
            activate=False,
            progress=report,
            actor=run.requested_by,
        )
        _after_training(mv, actor=run.requested_by, promote=promote, shadow=shadow)
        run.model_version = mv
        run.status = TrainingRun.Status.SUCCEEDED
        run.progress = 100
        mv.refresh_from_db()
        run.message = f"v{mv.version} {mv.status}" + (" (active)" if mv.is_active else "")
    except Exception as exc:
        logger.exception("training run %s failed", run.pk)
        run.status = TrainingRun.Status.FAILED
        run.error = f"{type(exc).__name__}: {exc}"
        run.message = "failed"
        incident_open(
            severity=Incident.Severity.WARNING,
            code="TRAINING_FAILED",
            title=f"Training of {run.market_group} {run.timeframe} failed",
            detail=run.error,
        )
        audit_record(
            actor=run.requested_by,
            action="model.training_failed",
            obj=run,
            payload={"error": run.error[:300]},
        )
    finally:
        run.finished_at = timezone.now()
        run.save()
        _progress_push(run)
        try:
            lock.release()
        except LockError:
            logger.warning("training lock of run %s expired before it finished", run.pk)
    return run


def _after_training(mv: ModelVersion, *, actor: str, promote: bool, shadow: bool) -> None:
    if promote:
        model_version_activate_trained(model_version=mv, actor=actor)
    else:
        # Only fills an empty seat: nothing active for this feature set.
        serving = ModelVersion.objects.filter(
            market_group=mv.market_group,
            timeframe=mv.timeframe,
            is_active=True,
            feature_set_hash=mv.feature_set_hash,
        ).exists()
        if not serving:
            model_version_activate_trained(model_version=mv, actor=actor)
    mv.refresh_from_db()
    if shadow and not mv.is_active and mv.status == ModelVersion.Status.APPROVED:
        model_shadow_start(model_version=mv, actor=actor)


def retrain_scheduled() -> list[TrainingRun]:
    """The beat job: retrain every family that has an active model, one after another."""
    runs = []
    families = (
        ModelVersion.objects.filter(is_active=True)
        .values_list("market_group", "timeframe")
        .distinct()
    )
    for market_group, timeframe in families:
        run = training_run_request(
            market_group=market_group,
            timeframe=timeframe,
            actor="system:schedule",
            enqueue=False,
        )
        runs.append(training_run_execute(run=run, promote=setting_bool("QT_RETRAIN_AUTO_PROMOTE")))
    return runs
