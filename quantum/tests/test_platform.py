"""`runplatform` (what `make run` starts) as a user sees it: real processes, HTTP, shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from quantum.tests.servers import free_port

pytestmark = pytest.mark.e2e


def _get(url: str, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, {}


def _processes_mentioning(marker: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in environ or marker in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found


def test_the_platform_comes_up_offline_trades_on_paper_and_stops_cleanly(tmp_path) -> None:
    port = free_port()
    marker = f"qt-platform-test-{port}"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'platform.sqlite3'}",
            "QT_REDIS_SOCKET": str(tmp_path / "redis.sock"),
            "QT_ARTIFACT_DIR": str(tmp_path / "artifacts"),
            "QT_MARKET_SOURCE": "replay",
            "QT_DATA_DIR": str(settings.QT_DATA_DIR),
            "QT_HISTORY_DAYS": "90",
            "QT_REPLAY_INTERVAL": "0.5",
            "QT_PORT": str(port),
            "QT_ADMIN_USER": "admin",
            "QT_ADMIN_PASSWORD": "platform-test-pass",
            "QT_TEST_MARKER": marker,
        }
    )
    log = (tmp_path / "platform.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runplatform"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        status, body = 0, {}
        while time.monotonic() < deadline and proc.poll() is None:
            status, body = _get(f"{base}/ready")
            if status == 200:
                break
            time.sleep(1)
        assert status == 200, f"/ready never turned 200: {body}\n{_tail(tmp_path)}"

        request = urllib.request.Request(
            f"{base}/api/v1/auth/token/",
            method="POST",
            data=json.dumps({"username": "admin", "password": "platform-test-pass"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            token = json.loads(response.read())["token"]

        deadline = time.monotonic() + 150
        signals = fills = 0
        while time.monotonic() < deadline:
            signals = _get(f"{base}/api/v1/signals/", token)[1].get("count", 0)
            fills = _get(f"{base}/api/v1/fills/", token)[1].get("count", 0)
            if signals >= 5 and fills >= 1:
                break
            time.sleep(1)
        assert signals >= 5 and fills >= 1, f"signals={signals} fills={fills}\n{_tail(tmp_path)}"
        assert _get(f"{base}/health")[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, _tail(tmp_path)
    time.sleep(0.5)
    assert _processes_mentioning(marker) == [], "child processes were left running"


def _tail(tmp_path: Path) -> str:
    return "\n".join((tmp_path / "platform.log").read_text().splitlines()[-40:])


def test_ctrl_c_on_make_run_stops_every_process(tmp_path) -> None:
    port = free_port()
    marker = f"qt-make-run-test-{port}"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'platform.sqlite3'}",
            "QT_REDIS_SOCKET": str(tmp_path / "redis.sock"),
            "QT_PORT": str(port),
            "QT_ADMIN_PASSWORD": "make-run-test-pass",
            "QT_TEST_MARKER": marker,
        }
    )
    log = (tmp_path / "platform.log").open("w")
    # A terminal's Ctrl-C sends SIGINT to the whole foreground process group: make and
    # everything it started.
    proc = subprocess.Popen(
        ["make", "run", "RUN_ARGS=--no-data"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if _get(f"http://127.0.0.1:{port}/health")[0] == 200:
                break
            time.sleep(0.5)
        assert _get(f"http://127.0.0.1:{port}/health")[0] == 200, _tail(tmp_path)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    time.sleep(0.5)
    assert _processes_mentioning(marker) == [], "child processes were left running"
    assert "All processes stopped." in (tmp_path / "platform.log").read_text()


# A stand-in for a Celery worker: its "pool process" shares its process group and takes 1.5 s
# to finish its task; on SIGTERM the main process waits for it, as Celery's warm shutdown does.
WARM_WORKER = """
import signal, subprocess, sys, time
task = "import sys, time; time.sleep(1.5); open(sys.argv[1], 'w').write('done')"
pool = subprocess.Popen([sys.executable, "-c", task, sys.argv[1]])
def warm_shutdown(*_):
    sys.exit(pool.wait())
signal.signal(signal.SIGTERM, warm_shutdown)
open(sys.argv[2], "w").write("ready")
time.sleep(60)
"""


def test_stopping_lets_a_worker_finish_its_running_task_then_leaves_nothing(
    tmp_path: Path,
) -> None:
    from quantum.management.commands.runplatform import Command

    done, ready = tmp_path / "done", tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-c", WARM_WORKER, str(done), str(ready)], start_new_session=True
    )
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists(), "the stand-in worker did not start"
    supervisor = Command()
    supervisor.children = [("worker", proc)]
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        supervisor._stop_all()
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])
    # The pool process was not signalled: it finished its task, and its parent exited with it.
    assert done.read_text() == "done"
    assert proc.returncode == 0
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)
