"""Prometheus gauges of the model registry, read from the database at scrape time.

Drift checks and trainings run in the worker; reading their results when /metrics is
scraped makes the web process export them without sharing process memory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

LABELS = ["market_group", "timeframe", "version"]


def _families() -> dict[str, GaugeMetricFamily]:
    return {
        "drift": GaugeMetricFamily(
            "qt_model_drift_score", "Median PSI of live vs training features", labels=LABELS
        ),
        "psi": GaugeMetricFamily(
            "qt_model_feature_psi",
            "PSI of one feature, live vs training",
            labels=[*LABELS, "feature"],
        ),
        "critical": GaugeMetricFamily(
            "qt_model_drift_critical", "1 when the model's drift is critical", labels=LABELS
        ),
        "active": GaugeMetricFamily(
            "qt_model_active", "1 for the active model, 0 for a shadow", labels=LABELS
        ),
        "ungated": GaugeMetricFamily(
            "qt_model_ungated", "1 when the active model has not passed its gates", labels=LABELS
        ),
        "training": GaugeMetricFamily(
            "qt_model_trainings_running", "Trainings running now", labels=[]
        ),
    }


class RegistryCollector(Collector):
    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Registration asks for the names only: no database access at import time.
        yield from _families().values()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from models_registry.models import ModelVersion, TrainingRun

        families = _families()
        try:
            models = list(
                ModelVersion.objects.filter(is_active=True)
                | ModelVersion.objects.filter(shadow=True)
            )
            running = TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING).count()
        except Exception:  # a scrape must not fail because the database is away
            logger.warning("registry metrics unavailable", exc_info=True)
            return
        for mv in models:
            labels = [mv.market_group, mv.timeframe, str(mv.version)]
            scores = mv.drift_json or {}
            if scores:
                values = sorted(scores.values())
                middle = len(values) // 2
                median = (
                    values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2
                )
                families["drift"].add_metric(labels, median)
            for feature, value in scores.items():
                families["psi"].add_metric([*labels, feature], value)
            families["critical"].add_metric(labels, float(mv.drift_status == "critical"))
            families["active"].add_metric(labels, float(mv.is_active))
            families["ungated"].add_metric(labels, float(mv.ungated))
        families["training"].add_metric([], running)
        yield from families.values()


_registered = False


def register() -> None:
    global _registered
    if _registered:
        return
    from prometheus_client import REGISTRY

    REGISTRY.register(RegistryCollector())
    _registered = True
