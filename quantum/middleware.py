"""Request ids: accept X-Request-ID (or make one), expose it to logs, return it.

The request id also starts the correlation id of the work the request causes: tasks it
enqueues carry it (see quantum/logging.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from quantum.logging import correlation_id_var, request_id_var, valid_id


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # An id from outside is kept only if it is short and plain (no spaces or markup),
        # so a client cannot forge log fields; anything else gets a fresh id.
        rid = valid_id(request.headers.get("X-Request-ID", "")) or uuid.uuid4().hex
        token = request_id_var.set(rid)
        ctoken = correlation_id_var.set(rid)
        try:
            response = self.get_response(request)
        finally:
            correlation_id_var.reset(ctoken)
            request_id_var.reset(token)
        response["X-Request-ID"] = rid
        return response
