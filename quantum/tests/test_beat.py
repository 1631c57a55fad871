"""Beat's database scheduler keeps the code-declared intervals exact, fractions included."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django_celery_beat.models import PeriodicTask

from quantum.beat import DatabaseScheduler
from quantum.celery import app

# The scheduler closes and reopens connections between its reads, as beat does.
pytestmark = pytest.mark.django_db(transaction=True)


def _stored_run_every(name: str) -> timedelta:
    # What beat reloads at its periodic full resync: the row, not the in-memory schedule.
    task = PeriodicTask.objects.select_related("interval").get(name=name)
    assert task.interval is not None
    return task.interval.schedule.run_every


def test_a_half_second_replay_interval_is_stored_as_half_a_second(settings) -> None:  # type: ignore[no-untyped-def]
    settings.QT_MARKET_SOURCE = "replay"
    settings.QT_REPLAY_INTERVAL = 0.5
    from quantum.celery import beat_schedule

    app.conf.beat_schedule = beat_schedule()
    scheduler = DatabaseScheduler(app=app, lazy=True)
    scheduler.setup_schedule()

    assert _stored_run_every("ingest-candles") == timedelta(seconds=0.5)
    assert _stored_run_every("heartbeat") == timedelta(seconds=10)
    # Reloaded from the database, the entry still runs every half second (not every loop).
    reloaded = DatabaseScheduler(app=app, lazy=True).all_as_schedule()
    assert reloaded["ingest-candles"].schedule.run_every == timedelta(seconds=0.5)


def test_a_fractional_interval_over_a_second_is_not_truncated(settings) -> None:  # type: ignore[no-untyped-def]
    settings.QT_MARKET_SOURCE = "replay"
    settings.QT_REPLAY_INTERVAL = 1.5
    from quantum.celery import beat_schedule

    app.conf.beat_schedule = beat_schedule()
    DatabaseScheduler(app=app, lazy=True).setup_schedule()

    assert _stored_run_every("ingest-candles") == timedelta(seconds=1.5)
