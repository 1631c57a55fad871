"""Django's Redis cache, counting hits and misses (qt_cache_requests_total)."""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.redis import RedisCache

_MISSING = object()


class InstrumentedRedisCache(RedisCache):
    """Counts every `get` as a hit or a miss; everything else is Django's RedisCache."""

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        from quantum.metrics import CACHE_REQUESTS

        value = super().get(key, _MISSING, version)
        CACHE_REQUESTS.labels(cache="default", result="miss" if value is _MISSING else "hit").inc()
        return default if value is _MISSING else value
