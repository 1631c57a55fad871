"""Retraining: the CLI end to end, one training per family, failures raise incidents."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from marketdata.services.sync import market_register
from models_registry.models import ModelVersion, TrainingRun
from models_registry.services.retraining import (
    _redis,
    retrain_scheduled,
    training_lock_name,
    training_run_execute,
    training_run_request,
)
from models_registry.services.training import model_train
from models_registry.tests.factories import FAST
from quantum.celery import beat_schedule
from risk.models import AuditEvent, Incident

QUICK = ["--n-estimators", "15", "--folds", "2"]


def lenient(settings) -> None:  # type: ignore[no-untyped-def]
    settings.QT_GATE_MIN_SHARPE = -1e9
    settings.QT_GATE_MAX_DRAWDOWN = 1.0
    settings.QT_GATE_MIN_TRADES = 0
    settings.QT_GATE_MAX_DRIFT = 1e9


def test_qtctl_retrain_then_list_shows_the_new_version_with_gates(btc, capsys) -> None:  # type: ignore[no-untyped-def]
    call_command("qtctl", "retrain", "--market", "BTC/USDT", "--timeframe", "1h", *QUICK)
    out = capsys.readouterr().out
    assert "[  2%] building features and labels" in out and "[100%] registered v1" in out

    call_command("qtctl", "list", "--json")
    listed = json.loads(capsys.readouterr().out)

    assert len(listed) == 1
    version = listed[0]
    assert version["version"] == 1 and version["market_group"] == "binance:BTC/USDT"
    assert set(version["gates"]) == {"sharpe", "max_drawdown", "min_trades", "drift"}
    assert all(set(g) == {"value", "threshold", "passed"} for g in version["gates"].values())
    assert {"accuracy", "f1", "log_loss", "backtest", "lineage"} <= set(version["metrics"])
    assert "equity_curve" not in version["metrics"]["backtest"]
    run = TrainingRun.objects.get()
    assert (run.status, run.progress, run.requested_by[:4]) == ("succeeded", 100, "cli:")
    assert AuditEvent.objects.filter(action="model.retrain_requested").exists()


def test_a_second_training_of_the_same_family_is_skipped_while_one_runs(btc) -> None:  # type: ignore[no-untyped-def]
    run = training_run_request(
        market_group="binance:BTC/USDT", timeframe="1h", actor="alice", enqueue=False
    )
    held = _redis().lock(training_lock_name("binance:BTC/USDT", "1h"), timeout=60)
    assert held.acquire(blocking=False)
    try:
        result = training_run_execute(run=run)
    finally:
        held.release()

    assert result.status == TrainingRun.Status.SKIPPED
    assert "another training" in result.message
    assert not ModelVersion.objects.exists()
    other = training_run_request(market_group="binance:BTC/USDT", timeframe="4h", actor="a")
    lock = _redis().lock(training_lock_name(other.market_group, other.timeframe), timeout=5)
    assert lock.acquire(blocking=False), "another family has its own lock"
    lock.release()


def test_a_failed_training_raises_an_incident(db) -> None:  # type: ignore[no-untyped-def]
    market_register(exchange_code="binance", symbol="SOL/USDT")  # no candles at all
    run = training_run_request(
        market_group="binance:SOL/USDT", timeframe="1h", actor="system:schedule", enqueue=False
    )

    result = training_run_execute(run=run)

    assert result.status == TrainingRun.Status.FAILED
    assert "no candles" in result.error and result.finished_at is not None
    incident = Incident.objects.get(code="TRAINING_FAILED")
    assert incident.title == "Training of binance:SOL/USDT 1h failed"
    assert AuditEvent.objects.filter(action="model.training_failed").exists()
    lock = _redis().lock(training_lock_name("binance:SOL/USDT", "1h"), timeout=5)
    assert lock.acquire(blocking=False), "the lock is released after a failure"
    lock.release()


def test_scheduled_retraining_shadows_an_approved_candidate_or_promotes_it(  # type: ignore[no-untyped-def]
    btc, settings
) -> None:
    first = model_train(markets=[btc], timeframe="1h", config=FAST)
    lenient(settings)
    settings.QT_RETRAIN_AUTO_PROMOTE = "false"
    runs = retrain_scheduled()

    candidate = runs[0].model_version
    assert candidate is not None and candidate.status == ModelVersion.Status.APPROVED
    assert candidate.shadow and not candidate.is_active
    settings.QT_RETRAIN_AUTO_PROMOTE = "true"
    promoted = retrain_scheduled()[0].model_version
    assert promoted is not None
    promoted.refresh_from_db()
    first.refresh_from_db()
    assert promoted.is_active and not first.is_active


def test_the_api_queues_a_training_for_a_worker(  # type: ignore[no-untyped-def]
    alice, carol, client_as, btc, django_capture_on_commit_callbacks
) -> None:
    assert client_as(carol).post("/api/v1/models/retrain/").status_code == 403
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client_as(alice).post(
            "/api/v1/models/retrain/",
            {"market_group": "binance:BTC/USDT", "timeframe": "1h"},
            content_type="application/json",
        )
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    assert len(callbacks) == 1  # the task is enqueued only after the commit
    runs = client_as(carol).get("/api/v1/models/runs/").json()["results"]
    assert runs[0]["id"] == response.json()["id"]
    bad = client_as(alice).post(
        "/api/v1/models/retrain/",
        {"market_group": "binance:NOPE/USDT"},
        content_type="application/json",
    )
    assert bad.status_code == 400


def test_the_beat_schedule_holds_the_lifecycle_jobs(settings) -> None:  # type: ignore[no-untyped-def]
    schedule = beat_schedule()
    assert schedule["model-drift"]["task"] == "models_registry.tasks.check_drift"
    assert schedule["model-shadow"]["task"] == "models_registry.tasks.run_shadows"
    assert schedule["model-retrain"]["task"] == "models_registry.tasks.retrain_models"
    assert schedule["news-ingest"]["task"] == "marketdata.tasks.ingest_news"
    settings.QT_RETRAIN_INTERVAL = 0
    assert "model-retrain" not in beat_schedule()


@pytest.mark.parametrize("args", [["promote", "999"], ["shadow", "999", "on"]])
def test_qtctl_names_an_unknown_model(db, args) -> None:  # type: ignore[no-untyped-def]
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="no model version with id 999"):
        call_command("qtctl", *args)
