"""`python -m benchmarks.soak`: the whole platform replayed fast, then its books checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        "postgresql" not in settings.DATABASES["default"]["ENGINE"]
        or not os.environ.get("REDIS_URL"),
        reason="the soak runs on PostgreSQL + Redis (DATABASE_URL and REDIS_URL set)",
    ),
]


def test_a_short_soak_replays_bars_and_loses_or_duplicates_nothing(tmp_path) -> None:
    env = dict(os.environ, QT_DATA_DIR=str(settings.QT_DATA_DIR))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.soak",
            "--minutes",
            "0.25",
            "--history-days",
            "90",
            "--log-dir",
            str(tmp_path),
            "--json",
        ],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.stdout.strip(), run.stderr[-3000:]
    report = json.loads(run.stdout)
    detail = json.dumps(report, indent=1)[-3000:]
    assert report["bars_processed"] > 0, detail
    assert report["signals"] > 0, detail
    assert report["lost"] == 0, detail
    assert report["duplicates"] == 0, detail
    assert report["audit_chain"]["ok"], detail
    assert report["restarts"] == 0, detail
    assert report["errors"] == 0, detail
    assert report["left_running"] == [], detail
    assert report["database"].endswith("(dropped)"), detail
    # Memory is sampled for every process of the platform, the worker's pool included.
    assert {"supervisor", "web", "worker", "beat", "flower"} <= set(report["memory"]), detail
    assert any(name.startswith("worker-pool-") for name in report["memory"]), detail
