"""Deploy helpers: migrations under a lock, container healthchecks, the compose file."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from quantum.healthcheck import main as healthcheck
from quantum.services import HEARTBEAT_KEY, heartbeat_record

ROOT = Path(settings.BASE_DIR)
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.mark.django_db
def test_migrate_locked_applies_migrations_and_releases_its_lock(capsys) -> None:
    call_command("migrate_locked", verbosity=0)
    call_command("migrate_locked", verbosity=0)  # a second deployer gets the lock too
    assert capsys.readouterr().out.count("migrations applied") == 2
    if connection.vendor == "postgresql":
        from quantum.management.commands.migrate_locked import LOCK_KEY

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
            assert cursor.fetchone()[0] is True
            cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])


def test_the_beat_healthcheck_follows_the_heartbeat(capsys) -> None:
    assert healthcheck("beat") == 1
    heartbeat_record(component="beat")
    assert healthcheck("beat") == 0
    old = timezone.now() - settings.QT_HEARTBEAT_MAX_AGE - timedelta(seconds=5)
    cache.set(HEARTBEAT_KEY.format(component="beat"), old.isoformat(), 60)
    assert healthcheck("beat") == 1
    assert "no beat heartbeat yet" in capsys.readouterr().out


def test_compose_runs_migrations_once_before_the_apps_and_keeps_secrets_in_files() -> None:
    services = COMPOSE["services"]
    assert services["migrate"]["command"] == "python manage.py migrate_locked"
    assert services["migrate"]["restart"] == "no"
    for name in ("web",):
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
    env = services["web"]["environment"]
    assert "DJANGO_SECRET_KEY" not in env and "QT_FERNET_KEY" not in env
    assert env["DJANGO_SECRET_KEY_FILE"] == "/run/secrets/django_secret_key"
    assert set(COMPOSE["secrets"]) >= {"django_secret_key", "qt_fernet_key", "qt_metrics_token"}
    for name in ("postgres", "redis", "web", "worker", "beat"):
        assert services[name]["restart"] == "unless-stopped"
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
    assert {"postgres-data", "qt-var", "redis-data"} <= set(COMPOSE["volumes"])


def test_the_monitoring_profile_loads_the_repository_rules_and_dashboards() -> None:
    services = COMPOSE["services"]
    assert services["prometheus"]["profiles"] == ["monitoring"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    assert services["grafana"]["profiles"] == ["monitoring"]
    volumes = services["grafana"]["volumes"]
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in volumes
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in volumes
    # Grafana's provisioning points where compose mounts the dashboards, and its datasource at
    # the prometheus service, on the port Prometheus listens on in that container.
    provider = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/dashboards.yml").read_text()
    )["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    datasource = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    assert "127.0.0.1:9090:9090" in services["prometheus"]["ports"]
    assert services["grafana"]["depends_on"] == ["prometheus"]


def test_compose_and_systemd_run_the_websocket_streams_with_a_healthcheck() -> None:
    services = COMPOSE["services"]
    assert services["streams"]["command"] == "python manage.py stream_accounts"
    assert services["streams"]["healthcheck"]["test"][-1] == "streams"
    assert services["streams"]["restart"] == "unless-stopped"
    # The market stream exits 0 where it is off, so only a failure restarts it.
    assert services["market-stream"]["command"] == "python manage.py stream_markets --if-enabled"
    assert services["market-stream"]["restart"] == "on-failure"
    systemd = ROOT / "deploy" / "systemd"
    target = (systemd / "quantum-trader.target").read_text()
    for unit, command in (
        ("quantum-streams.service", "manage.py stream_accounts\n"),
        ("quantum-market-stream.service", "manage.py stream_markets --if-enabled\n"),
    ):
        assert unit in target
        text = (systemd / unit).read_text()
        assert command in text.split("ExecStart=", 1)[1]
        assert "PartOf=quantum-trader.target" in text
    assert "Restart=on-failure" in (systemd / "quantum-market-stream.service").read_text()
