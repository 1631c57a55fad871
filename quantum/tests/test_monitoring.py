"""The compose `monitoring` profile's Prometheus, run for real.

Debian's Prometheus and promtool (package `prometheus`, 2.42; the compose image is 2.53 and
reads the same configuration) load the repository's own files:

- promtool checks deploy/prometheus/alerts.yml and runs its unit tests
  (deploy/prometheus/alerts.test.yml), which show every alert firing on its condition;
- a Prometheus started from deploy/prometheus/prometheus.yml, with only its container paths
  and its target rewritten for this machine, scrapes a live Daphne's /metrics with the
  bearer token, loads every alert group with no rule in error, and evaluates every query of
  the Grafana dashboards.

Grafana itself is not packaged by Debian and its image registry is out of reach here, so the
dashboards are checked through the queries they send, against this real Prometheus.
In CI (CI=true) a missing Prometheus fails these tests instead of skipping them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings

from quantum.processes import database_url
from quantum.tests.servers import daphne_server, free_port, in_ci, wait_until
from quantum.tests.test_metrics import _bar, metric_names_in, sampled_names

DEPLOY = Path(settings.BASE_DIR) / "deploy"
PROMETHEUS, PROMTOOL = shutil.which("prometheus"), shutil.which("promtool")
MISSING = "Prometheus not installed (apt-get install prometheus)"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not (PROMETHEUS and PROMTOOL) and not in_ci(), reason=MISSING),
]


def _tools() -> tuple[str, str]:
    if not (PROMETHEUS and PROMTOOL):
        pytest.fail(f"CI=true and {MISSING}: the monitoring tests must run in CI")
    return PROMETHEUS, PROMTOOL


def _alert_names() -> list[str]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule["alert"] for group in doc["groups"] for rule in group["rules"]]


def _dashboard_queries() -> list[tuple[str, str]]:
    queries = []
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            queries += [(panel["title"], target["expr"]) for target in panel["targets"]]
    return queries


def _promtool(*args: str) -> str:
    """promtool's output; the test fails with it where promtool says no."""
    _, promtool = _tools()
    run = subprocess.run(
        [promtool, *args],
        cwd=DEPLOY / "prometheus",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def test_promtool_accepts_the_alert_rules_and_every_alert_passes_its_unit_tests() -> None:
    rules_dir = DEPLOY / "prometheus"
    checked = _promtool("check", "rules", "alerts.yml")
    assert f"SUCCESS: {len(_alert_names())} rules found" in checked
    assert "SUCCESS" in _promtool("test", "rules", "alerts.test.yml")
    # Every alert is shown firing at least once (its rendered summary included).
    tests = yaml.safe_load((rules_dir / "alerts.test.yml").read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert set(_alert_names()) <= fired, (
        f"alerts without a unit test: {set(_alert_names()) - fired}"
    )


def _get(url: str, **params: str) -> Any:
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.load(reply)


def _prometheus_config(target: str, token_file: Path) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with only the container specifics rewritten: where the
    rules and the token file are, which host:port to scrape, and faster intervals."""
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    config["rule_files"] = [str(DEPLOY / "prometheus" / "alerts.yml")]
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    (job,) = config["scrape_configs"]
    assert job["authorization"]["credentials_file"] == "/run/secrets/qt_metrics_token"
    job["authorization"]["credentials_file"] = str(token_file)
    assert job["static_configs"] == [{"targets": ["web:8000"]}]
    job["static_configs"] = [{"targets": [target]}]
    return config


@pytest.fixture
def platform_web(market, paper_account, tmp_path: Path) -> Iterator[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """A live Daphne on the test database, guarding /metrics with a token, after a bar was
    stored and a paper order filled (so orders, fills and latencies have samples)."""
    from quantum.services import heartbeat_record
    from quantum.synthetic import audit_chain_check
    from trading.tasks import execute_decision

    _bar(market, datetime(2024, 1, 1, tzinfo=UTC))
    execute_decision(paper_account.pk, market.pk, "BUY", "1", "monitoring-1", "105")
    heartbeat_record(component="worker")
    heartbeat_record(component="beat")
    audit_chain_check()
    token = secrets.token_urlsafe(24)
    env = dict(
        os.environ, DATABASE_URL=database_url(), DJANGO_DEBUG="false", QT_METRICS_TOKEN=token
    )
    with daphne_server(env, tmp_path / "daphne.log") as url:
        yield url, token


@pytest.mark.django_db(transaction=True)
def test_prometheus_scrapes_the_platform_with_its_token_and_evaluates_every_rule_and_panel(
    platform_web: tuple[str, str], tmp_path: Path
) -> None:
    prometheus, _ = _tools()
    web, token = platform_web
    # The token is required: Prometheus on loopback gets nothing without it.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{web}/metrics", timeout=10)
    assert refused.value.code == 403
    request = urllib.request.Request(f"{web}/metrics", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        exposition = reply.read().decode()
    sampled = sampled_names(exposition)

    token_file = tmp_path / "qt_metrics_token"
    token_file.write_text(token)
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(_prometheus_config(web.split("//", 1)[1], token_file)))
    _promtool("check", "config", str(config_file))

    port = free_port()
    api = f"http://127.0.0.1:{port}/api/v1"
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                prometheus,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def ready() -> bool:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            try:
                return _get(f"{api}/status/buildinfo")["status"] == "success"
            except OSError:
                return False

        wait_until(ready, "Prometheus to start", timeout=60)

        def target() -> dict[str, Any]:
            active = _get(f"{api}/targets")["data"]["activeTargets"]
            assert len(active) <= 1, active
            return active[0] if active else {"health": "unknown"}

        wait_until(lambda: target()["health"] != "unknown", "the first scrape", timeout=60)
        assert target()["health"] == "up", target()["lastError"]
        (up,) = _get(f"{api}/query", query='up{job="quantum-trader"}')["data"]["result"]
        assert up["value"][1] == "1"
        # Prometheus parsed the whole exposition: every sampled series name is stored.
        wait_until(
            lambda: len(_get(f"{api}/query", query="up[5s]")["data"]["result"][0]["values"]) >= 3,
            "three scrapes",
            timeout=60,
        )
        stored = set(_get(f"{api}/label/__name__/values")["data"])
        assert sampled <= stored, f"not stored: {sorted(sampled - stored)}"

        # Every alert group loads, and once evaluated no rule is in error.
        groups_file = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]

        def rule_groups() -> list[dict[str, Any]]:
            return _get(f"{api}/rules")["data"]["groups"]

        def evaluated() -> bool:
            return all(r["health"] != "unknown" for g in rule_groups() for r in g["rules"])

        wait_until(evaluated, "every rule to be evaluated", timeout=60)
        loaded = rule_groups()
        assert sorted(g["name"] for g in loaded) == sorted(g["name"] for g in groups_file)
        rules = [r for g in loaded for r in g["rules"]]
        assert sorted(r["name"] for r in rules) == sorted(_alert_names())
        broken = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
        assert not broken, broken
        # The only bar stored is from 2024: the rule watching hourly ingest lag has noticed
        # (pending for its 10 minutes), on the platform's real series.
        alerts = _get(f"{api}/alerts")["data"]["alerts"]
        lagging = [a for a in alerts if a["labels"]["alertname"] == "QTIngestLagging"]
        assert [a["labels"]["market"] for a in lagging] == ["BTC/USDT"], alerts

        # Every dashboard query evaluates; those over series the platform exported return data.
        answered = set()
        for title, expr in _dashboard_queries():
            reply = _get(f"{api}/query", query=expr)
            assert reply["status"] == "success", (title, expr, reply)
            if metric_names_in(expr) <= sampled:
                assert reply["data"]["result"], f"{title}: {expr} returned nothing"
                answered.add(title)
        # What this test made happen (a bar, a filled paper order, heartbeats, an audit walk,
        # HTTP requests) shows on these panels; the rest need tasks run by a worker, a live
        # exchange account or a model with drift data.
        assert {
            "Worker heartbeat age",
            "Beat heartbeat age",
            "Kill switch",
            "Audit chain intact",
            "Audit chain entries",
            "Open critical incidents",
            "HTTP requests by status",
            "HTTP latency p95 by view",
            "Celery queue depth",
            "Ingest lag / last tick age",
            "Candles ingested / rejected",
            "Orders and fills",
            "Order submit latency",
        } <= answered, answered
    finally:
        proc.terminate()
        proc.wait(timeout=30)
