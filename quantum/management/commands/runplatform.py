"""`make run`: the embedded Redis (if needed), bootstrap, then web, worker, beat and Flower."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from quantum.bootstrap import platform_bootstrap
from quantum.embedded import redis_start


class Command(BaseCommand):
    help = "Run the whole platform: ASGI server, Celery worker, Celery beat and Flower."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=settings.QT_PORT)
        parser.add_argument("--no-bootstrap", action="store_true")
        parser.add_argument(
            "--no-data", action="store_true", help="bootstrap without backfill and training"
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.stopping = False
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        redis_proc = None
        try:
            if settings.EMBEDDED_REDIS:
                redis_proc = redis_start(settings.REDIS_SOCKET)
                self.stdout.write(f"Embedded Redis on unix socket {settings.REDIS_SOCKET}")
                if redis_proc is not None:
                    self.children.append(("redis", redis_proc))
            db = settings.DATABASES["default"]
            self.stdout.write(f"Database: {db['ENGINE'].rsplit('.', 1)[-1]} {db['NAME']}")
            if not opts["no_bootstrap"]:
                platform_bootstrap(say=self.stdout.write, data=not opts["no_data"])
            from marketdata.services.streams import market_stream_enabled

            # The candle stream only for live exchange data: not in replay, not with --no-data.
            self.market_stream = not opts["no_data"] and market_stream_enabled()
            self._start_processes(opts["port"])
            self.stdout.write(
                f"Quantum Trader is up: http://127.0.0.1:{opts['port']}/ (paper mode). "
                "Ctrl-C stops everything."
            )
            self._watch()
        except _Stop:
            pass
        finally:
            self._stop_all()
        if self.exit_code:
            sys.exit(self.exit_code)

    exit_code = 0

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        # Own session: the supervisor decides when children stop, in order.
        proc = subprocess.Popen(argv, start_new_session=True, env=env)
        self.children.append((name, proc))

    def _start_processes(self, port: int) -> None:
        py = sys.executable
        if not settings.QT_FLOWER_PASSWORD:
            # Known only to this run's web process (which proxies /flower/) and to Flower.
            os.environ["QT_FLOWER_PASSWORD"] = secrets.token_urlsafe(24)
            settings.QT_FLOWER_PASSWORD = os.environ["QT_FLOWER_PASSWORD"]
        self._spawn(
            "web",
            [py, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "quantum.asgi:application"],
        )
        self._spawn(
            "worker",
            [
                py,
                "-m",
                "celery",
                "-A",
                "quantum",
                "worker",
                "-l",
                "INFO",
                "--concurrency",
                "2",
                "-n",
                f"worker-{os.getpid()}@%h",
            ],
        )
        self._spawn(
            "beat",
            [
                py,
                "-m",
                "celery",
                "-A",
                "quantum",
                "beat",
                "-l",
                "INFO",
                "-S",
                "quantum.beat:DatabaseScheduler",
                "--pidfile",
                "",
            ],
        )
        self._spawn("flower", flower_argv(py), env=flower_env())
        # Websocket user streams: idle while only paper accounts exist (nothing to connect,
        # nothing that could fail), and picking up a testnet/live account with keys within
        # QT_STREAM_REFRESH_S of its creation. Polling on beat runs either way; /ready
        # reports each account's stream (quantum/health.py).
        manage = str(settings.BASE_DIR / "manage.py")
        self._spawn("streams", [py, manage, "stream_accounts"])
        if getattr(self, "market_stream", False):
            # Closed candles seconds after they close; beat's ingest stays the safety net.
            self._spawn("market-stream", [py, manage, "stream_markets"])

    def _watch(self) -> None:
        parent = os.getppid()
        while not self.stopping:
            if os.getppid() != parent:
                # Whoever started us (make, a shell) is gone: a SIGTERM to `make run` stops
                # make without passing the signal on, so the platform stops with it.
                self.stderr.write("parent process exited; stopping everything")
                return
            for name, proc in self.children:
                if proc.poll() is not None:
                    self.stderr.write(f"{name} exited with {proc.returncode}; stopping everything")
                    self.exit_code = 1
                    return
            time.sleep(0.5)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if not self.stopping:
            self.stopping = True
            raise _Stop

    def _stop_all(self) -> None:
        self.stopping = True
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # Web, worker and beat first, Redis last (they talk to it on the way out).
        apps = [c for c in self.children if c[0] != "redis"]
        for group in (apps, [c for c in self.children if c[0] == "redis"]):
            # SIGTERM to each main process only: a Celery worker then shuts down warm,
            # finishing the tasks it is running and stopping its own pool. A SIGTERM to the
            # whole group would kill the pool processes mid-task (WorkerLostError).
            for _, proc in group:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
            for name, proc in group:
                timeout = STOP_TIMEOUT_S.get(name, 20)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.stderr.write(f"{name} did not stop in {timeout}s; killing it")
                # Anything left in the child's process group (a worker's pool) goes with it.
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        self.stdout.write("All processes stopped.")


# A warm worker shutdown waits for running tasks (an order being placed, a training run).
STOP_TIMEOUT_S = {"worker": 60}

FLOWER_MAX_TASKS = 10_000


def flower_env() -> dict[str, str]:
    """Flower's basic auth from the settings, in its environment (not on a visible argv)."""
    env = dict(os.environ)
    env["FLOWER_BASIC_AUTH"] = f"{settings.QT_FLOWER_USER}:{settings.QT_FLOWER_PASSWORD}"
    # Flower keeps every task it has seen in memory, 100,000 by default (~4 KB each, found by
    # the soak test); the platform's own history is in the database, so it keeps fewer.
    env.setdefault("FLOWER_MAX_TASKS", str(FLOWER_MAX_TASKS))
    return env


def flower_argv(python: str) -> list[str]:
    """Flower on loopback under /flower: people reach it only through the platform's view."""
    return [
        python,
        "-m",
        "celery",
        "-A",
        "quantum",
        "flower",
        "--address=127.0.0.1",
        f"--port={settings.QT_FLOWER_PORT}",
        "--url_prefix=flower",
    ]


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)


class _Stop(Exception):
    pass
