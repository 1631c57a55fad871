from __future__ import annotations

from celery import shared_task
from django.conf import settings

from marketdata.models import Market


@shared_task(ignore_result=True)
def ensure_active_model() -> None:
    """Train the group's model when none is active (e.g. history arrived after start-up)."""
    from quantum.bootstrap import model_ensure

    markets = list(Market.objects.filter(active=True).select_related("exchange"))
    if markets:
        model_ensure(markets=markets, timeframe=settings.QT_TIMEFRAME)


@shared_task(ignore_result=True, acks_late=False)
def execute_training_run(run_id: int) -> None:
    """Run a requested training (web UI, API); the family lock makes a duplicate skip."""
    from models_registry.models import TrainingRun
    from models_registry.services.retraining import training_run_execute

    run = TrainingRun.objects.get(pk=run_id)
    if run.status == TrainingRun.Status.QUEUED:
        training_run_execute(run=run)


@shared_task(ignore_result=True, acks_late=False)
def retrain_models() -> None:
    """Scheduled retraining of every family with an active model (gated, audited)."""
    from models_registry.services.retraining import retrain_scheduled

    retrain_scheduled()


@shared_task(ignore_result=True)
def check_drift() -> None:
    """PSI of live features against training for active and shadow models."""
    from models_registry.services.drift import drift_check_all

    drift_check_all()


@shared_task(ignore_result=True)
def run_shadows() -> None:
    """Shadow models' calls on the bars stored since their last run."""
    from models_registry.services.shadow import shadow_run_all

    shadow_run_all()
