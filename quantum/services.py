"""Process heartbeats, kept in Redis (the cache) so that every host sees them."""

from __future__ import annotations

from datetime import datetime

from django.core.cache import cache
from django.utils import timezone

HEARTBEAT_KEY = "heartbeat:{component}"


def heartbeat_record(*, component: str) -> None:
    """Record that `component` (worker, beat) is alive now."""
    cache.set(HEARTBEAT_KEY.format(component=component), timezone.now().isoformat(), 3600)


def heartbeat_get(*, component: str) -> datetime | None:
    raw = cache.get(HEARTBEAT_KEY.format(component=component))
    return datetime.fromisoformat(raw) if raw else None
