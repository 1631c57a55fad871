"""The Celery app and the one place where periodic jobs are declared."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantum.settings")

app = Celery("quantum")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _connect_observability() -> None:
    # Correlation ids ride in task headers; task durations and failures go to /metrics.
    from quantum import logging as qt_logging
    from quantum import metrics

    qt_logging.connect_celery_signals()
    metrics.connect_celery_signals()


_connect_observability()


def beat_schedule() -> dict[str, dict]:
    """The beat schedule, derived from settings; DatabaseScheduler syncs it into the database."""
    from django.conf import settings

    from marketdata.news import news_setting
    from models_registry.conf import setting_float

    ingest_every = (
        settings.QT_REPLAY_INTERVAL
        if settings.QT_MARKET_SOURCE == "replay"
        else settings.QT_CCXT_INTERVAL
    )
    return {
        "ingest-candles": {
            "task": "marketdata.tasks.ingest_all_markets",
            "schedule": ingest_every,
            # A tick that waited longer than its interval is superseded by the next one.
            "options": {"expires": max(ingest_every * 5, 10)},
        },
        "heartbeat": {"task": "quantum.tasks.heartbeat", "schedule": 10.0},
        "resolve-in-flight-orders": {
            "task": "trading.tasks.resolve_in_flight_orders",
            "schedule": 5.0,
            "options": {"expires": 10},
        },
        "catch-up-signals": {
            "task": "trading.tasks.catch_up_signals",
            "schedule": 15.0,
            "options": {"expires": 15},
        },
        "reconcile-accounts": {
            "task": "trading.tasks.reconcile_accounts",
            "schedule": 60.0,
            "options": {"expires": 60},
        },
        "ensure-model": {
            "task": "models_registry.tasks.ensure_active_model",
            "schedule": 600.0,
            "options": {"expires": 600},
        },
        # Model lifecycle (models_registry/conf.py): drift checks, shadow models' calls,
        # scheduled retraining (QT_RETRAIN_INTERVAL=0 turns it off); and news ingestion
        # from the configured APIs/feeds (a no-op when none is configured).
        "model-drift": {
            "task": "models_registry.tasks.check_drift",
            "schedule": setting_float("QT_DRIFT_INTERVAL"),
            "options": {"expires": setting_float("QT_DRIFT_INTERVAL")},
        },
        "model-shadow": {
            "task": "models_registry.tasks.run_shadows",
            "schedule": setting_float("QT_SHADOW_INTERVAL"),
            "options": {"expires": setting_float("QT_SHADOW_INTERVAL")},
        },
        **(
            {
                "model-retrain": {
                    "task": "models_registry.tasks.retrain_models",
                    "schedule": setting_float("QT_RETRAIN_INTERVAL"),
                    "options": {"expires": setting_float("QT_RETRAIN_INTERVAL")},
                }
            }
            if setting_float("QT_RETRAIN_INTERVAL") > 0
            else {}
        ),
        "news-ingest": {
            "task": "marketdata.tasks.ingest_news",
            "schedule": float(news_setting("QT_NEWS_INTERVAL", "300")),
            "options": {"expires": float(news_setting("QT_NEWS_INTERVAL", "300"))},
        },
        # Risk: equity snapshots + the automatic kill switch (daily loss, drawdown) + cancels
        # left open under a kill switch; and the circuit breaker's stale-data check.
        "risk-watch": {
            "task": "risk.tasks.risk_watch",
            "schedule": 15.0,
            "options": {"expires": 15},
        },
        "market-data-watch": {
            "task": "risk.tasks.market_data_watch",
            "schedule": 30.0,
            "options": {"expires": 30},
        },
        # Operations: synthetic checks of exchange APIs and the audit-chain walk (/ready,
        # /metrics).
        "exchange-ping": {
            "task": "quantum.tasks.exchange_ping",
            "schedule": settings.QT_EXCHANGE_PING_INTERVAL,
            "options": {"expires": settings.QT_EXCHANGE_PING_INTERVAL},
        },
        "audit-chain-check": {
            "task": "quantum.tasks.audit_chain_check",
            "schedule": settings.QT_AUDIT_CHECK_INTERVAL,
            "options": {"expires": settings.QT_AUDIT_CHECK_INTERVAL},
        },
    }


@app.on_after_finalize.connect
def _install_schedule(sender: Celery, **kwargs: object) -> None:
    sender.conf.beat_schedule = beat_schedule()
