"""JSON log lines carrying the request id and the correlation id of the work being done.

Two ids, two scopes:

- ``request_id``: one HTTP request (``X-Request-ID``, accepted or generated, returned).
- ``correlation_id``: one chain of work. An HTTP request starts one (equal to its request
  id); a task sent by beat starts one (its own task id). Every Celery task published while
  a correlation id is set carries it in the ``qt_correlation_id`` message header, and the
  worker restores it before the task runs — so the candle's ingest, the signal, the order,
  the fill and the Channels push of one decision log the same id, across processes.

Level policy: ``QT_LOG_LEVEL`` (INFO) for the root logger; ``QT_LOG_LEVELS`` overrides per
logger (``trading=DEBUG,celery=WARNING``); chatty libraries are kept at WARNING.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
correlation_id_var: ContextVar[str] = ContextVar("correlation_id", default="-")
task_var: ContextVar[str] = ContextVar("task", default="")

HEADER = "qt_correlation_id"
# What an id from outside (a header, a message) may look like: no spaces, quotes or markup,
# so that it cannot forge log fields or reach a page unescaped.
VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

# LogRecord attributes that are not "extra" fields.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "request_id",
    "correlation_id",
    "task",
}


def new_id() -> str:
    return uuid.uuid4().hex


def valid_id(value: object) -> str | None:
    """`value` if it is an acceptable id, else None."""
    return value if isinstance(value, str) and VALID_ID.match(value) else None


@contextlib.contextmanager
def correlation(cid: str | None = None) -> Iterator[str]:
    """Run a block under correlation id `cid` (a new one when None)."""
    value = valid_id(cid) or new_id()
    token = correlation_id_var.set(value)
    try:
        yield value
    finally:
        correlation_id_var.reset(token)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.correlation_id = correlation_id_var.get()
        record.task = task_var.get()
        return True


def _plain(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, ids, then any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", request_id_var.get()),
            "correlation_id": getattr(record, "correlation_id", correlation_id_var.get()),
        }
        task = getattr(record, "task", "")
        if task:
            data["task"] = task
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in data:
                data[key] = _plain(value)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data)


def logger_levels(spec: str) -> dict[str, dict[str, str]]:
    """``"trading=DEBUG,celery=WARNING"`` → LOGGING["loggers"] entries (bad parts raise)."""
    loggers: dict[str, dict[str, str]] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, level = part.partition("=")
        level = level.strip().upper()
        if not sep or not name.strip() or level not in logging.getLevelNamesMapping():
            raise ValueError(f"QT_LOG_LEVELS: {part!r} is not LOGGER=LEVEL")
        loggers[name.strip()] = {"level": level}
    return loggers


# --- Celery: carry the correlation id in the message headers -----------------------------


def _on_publish(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    cid = correlation_id_var.get()
    if headers is not None and cid != "-" and not headers.get(HEADER):
        headers[HEADER] = cid


def _on_prerun(task_id: str = "", task: Any = None, **kwargs: Any) -> None:
    incoming = valid_id(getattr(task.request, HEADER, None)) if task is not None else None
    # A task nobody correlated (sent by beat) starts its own chain, named by its task id.
    correlation_id_var.set(incoming or valid_id(task_id) or new_id())
    task_var.set(getattr(task, "name", "") or "")


def _on_postrun(**kwargs: Any) -> None:
    correlation_id_var.set("-")
    task_var.set("")


def connect_celery_signals() -> None:
    """Idempotent; called from quantum/celery.py so every worker and publisher has it."""
    from celery.signals import before_task_publish, task_postrun, task_prerun

    before_task_publish.connect(_on_publish, weak=False, dispatch_uid="qt-cid-publish")
    task_prerun.connect(_on_prerun, weak=False, dispatch_uid="qt-cid-prerun")
    task_postrun.connect(_on_postrun, weak=False, dispatch_uid="qt-cid-postrun")
