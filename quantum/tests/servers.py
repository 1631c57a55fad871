"""Real servers for tests: Daphne serving the platform on the test database."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ASGI_APP = "quantum.asgi:application"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_ci() -> bool:
    """CI=true: tests that need a system package (chromium, prometheus) fail, not skip."""
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


@contextlib.contextmanager
def daphne_server(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """Daphne in its own process; yields its base URL. Its log goes to `log_path`: an unread
    pipe would fill up (64 KiB) and then block it."""
    port = free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), ASGI_APP],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def listening() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"daphne exited: {log_path.read_text(errors='replace')[-2000:]}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_until(listening, "daphne to listen", timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
