"""The one helper that pushes rendered partials to open pages, after the transaction commits."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.template.loader import render_to_string

logger = logging.getLogger(__name__)

LIVE_GROUP = "live"


def push_html(
    *, template: str, context: dict[str, Any], group: str = LIVE_GROUP, role: str = "viewer"
) -> None:
    """Render `template` and send it to `group` once the current transaction commits.

    `role` is the least role that may see it: the socket (trading/consumers.py) drops it
    for users below it (operator pushes: operators who passed MFA in their session).
    """

    def send() -> None:
        html = render_to_string(template, context)
        try:
            async_to_sync(get_channel_layer().group_send)(
                group, {"type": "push.html", "html": html, "role": role}
            )
        except Exception:
            # The page misses one live update; the data is committed and a reload shows it.
            logger.exception("live push to %s failed", group)
        else:
            logger.info("pushed %s to %s", template, group, extra={"template": template})

    transaction.on_commit(send)


TASK_DONE = ("succeeded", "failed", "skipped", "canceled", "cancelled", "done")


def task_progress_push(
    *,
    kind: str,
    task_id: int,
    percent: int,
    status: str,
    message: str = "",
    refresh_url: str = "",
    role: str = "viewer",
) -> None:
    """Push a long task's progress bar (`quantum/_task_progress.html`) to open pages.

    The bar is the element `#task-<kind>-<task_id>`; a page shows it by including the same
    partial, and each push replaces it out of band. With `refresh_url`, a finished task
    (status in TASK_DONE) makes the page fetch that URL into the bar's `data-refresh-target`
    (`refresh_target` in the page's include) for what the bar alone cannot say (a result).
    """
    push_html(
        template="quantum/push/task_progress.html",
        context={
            "kind": kind,
            "task_id": task_id,
            "percent": max(0, min(100, int(percent))),
            "status": status,
            "message": message,
            "done": status in TASK_DONE,
            "refresh_url": refresh_url,
        },
        role=role,
    )
