"""/metrics: worker-side counters reach the web process; alert rules and dashboards only
use metrics that exist."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.cache import cache
from django.test import Client

from marketdata.services.ingestion import candles_ingest
from quantum.celery import app
from quantum.metrics import INFERENCE_LATENCY
from quantum.tests.workers import celery_worker, wait_for
from trading.models import Order

DEPLOY = Path(settings.BASE_DIR) / "deploy"


def scrape() -> str:
    response = Client().get("/metrics")
    assert response.status_code == 200
    return response.content.decode()


def value(text: str, sample: str) -> float | None:
    """The value of one exact sample line (`name{labels}`) in the exposition, if present."""
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def sampled_names(text: str) -> set[str]:
    """Names with at least one sample line (a `# TYPE` line alone makes Prometheus store
    nothing)."""
    return set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.MULTILINE))


def exposed_names(text: str) -> set[str]:
    """Every series name the scrape offers, with the suffixes of histograms and counters."""
    names = sampled_names(text)
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        if kind == "counter" and not name.endswith("_total"):
            names.add(f"{name}_total")
    return names


def metric_names_in(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:qt|django)_[a-z0-9_]+)\b", expr))


def _bar(market, at: datetime) -> None:  # type: ignore[no-untyped-def]
    row = {"open_time": at.isoformat(), "open": "100", "high": "110", "low": "90"}
    candles_ingest(
        market=market, timeframe="1h", rows=[row | {"close": "105", "volume": "1"}], source="t"
    )


@pytest.mark.django_db(transaction=True)
def test_counters_from_a_real_worker_process_show_on_the_web_metrics(
    market, paper_account, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from trading.tasks import execute_decision

    _bar(market, datetime(2024, 1, 1, tzinfo=UTC))
    with celery_worker(tmp_path / "worker.log") as queue:
        execute_decision.apply_async(
            args=[paper_account.pk, market.pk, "BUY", "1", "m-1", "105"], queue=queue
        )
        execute_decision.apply_async(
            args=[999_999, market.pk, "BUY", "1", "m-2", "105"], queue=queue
        )
        wait_for(
            lambda: (
                Order.objects.filter(status=Order.Status.FILLED).exists()
                and value(
                    scrape(),
                    'qt_celery_task_failures_total{exception="DoesNotExist",'
                    'task="trading.tasks.execute_decision"}',
                )
            ),
            timeout=60,
            what="the worker to run both tasks",
        )
    text = scrape()
    assert value(text, 'qt_orders_total{side="BUY",strategy="manual"}') == 1
    assert value(text, 'qt_fills_total{market="BTC/USDT",side="BUY"}') == 1
    assert value(text, 'qt_order_transitions_total{status="filled"}') == 1
    assert value(text, 'qt_order_submit_seconds_count{exchange="binance",mode="paper"}') == 1
    ok = 'qt_celery_task_seconds_count{state="SUCCESS",task="trading.tasks.execute_decision"}'
    assert value(text, ok) == 1
    failed = 'qt_celery_task_seconds_count{state="FAILURE",task="trading.tasks.execute_decision"}'
    assert value(text, failed) == 1
    assert value(text, 'qt_candles_ingested_total{market="BTC/USDT",source="t"}') == 1
    # Scrape-time gauges from the database.
    assert value(text, 'qt_kill_switch{scope="global"}') == 0
    assert value(text, 'qt_ingest_last_tick_age_seconds{market="BTC/USDT"}') is not None


@pytest.mark.django_db
def test_it_reports_messages_waiting_in_the_celery_queue() -> None:
    from quantum.tasks import heartbeat

    with app.connection_for_write() as conn:
        conn.default_channel.client.delete("celery")
    try:
        heartbeat.delay()
        heartbeat.delay()
        assert value(scrape(), 'qt_celery_queue_length{queue="celery"}') == 2
    finally:
        with app.connection_for_write() as conn:
            conn.default_channel.client.delete("celery")


@pytest.mark.django_db
def test_it_counts_cache_hits_and_misses() -> None:
    cache.set("probe", "1")
    cache.get("probe")
    cache.get("probe")
    cache.get("absent")
    text = scrape()
    assert value(text, 'qt_cache_requests_total{cache="default",result="hit"}') >= 2
    assert value(text, 'qt_cache_requests_total{cache="default",result="miss"}') >= 1


@pytest.mark.django_db
def test_a_histogram_is_exported_with_cumulative_buckets() -> None:
    child = INFERENCE_LATENCY.labels(market="BTC/USDT")
    for seconds in (0.003, 0.02, 0.02, 30.0):
        child.observe(seconds)
    text = scrape()
    series = 'qt_model_inference_seconds_bucket{le="%s",market="BTC/USDT"}'
    assert value(text, series % "0.005") == 1
    assert value(text, series % "0.025") == 3
    assert value(text, series % "10.0") == 3
    assert value(text, series % "+Inf") == 4
    assert value(text, 'qt_model_inference_seconds_count{market="BTC/USDT"}') == 4
    assert value(text, 'qt_model_inference_seconds_sum{market="BTC/USDT"}') == pytest.approx(30.043)


@pytest.fixture
def exposed(market) -> set[str]:  # type: ignore[no-untyped-def]
    return exposed_names(scrape()) | {"up"}  # `up` is Prometheus's own


def _alert_rules() -> list[dict]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_every_alert_rule_uses_metrics_the_platform_exports(exposed: set[str]) -> None:
    rules = _alert_rules()
    assert len(rules) >= 15
    for rule in rules:
        names = metric_names_in(rule["expr"]) | ({"up"} if "up{" in rule["expr"] else set())
        assert names, f"{rule['alert']} uses no metric"
        assert names <= exposed, f"{rule['alert']} uses unknown {sorted(names - exposed)}"


def test_every_alert_has_a_severity_a_summary_and_a_runbook_section() -> None:
    runbook = (Path(settings.BASE_DIR) / "docs" / "RUNBOOK.md").read_text()
    headings = {h.strip().lower() for h in re.findall(r"^#+ (.+)$", runbook, re.MULTILINE)}
    for rule in _alert_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert anchor == rule["alert"].lower()
        assert anchor in headings, f"docs/RUNBOOK.md has no section for {rule['alert']}"


def test_every_dashboard_panel_queries_metrics_the_platform_exports(exposed: set[str]) -> None:
    datasource = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]["uid"]
    dashboards = list((DEPLOY / "grafana" / "dashboards").glob("*.json"))
    assert dashboards
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == datasource
            for target in panel["targets"]:
                names = metric_names_in(target["expr"])
                assert names and names <= exposed, f"{panel['title']}: {names - exposed}"


def test_prometheus_scrapes_the_web_service_with_the_token_and_loads_the_rules() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    job = config["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"]["credentials_file"] == "/run/secrets/qt_metrics_token"
    assert job["static_configs"][0]["targets"] == ["web:8000"]
