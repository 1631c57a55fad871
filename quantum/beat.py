"""Celery beat's scheduler: django-celery-beat's DatabaseScheduler, exact for fractional seconds.

`IntervalSchedule.every` is an integer, and django-celery-beat stores a code-declared
schedule in whole seconds: `QT_REPLAY_INTERVAL=0.5` became `every=0`. Beat ran the
in-memory 0.5 s schedule at first, then reloaded the rows at its 5-minute full resync and
sent `ingest-candles` on every loop — hundreds of tasks a second (found by the soak test,
benchmarks/soak.py). Intervals that are not whole seconds are stored in microseconds here.
"""

from __future__ import annotations

from typing import Any

from celery import schedules
from django_celery_beat.models import IntervalSchedule
from django_celery_beat.schedulers import DatabaseScheduler as BaseScheduler
from django_celery_beat.schedulers import ModelEntry as BaseEntry


def interval_for(seconds: float) -> IntervalSchedule:
    """The stored interval for `seconds`: whole seconds as such, anything else in microseconds."""
    if seconds >= 1 and float(seconds).is_integer():
        every, period = int(seconds), IntervalSchedule.SECONDS
    else:
        every, period = max(round(seconds * 1_000_000), 1), IntervalSchedule.MICROSECONDS
    interval = IntervalSchedule.objects.filter(every=every, period=period).first()
    return interval or IntervalSchedule.objects.create(every=every, period=period)


class ModelEntry(BaseEntry):
    @classmethod
    def to_model_schedule(cls, schedule: Any) -> tuple[Any, str]:
        schedule = schedules.maybe_schedule(schedule)
        if type(schedule) is schedules.schedule:
            return interval_for(float(schedule.seconds)), "interval"
        return super().to_model_schedule(schedule)


class DatabaseScheduler(BaseScheduler):
    Entry = ModelEntry
