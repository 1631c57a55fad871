"""A real Celery worker for tests, on its own queue, with its JSON log captured to a file."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from django.conf import settings

from quantum.processes import child_env, process_stop


@contextlib.contextmanager
def celery_worker(log_path: Path) -> Iterator[str]:
    """Start a solo worker consuming a fresh queue; yield the queue name."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "quantum",
                "worker",
                "-Q",
                queue,
                "-P",
                "solo",
                "-l",
                "INFO",
                "-n",
                f"{queue}@%h",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=settings.BASE_DIR,
            env=child_env(QT_LOG_LEVEL="INFO"),
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: b" ready." in log_path.read_bytes(), timeout=60, what="worker start")
            yield queue
        finally:
            process_stop(proc, timeout=15)


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON log lines of a captured log (other lines, e.g. Celery's banner, skipped)."""
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(raw)
            if isinstance(record, dict):
                lines.append(record)
    return lines
