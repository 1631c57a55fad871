"""One rate limit per exchange account, shared by every worker on every host (Redis).

A token bucket in a Lua script: the check and the take are one atomic step, so N workers
never spend more than the exchange allows between them. 429/418 answers add a back-off
window that every worker respects.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.core.cache import cache

# KEYS[1] bucket; ARGV: capacity, refill per second, cost, now (s). Returns wait in ms (0: taken).
_TAKE = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
else
  wait = math.ceil((cost - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 60)
return wait
"""


class RateLimited(Exception):
    """No budget within the allowed wait (or the exchange told us to back off)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Bucket:
    name: str  # e.g. "binance:account-3"
    capacity: float  # weight units
    per_second: float  # refill rate

    def _client(self):  # type: ignore[no-untyped-def]
        return cache._cache.get_client(write=True)  # type: ignore[attr-defined]

    def take(self, cost: float = 1, *, max_wait: float = 5.0) -> None:
        """Spend `cost` weight, waiting for refill up to `max_wait` seconds, else raise."""
        deadline = time.monotonic() + max_wait
        client = self._client()
        script = client.register_script(_TAKE)
        while True:
            backoff = client.ttl(f"ratelimit:backoff:{self.name}")
            if backoff and backoff > 0:
                raise RateLimited(f"{self.name} is backing off for {backoff}s", backoff)
            wait_ms = int(
                script(
                    keys=[f"ratelimit:bucket:{self.name}"],
                    args=[self.capacity, self.per_second, cost, time.time()],
                )
            )
            if wait_ms == 0:
                return
            if time.monotonic() + wait_ms / 1000 > deadline:
                raise RateLimited(f"{self.name} has no budget for weight {cost}", wait_ms / 1000)
            time.sleep(wait_ms / 1000)

    def back_off(self, seconds: float) -> None:
        """Every worker stops calling this exchange account for `seconds`."""
        self._client().set(f"ratelimit:backoff:{self.name}", "1", ex=max(1, int(seconds)))

    def headroom(self) -> float:
        client = self._client()
        tokens, at = client.hmget(f"ratelimit:bucket:{self.name}", "tokens", "at")
        if tokens is None:
            return self.capacity
        refill = max(0.0, time.time() - float(at)) * self.per_second
        return min(self.capacity, float(tokens) + refill)
