"""Toasts for htmx answers: an `HX-Trigger` event that static/js/app.js shows in #toasts.

Full pages show Django messages in the base layout's toast area; an htmx swap has no layout,
so its messages (and explicit toasts) travel in the `HX-Trigger` header instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.http import HttpRequest
from django.http.response import HttpResponseBase

LEVELS = ("info", "success", "warning", "error")


def toast_trigger(response: HttpResponseBase, *, level: str, message: str) -> HttpResponseBase:
    """Add a toast to the response's HX-Trigger events (kept alongside any others)."""
    if level not in LEVELS:
        raise ValueError(f"toast level must be one of {', '.join(LEVELS)}, not {level!r}")
    raw = response.get("HX-Trigger") or "{}"
    try:
        events: dict[str, Any] = json.loads(raw) if raw.startswith("{") else {raw: None}
    except ValueError:
        events = {raw: None}
    items = events.setdefault("toasts", {"items": []})["items"]
    items.append({"level": level, "message": message})
    response["HX-Trigger"] = json.dumps(events)
    return response


class HtmxMessagesMiddleware:
    """Messages added while answering an htmx swap become toasts on that page at once.

    Without it they would wait in the session and pop up on some later full page. Redirects
    are left alone: the browser follows them and the page they lead to shows the messages.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if not getattr(request, "htmx", False) or 300 <= response.status_code < 400:
            return response
        storage = messages.get_messages(request)
        if getattr(storage, "used", True):  # the partial rendered them itself
            return response
        for message in storage:  # iterating marks them shown: they are not kept for later
            level = next((t for t in message.tags.split() if t in LEVELS), "info")
            toast_trigger(response, level=level, message=str(message.message))
        return response
