"""Prometheus metrics of the platform, correct across processes and hosts.

Why Redis: the events worth counting (candles, signals, orders, fills, denials, task
durations) mostly happen in Celery workers — separate processes, possibly on other hosts —
while Prometheus scrapes the web process. prometheus_client's multiprocess mode shares a
directory between processes of one host only (and needs its files wiped on every deploy),
so instead every process writes its increments straight into Redis hashes (one pipelined
round trip, never raising into the trading path) and the web process reads them when
scraped. State that lives in the database or in Redis anyway (ingest lag, queue depth,
heartbeats, rate-limit headroom, kill switch, incidents) is read at scrape time; the model
registry's gauges (active model, drift PSI) come from models_registry/metrics.py.

HTTP metrics come from django-prometheus (per web process, in-process registry). The
``qt_*`` metrics are cluster-wide: with several web replicas scrape one of them, or
aggregate with ``max without(instance)``.

``/metrics`` is protected (see ``metrics_view``).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from prometheus_client.core import (
    REGISTRY,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

logger = logging.getLogger(__name__)

KEY = "qt:metrics:{name}"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)


def _client() -> Any:
    from django.core.cache import cache

    return cache._cache.get_client(write=True)  # type: ignore[attr-defined]


class RedisMetric:
    """A counter, gauge or histogram whose values live in one Redis hash."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        kind: str = "counter",
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        self.name, self.documentation, self.kind = name, documentation, kind
        self.labelnames = tuple(labelnames)
        self.buckets = tuple(buckets)
        self.key = KEY.format(name=name)
        METRICS.append(self)

    def labels(self, **labels: object) -> _Child:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {sorted(labels)}")
        values = [str(labels[name]) for name in self.labelnames]
        return _Child(self, json.dumps(values, separators=(",", ":")))

    # Unlabelled metrics.
    def inc(self, amount: float = 1) -> None:
        self.labels().inc(amount)

    def set(self, value: float) -> None:
        self.labels().set(value)

    def observe(self, value: float) -> None:
        self.labels().observe(value)


class _Child:
    def __init__(self, metric: RedisMetric, field: str) -> None:
        self.metric, self.field = metric, field

    def _write(self, ops: Iterable[tuple[str, str, float]]) -> None:
        try:
            pipe = _client().pipeline(transaction=False)
            for op, field, value in ops:
                if op == "incr":
                    pipe.hincrbyfloat(self.metric.key, field, value)
                else:
                    pipe.hset(self.metric.key, field, value)
            pipe.execute()
        except Exception:
            # Metrics never break the work they measure; a Redis outage shows on /ready.
            logger.debug("metric %s not recorded", self.metric.name, exc_info=True)

    def inc(self, amount: float = 1) -> None:
        self._write([("incr", self.field, amount)])

    def set(self, value: float) -> None:
        self._write([("set", self.field, value)])

    def observe(self, value: float) -> None:
        index = next((i for i, b in enumerate(self.metric.buckets) if value <= b), -1)
        bucket = f"{self.field}|b{index}" if index >= 0 else f"{self.field}|inf"
        self._write(
            [
                ("incr", bucket, 1),
                ("incr", f"{self.field}|sum", value),
                ("incr", f"{self.field}|count", 1),
            ]
        )

    @contextmanager
    def time(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe(time.perf_counter() - start)


METRICS: list[RedisMetric] = []

CANDLES_INGESTED = RedisMetric("qt_candles_ingested_total", "Candles stored", ["market", "source"])
CANDLES_REJECTED = RedisMetric(
    "qt_candles_rejected_total", "Candles rejected by validation", ["market", "reason"]
)
SIGNALS = RedisMetric("qt_signals_total", "Signals stored", ["market", "action"])
ORDERS = RedisMetric("qt_orders_total", "Order intents persisted", ["side", "strategy"])
ORDER_TRANSITIONS = RedisMetric("qt_order_transitions_total", "Order state transitions", ["status"])
FILLS = RedisMetric("qt_fills_total", "Fills recorded", ["market", "side"])
RISK_DENIALS = RedisMetric("qt_risk_denials_total", "Orders denied by risk checks", ["code"])
ORDER_LATENCY = RedisMetric(
    "qt_order_submit_seconds",
    "Order submit round trip: sent to the exchange until its answer",
    ["exchange", "mode"],
    kind="histogram",
)
INFERENCE_LATENCY = RedisMetric(
    "qt_model_inference_seconds",
    "Model inference time per signal",
    ["market"],
    kind="histogram",
)
TASK_DURATION = RedisMetric(
    "qt_celery_task_seconds",
    "Celery task run time",
    ["task", "state"],
    kind="histogram",
    buckets=TASK_BUCKETS,
)
TASK_FAILURES = RedisMetric(
    "qt_celery_task_failures_total", "Celery tasks that raised", ["task", "exception"]
)
TASK_RETRIES = RedisMetric("qt_celery_task_retries_total", "Celery task retries", ["task"])
CACHE_REQUESTS = RedisMetric(
    "qt_cache_requests_total", "Cache lookups by result", ["cache", "result"]
)
EXCHANGE_UP = RedisMetric(
    "qt_exchange_up",
    "Synthetic check of an exchange account's API (1 answered, 0 failed)",
    ["account", "exchange", "mode"],
    kind="gauge",
)
EXCHANGE_PING = RedisMetric(
    "qt_exchange_ping_seconds",
    "Round trip of the last synthetic check",
    ["account", "exchange", "mode"],
    kind="gauge",
)
AUDIT_CHAIN_OK = RedisMetric(
    "qt_audit_chain_ok", "1 when the last audit-chain walk found it intact", kind="gauge"
)
AUDIT_CHAIN_ENTRIES = RedisMetric(
    "qt_audit_chain_entries", "Entries in the audit chain at the last walk", kind="gauge"
)
AUDIT_CHAIN_CHECKED = RedisMetric(
    "qt_audit_chain_checked_timestamp_seconds",
    "When the audit chain was last walked",
    kind="gauge",
)


def _families(metric: RedisMetric, raw: dict[bytes, bytes]) -> Metric:
    labels = list(metric.labelnames)
    if metric.kind == "histogram":
        family = HistogramMetricFamily(metric.name, metric.documentation, labels=labels)
        series: dict[str, dict[str, float]] = defaultdict(dict)
        for f, v in raw.items():
            field, _, part = f.decode().rpartition("|")
            series[field][part] = float(v)
        for field, parts in series.items():
            cumulative, buckets = 0.0, []
            for i, bound in enumerate(metric.buckets):
                cumulative += parts.get(f"b{i}", 0.0)
                buckets.append((repr(float(bound)), cumulative))
            buckets.append(("+Inf", cumulative + parts.get("inf", 0.0)))
            family.add_metric(json.loads(field), buckets, parts.get("sum", 0.0))
        return family
    flat: CounterMetricFamily | GaugeMetricFamily = (
        CounterMetricFamily(metric.name, metric.documentation, labels=labels)
        if metric.kind == "counter"
        else GaugeMetricFamily(metric.name, metric.documentation, labels=labels)
    )
    for f, v in raw.items():
        flat.add_metric(json.loads(f.decode()), float(v))
    return flat


def _gauge(name: str, doc: str, labels: Sequence[str], rows: Iterable[tuple]) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=list(labels))
    for *values, value in rows:
        family.add_metric([str(v) for v in values], float(value))
    return family


def _live_gauges() -> Iterator[Metric]:
    """State read at scrape time: database rows and Redis keys that exist anyway."""
    from django.conf import settings
    from django.db.models import Count, Max
    from django.utils import timezone

    from marketdata.models import TIMEFRAMES, Candle, Market
    from quantum.services import heartbeat_get
    from risk.models import Incident, TradingState

    now = timezone.now()
    timeframe = settings.QT_TIMEFRAME
    step = TIMEFRAMES[timeframe]
    markets = list(Market.objects.filter(active=True))
    newest = dict(
        Candle.objects.filter(market__in=markets, timeframe=timeframe)
        .values("market_id")
        .annotate(at=Max("open_time"))
        .values_list("market_id", "at")
    )
    yield _gauge(
        "qt_ingest_lag_seconds",
        "Now minus the close of the newest stored bar (replay: historical, see last tick)",
        ["market", "timeframe"],
        [
            (m.symbol, timeframe, (now - (newest[m.pk] + step)).total_seconds())
            for m in markets
            if m.pk in newest
        ],
    )
    yield _gauge(
        "qt_ingest_last_tick_age_seconds",
        "Seconds since the market was last synced (any source)",
        ["market"],
        [(m.symbol, (now - m.last_ingest_at).total_seconds()) for m in markets if m.last_ingest_at],
    )
    beats = [(c, heartbeat_get(component=c)) for c in ("worker", "beat")]
    yield _gauge(
        "qt_heartbeat_age_seconds",
        "Seconds since the worker/beat heartbeat",
        ["component"],
        [(c, (now - seen).total_seconds()) for c, seen in beats if seen is not None],
    )
    states = TradingState.objects.select_related("account")
    yield _gauge(
        "qt_kill_switch",
        "1 when the kill switch is on (scope: global or the account name)",
        ["scope"],
        [(s.account.name if s.account else "global", int(s.kill_switch)) for s in states],
    )
    yield _gauge(
        "qt_trading_state",
        "Trading state per scope (1 for the current state)",
        ["scope", "state"],
        [(s.account.name if s.account else "global", s.state, 1) for s in states],
    )
    open_by_severity = dict(
        Incident.objects.filter(status=Incident.Status.OPEN)
        .values("severity")
        .annotate(n=Count("id"))
        .values_list("severity", "n")
    )
    yield _gauge(
        "qt_incidents_open",
        "Open incidents by severity",
        ["severity"],
        # Every severity, 0 included: a dashboard shows "0", not "No data", when all is well.
        [(severity, open_by_severity.get(severity, 0)) for severity in Incident.Severity.values],
    )
    yield from _ratelimit_gauges()


def _ratelimit_gauges() -> Iterator[Metric]:
    """Headroom of each exchange account's shared request budget (trading/ratelimit.py)."""
    from trading.adapters.ccxt_adapter import PROFILES
    from trading.models import ExchangeAccount
    from trading.ratelimit import Bucket

    rows, backoff = [], []
    for account in ExchangeAccount.objects.exclude(mode="paper").select_related("exchange"):
        profile = PROFILES.get((account.exchange.code, account.market_type))
        if profile is None:
            continue
        bucket = Bucket(profile.ccxt_id, str(account.pk), profile.windows)
        rows.append((account.name, account.exchange.code, bucket.headroom()))
        backoff.append((account.name, account.exchange.code, bucket.backoff_left(new_order=True)))
    yield _gauge(
        "qt_ratelimit_headroom_ratio",
        "Share of the tightest window of the exchange request budget left (1 = full)",
        ["account", "exchange"],
        rows,
    )
    yield _gauge(
        "qt_ratelimit_backoff_seconds",
        "Seconds left in an exchange-imposed back-off (429/418)",
        ["account", "exchange"],
        backoff,
    )


def queue_lengths() -> dict[str, int]:
    """Messages waiting in each Celery queue (Redis broker: the list lengths)."""
    from quantum.celery import app

    names = {app.conf.task_default_queue or "celery"}
    for queue in app.conf.task_queues or ():
        names.add(getattr(queue, "name", str(queue)))
    routes = app.conf.task_routes
    if isinstance(routes, dict):
        names.update(r["queue"] for r in routes.values() if isinstance(r, dict) and "queue" in r)
    lengths = {}
    with app.connection_for_read() as conn:
        client = conn.default_channel.client  # type: ignore[attr-defined]  # Redis transport
        for name in sorted(names):
            # kombu's Redis transport keeps one list per priority step: name, name\x06\x16N.
            keys = [name] + [f"{name}\x06\x16{p}" for p in (3, 6, 9)]
            lengths[name] = sum(int(client.llen(k)) for k in keys)
    return lengths


class PlatformCollector:
    """Reads the Redis-backed metrics and the live gauges when Prometheus scrapes."""

    def describe(self) -> list[Metric]:
        return []  # no collect() at registration time (the database may not be there yet)

    def collect(self) -> Iterator[Metric]:
        try:
            client = _client()
            pipe = client.pipeline(transaction=False)
            for metric in METRICS:
                pipe.hgetall(metric.key)
            for metric, raw in zip(METRICS, pipe.execute(), strict=True):
                yield _families(metric, raw)
        except Exception:
            logger.warning("metrics from Redis unavailable", exc_info=True)
        for part in (_live_gauges, _queue_gauges):
            try:
                yield from part()
            except Exception:
                logger.warning("metrics part %s failed", part.__name__, exc_info=True)


def _queue_gauges() -> Iterator[Metric]:
    yield _gauge(
        "qt_celery_queue_length",
        "Messages waiting in each Celery queue",
        ["queue"],
        queue_lengths().items(),
    )


_collector = PlatformCollector()
if _collector not in getattr(REGISTRY, "_collector_to_names", {}):
    REGISTRY.register(_collector)  # type: ignore[arg-type]


# --- Celery task metrics ------------------------------------------------------------------

_started: dict[str, float] = {}


def _task_prerun(task_id: str = "", **kwargs: Any) -> None:
    _started[task_id] = time.perf_counter()


def _task_postrun(task_id: str = "", task: Any = None, state: str | None = None, **kw: Any) -> None:
    start = _started.pop(task_id, None)
    if start is not None and task is not None:
        TASK_DURATION.labels(task=task.name, state=state or "UNKNOWN").observe(
            time.perf_counter() - start
        )


def _task_failure(sender: Any = None, exception: BaseException | None = None, **kw: Any) -> None:
    name = getattr(sender, "name", "unknown")
    TASK_FAILURES.labels(task=name, exception=type(exception).__name__).inc()


def _task_retry(sender: Any = None, **kw: Any) -> None:
    TASK_RETRIES.labels(task=getattr(sender, "name", "unknown")).inc()


def connect_celery_signals() -> None:
    """Idempotent; called from quantum/celery.py."""
    from celery.signals import task_failure, task_postrun, task_prerun, task_retry

    task_prerun.connect(_task_prerun, weak=False, dispatch_uid="qt-metrics-prerun")
    task_postrun.connect(_task_postrun, weak=False, dispatch_uid="qt-metrics-postrun")
    task_failure.connect(_task_failure, weak=False, dispatch_uid="qt-metrics-failure")
    task_retry.connect(_task_retry, weak=False, dispatch_uid="qt-metrics-retry")


# --- /metrics, protected ------------------------------------------------------------------


def metrics_allowed(request: Any) -> bool:
    """A bearer token when QT_METRICS_TOKEN is set; otherwise internal callers only.

    Without a token, only a direct caller from loopback or a private network (Prometheus
    on the same host or the compose network) is served, and never a request that came
    through a proxy (X-Forwarded-For): behind nginx every outside request arrives from
    127.0.0.1, so the forwarded header is what tells them apart. The metrics name markets,
    accounts and models; they are not for the public.
    """
    from django.conf import settings

    token = settings.QT_METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
    if request.headers.get("X-Forwarded-For") or request.headers.get("Forwarded"):
        return False
    try:
        addr = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return addr.is_loopback or addr.is_private


def metrics_view(request: Any) -> Any:
    """Prometheus text format: django-prometheus's HTTP metrics and the platform's own."""
    from django.http import HttpResponse
    from django_prometheus.exports import ExportToDjangoView

    if not metrics_allowed(request):
        return HttpResponse("metrics are internal\n", status=403, content_type="text/plain")
    return ExportToDjangoView(request)
