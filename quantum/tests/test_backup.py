"""Backup and restore: checksums, a fresh database with the same rows and an intact chain."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from marketdata.services.ingestion import candles_ingest
from models_registry.models import ModelVersion
from quantum.backups import EXCLUDED
from quantum.processes import child_env
from risk.models import AuditEvent
from risk.services.audit import audit_head
from trading.models import Fill, Order, Signal
from trading.services.execution import signal_act
from trading.tests.factories import SignalFactory

COUNT_SCRIPT = """
import json
from django.apps import apps
from risk.services.audit import audit_verify
from models_registry.models import ModelVersion
print(json.dumps({
    "counts": {m._meta.label_lower: m._base_manager.count() for m in apps.get_models()},
    "audit": audit_verify(expect_head=(EXPECT_SEQ, "EXPECT_HASH")),
    "paths": list(ModelVersion.objects.values_list("path", flat=True)),
}))
"""


@pytest.fixture
def trading_history(market, paper_account, alice, settings, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Candles, a model with its artifact, a signal, an order, a fill and their audit trail."""
    settings.QT_ARTIFACT_DIR = tmp_path / "artifacts"
    settings.QT_ARTIFACT_DIR.mkdir()
    start = datetime(2024, 1, 1, tzinfo=UTC)
    rows = [
        {
            "open_time": (start + timedelta(hours=i)).isoformat(),
            "open": "100",
            "high": "200",
            "low": "90",
            "close": str(100 + i),
            "volume": "3.5",
        }
        for i in range(48)
    ]
    candles_ingest(market=market, timeframe="1h", rows=rows, source="test")
    artifact = settings.QT_ARTIFACT_DIR / "binance_BTCUSDT_1h_v1.json"
    artifact.write_bytes(b'{"learner": "not a real booster, bytes are what matter"}')
    ModelVersion.objects.create(
        version=99,
        market_group="binance:BTC/USDT",
        timeframe="1h",
        path=str(artifact),
        sha256="0" * 64,
        feature_set="test",
        feature_set_hash="f" * 64,
        trained_at=timezone.now(),
    )
    order = signal_act(
        account=paper_account,
        signal=SignalFactory(market=market, action=Signal.Action.BUY, price=Decimal("147")),
    )
    assert order is not None and order.status == Order.Status.FILLED
    assert Fill.objects.count() == 1 and AuditEvent.objects.count() > 3
    return artifact


def _counts() -> dict[str, int]:
    return {
        m._meta.label_lower: m._base_manager.count()
        for m in apps.get_models()
        if m._meta.label_lower not in EXCLUDED
    }


@pytest.fixture
def fresh_database_url(tmp_path: Path) -> Iterator[str]:
    """A new, empty database of the same kind as the test database."""
    if connection.vendor == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        return
    import psycopg

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    name = f"qt_restore_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(**{**params, "dbname": "postgres"}, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    db = connection.settings_dict
    yield (
        f"postgres://{db['USER']}:{db.get('PASSWORD') or ''}@"
        f"{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{name}"
    )
    with psycopg.connect(**{**params, "dbname": "postgres"}, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _manage(*args: str, database_url: str, artifacts: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=Path(__file__).resolve().parents[2],
        env=child_env(DATABASE_URL=database_url, QT_ARTIFACT_DIR=str(artifacts)),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_backup_restored_into_a_fresh_database_has_the_same_rows_and_an_intact_chain(
    trading_history, fresh_database_url, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "backup"
    call_command("backup", out=out, verbosity=0)
    expected = _counts()
    seq, head_hash = audit_head()

    restored_artifacts = tmp_path / "restored-artifacts"
    done = _manage(
        "restore",
        "--from",
        str(out),
        "--json",
        database_url=fresh_database_url,
        artifacts=restored_artifacts,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["audit"] == f"{seq} entries, chain intact"

    check = _manage(
        "shell",
        "-c",
        COUNT_SCRIPT.replace("EXPECT_SEQ", str(seq)).replace("EXPECT_HASH", head_hash),
        database_url=fresh_database_url,
        artifacts=restored_artifacts,
    )
    assert check.returncode == 0, check.stderr
    fresh = json.loads(check.stdout.strip().splitlines()[-1])
    assert {k: v for k, v in fresh["counts"].items() if k not in EXCLUDED} == expected
    assert fresh["audit"] == [True, f"{seq} entries, chain intact"]
    restored = restored_artifacts / trading_history.name
    assert restored.read_bytes() == trading_history.read_bytes()
    assert str(restored) in fresh["paths"]


def test_it_refuses_a_corrupted_backup_and_changes_nothing(trading_history, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "backup"
    call_command("backup", out=out, verbosity=0)
    dump = out / "db" / "risk.auditevent.qtjson.gz"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(data)
    before = _counts()

    with pytest.raises(CommandError, match=r"backup is corrupted: db/risk\.auditevent\.qtjson\.gz"):
        call_command("restore", source=out)
    with pytest.raises(CommandError, match="does not match its checksum"):
        call_command("backup", verify=out)
    assert _counts() == before


def test_it_refuses_a_tampered_manifest(trading_history, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "backup"
    call_command("backup", out=out, verbosity=0)
    manifest = out / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"rows": ', '"rows": 1', 1))
    with pytest.raises(CommandError, match=r"manifest\.json does not match its checksum"):
        call_command("restore", source=out)


def test_it_refuses_to_restore_over_a_database_that_holds_data(
    trading_history, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "backup"
    call_command("backup", out=out, verbosity=0)
    before = _counts()
    with pytest.raises(CommandError, match="the database is not empty"):
        call_command("restore", source=out)
    assert _counts() == before


def test_it_will_not_write_a_backup_into_a_folder_that_holds_files(tmp_path: Path, db) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "old.txt").write_text("x")
    with pytest.raises(CommandError, match="is not empty"):
        call_command("backup", out=tmp_path)
