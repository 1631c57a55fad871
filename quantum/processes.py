"""Starting more platform processes (workers) that share this process's database and Redis."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from urllib.parse import quote

from django.conf import settings
from django.db import connection


def database_url() -> str:
    """The URL of the database this process uses now (the test database inside tests)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = quote(db.get("USER") or "")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"])
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{db['NAME']}"


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["DATABASE_URL"] = database_url()
    if settings.EMBEDDED_REDIS:
        env["QT_REDIS_SOCKET"] = str(settings.REDIS_SOCKET)
    else:
        env["REDIS_URL"] = settings.REDIS_URL
    env.update(extra)
    return env


class WorkerProcess:
    """A real Celery worker process on its own queue, which a test or a run can SIGKILL."""

    def __init__(self, queue: str, env: dict[str, str]) -> None:
        self.queue, self.env = queue, env
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "quantum",
                "worker",
                "-Q",
                self.queue,
                "-c",
                "2",
                "-l",
                "WARNING",
                "-n",
                f"{self.queue}-{uuid.uuid4().hex[:6]}@%h",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=settings.BASE_DIR,
            env=self.env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            process_stop(self.proc, timeout=20)


def process_stop(proc: subprocess.Popen, *, timeout: float) -> None:
    """SIGTERM to the main process only (a Celery worker then shuts down warm: its pool
    finishes the running tasks), then SIGKILL to whatever is left of its process group."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
