"""Each venue's request budget, shared by every worker on every host (Redis).

A venue states its limits as windows: at most `limit` units per `seconds`, counted per egress
IP or per account, in request weight, in requests, or in new orders (see `Window`). One Lua
script checks every window of a request and spends on all of them in one atomic step, on
Redis's clock (`TIME`), so N workers never spend more between them than the venue allows, and
their own clocks do not matter. After every response the venue's usage headers correct the
counts (another program on the same IP spent weight we never saw: Binance reports what is
used, Bybit and KuCoin what is left), and a rate-limit answer starts a back-off every worker
respects: for the whole venue and IP (weight limit, IP ban, Bybit's 10006 in a 200, KuCoin's
429000) or for new orders of one account only (order-count limit; cancels and lookups still
go out), as long as the venue says (Retry-After, X-Bapi-Limit-Reset-Timestamp,
gw-ratelimit-reset) or, where it says nothing, as long as its documentation does.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from django.conf import settings
from django.core.cache import cache

Unit = Literal["weight", "request", "order"]
Scope = Literal["ip", "account"]

# KEYS: [1] the venue+IP back-off, [2] the account's new-order back-off, [3..] one hash per
# window. ARGV: [1] new order (0/1), then per window: cost, limit, slice ms, slices counted,
# guard ms. A window's hash holds one counter per time slice (index: Redis time // slice).
# A rolling window sums its last `counted` slices. An aligned window (counted 1) is the
# venue's own fixed interval: a request taken within `guard` ms of a boundary may reach the
# venue on the other side of it (latency, clock skew), so it must fit, and is counted, on
# both sides. Returns {0, 0} when spent, else {1 no budget | 2 venue back-off | 3 order
# back-off, wait ms}.
_TAKE = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait = redis.call('PTTL', KEYS[1])
if wait > 0 then return {2, wait} end
if ARGV[1] == '1' then
  wait = redis.call('PTTL', KEYS[2])
  if wait > 0 then return {3, wait} end
end
local charges = {}
for i = 3, #KEYS do
  local a = 2 + (i - 3) * 5
  local cost, limit = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local slice, counted, guard = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local cur = math.floor(now / slice)
  if cost > 0 and counted > 1 then
    local used = 0
    local state = redis.call('HGETALL', KEYS[i])
    for j = 1, #state, 2 do
      local idx = tonumber(state[j])
      if idx > cur - counted then
        used = used + tonumber(state[j + 1])
      else
        redis.call('HDEL', KEYS[i], state[j])
      end
    end
    if used + cost > limit then return {1, (cur + 1) * slice - now} end
    charges[#charges + 1] = {KEYS[i], cur, cost, slice * (counted + 1)}
  elseif cost > 0 then
    local targets = {cur}
    if (cur + 1) * slice - now < guard then targets[#targets + 1] = cur + 1 end
    if now - cur * slice < guard then targets[#targets + 1] = cur - 1 end
    for _, idx in ipairs(targets) do
      local used = tonumber(redis.call('HGET', KEYS[i], tostring(idx)) or '0')
      if used + cost > limit then
        if idx < cur then return {1, cur * slice + guard - now} end
        return {1, (cur + 1) * slice + guard - now}
      end
      charges[#charges + 1] = {KEYS[i], idx, cost, slice * 3}
    end
  end
end
for _, c in ipairs(charges) do
  redis.call('HINCRBYFLOAT', c[1], tostring(c[2]), c[3])
  redis.call('PEXPIRE', c[1], c[4])
end
return {0, 0}
"""

# KEYS: one hash per window. ARGV per window: used (as the venue reports it), slice ms,
# slices counted. Raises the current slice so the window's total is at least `used`: the venue
# saw at least that much, and what our workers have in flight it has not counted yet, so a
# lower report never lowers our count.
_OBSERVE = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #KEYS do
  local a = (i - 1) * 3 + 1
  local reported, slice, counted = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local cur = math.floor(now / slice)
  local used = 0
  local state = redis.call('HGETALL', KEYS[i])
  for j = 1, #state, 2 do
    if tonumber(state[j]) > cur - counted then used = used + tonumber(state[j + 1]) end
  end
  if reported > used then
    redis.call('HINCRBYFLOAT', KEYS[i], tostring(cur), reported - used)
    redis.call('PEXPIRE', KEYS[i], slice * (counted + 1))
  end
end
return 0
"""

# KEYS: one hash per window. ARGV per window: limit, slice ms, slices counted. Returns the
# share of each window left, in thousandths.
_HEADROOM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 1, #KEYS do
  local a = (i - 1) * 3 + 1
  local limit, slice, counted = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local cur = math.floor(now / slice)
  local used = 0
  local state = redis.call('HGETALL', KEYS[i])
  for j = 1, #state, 2 do
    if tonumber(state[j]) > cur - counted then used = used + tonumber(state[j + 1]) end
  end
  out[i] = math.floor(math.max(0, limit - used) / limit * 1000)
end
return out
"""

# A rolling window is counted in this many slices, plus the one it started in: a venue window
# of `seconds` anywhere in time lies within them, so ours is never looser than the venue's,
# and at most 1/20 tighter.
_SLICES = 20


class RateLimited(Exception):
    """No budget within the allowed wait (or the venue told us to back off)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Window:
    """At most `limit` units per `seconds`, counted per egress IP or per account.

    `unit`: "weight" is ccxt's cost times the profile's `weight_per_cost`, "request" one per
    request, "order" one per new order (other requests do not count). `aligned`: the venue
    resets the count at each multiple of `seconds` (Binance's intervals), so a fixed window
    matches it and its usage header; otherwise the window rolls and is counted in slices.
    `header`: the response header in which the venue reports the units used in this window.
    `remaining_header` (with `limit_header`): one in which it reports the units left (of the
    limit it names), which counts as the same share of this window used.
    """

    limit: float
    seconds: int
    unit: Unit
    scope: Scope
    aligned: bool = False
    header: str | None = None
    guard_ms: int = 1000  # aligned windows: how near a boundary a request counts on both sides
    remaining_header: str | None = None
    limit_header: str | None = None

    def reported_use(self, headers: Mapping[str, str]) -> float | None:
        """The units used in this window as the venue's (lower-cased) headers report them."""
        try:
            if self.header and self.header in headers:
                return float(headers[self.header])
            if self.remaining_header and self.remaining_header in headers:
                left = float(headers[self.remaining_header])
                of = float(headers.get(self.limit_header or "", self.limit))
                return self.limit * min(1.0, max(0.0, 1 - left / of)) if of > 0 else None
        except ValueError:
            return None
        return None

    @property
    def slice_ms(self) -> int:
        return self.seconds * 1000 if self.aligned else self.seconds * 1000 // _SLICES

    @property
    def counted(self) -> int:
        return 1 if self.aligned else _SLICES + 1


@dataclass(frozen=True)
class Bucket:
    """One account's budget at one venue: its windows, keyed by egress IP or by account."""

    venue: str  # ccxt's id: accounts on one venue share its per-IP windows
    account: str  # the account's id, for per-account windows
    windows: tuple[Window, ...]
    weight_per_cost: float = 1.0  # venue weight per ccxt cost unit
    order_limit_codes: frozenset[str] = frozenset()  # error codes of an order-count 429
    # Other answers that mean "stop": a body code (Bybit's retCode, KuCoin's code) or an HTTP
    # status besides 418/429, with the seconds to wait when the headers do not say.
    backoff_codes: tuple[tuple[str, float], ...] = ()
    backoff_statuses: tuple[tuple[int, float], ...] = ()
    egress_ip: str = field(default_factory=lambda: str(settings.QT_EGRESS_IP))

    @property
    def name(self) -> str:
        return f"{self.venue}:{self.account}"

    def _client(self):  # type: ignore[no-untyped-def]
        return cache._cache.get_client(write=True)  # type: ignore[attr-defined]

    def _key(self, window: Window) -> str:
        owner = f"ip:{self.egress_ip}" if window.scope == "ip" else f"account:{self.account}"
        return f"ratelimit:{self.venue}:{owner}:{window.unit}:{window.seconds}"

    @property
    def venue_backoff_key(self) -> str:
        return f"ratelimit:backoff:{self.venue}:ip:{self.egress_ip}"

    @property
    def order_backoff_key(self) -> str:
        return f"ratelimit:backoff:{self.venue}:account:{self.account}:orders"

    def _cost(self, window: Window, cost: float, new_order: bool) -> float:
        if window.unit == "weight":
            return round(cost * self.weight_per_cost, 6)
        if window.unit == "request":
            return 1.0
        return 1.0 if new_order else 0.0

    def take(self, cost: float = 1, *, new_order: bool = False, max_wait: float = 5.0) -> None:
        """Spend `cost` (ccxt's units) on every window, waiting up to `max_wait` s, else raise."""
        deadline = time.monotonic() + max_wait
        client = self._client()
        script = client.register_script(_TAKE)
        keys = [self.venue_backoff_key, self.order_backoff_key]
        keys += [self._key(w) for w in self.windows]
        args: list[Any] = [1 if new_order else 0]
        for w in self.windows:
            args += [self._cost(w, cost, new_order), w.limit, w.slice_ms, w.counted, w.guard_ms]
        while True:
            status, wait_ms = (int(x) for x in script(keys=keys, args=args))
            if status == 0:
                return
            if status == 2:
                raise RateLimited(
                    f"{self.venue} is backing off for {wait_ms / 1000:.0f}s", wait_ms / 1000
                )
            if status == 3:
                raise RateLimited(
                    f"{self.name}: new orders back off for {wait_ms / 1000:.0f}s", wait_ms / 1000
                )
            if time.monotonic() + wait_ms / 1000 > deadline:
                raise RateLimited(f"{self.name} has no budget for cost {cost}", wait_ms / 1000)
            time.sleep(wait_ms / 1000)

    def observe(self, status: int, headers: Mapping[str, str], body: str | None = None) -> None:
        """Correct the counts from the venue's usage headers; back off on a rate-limit answer."""
        lowered = {k.lower(): v for k, v in headers.items()}
        reported: list[tuple[Window, float]] = []
        for w in self.windows:
            used = w.reported_use(lowered)
            if used is not None:
                reported.append((w, used))
        if reported:
            self._client().register_script(_OBSERVE)(
                keys=[self._key(w) for w, _ in reported],
                args=[x for w, used in reported for x in (used, w.slice_ms, w.counted)],
            )
        code = _error_code(body)
        codes, statuses = dict(self.backoff_codes), dict(self.backoff_statuses)
        if status in (418, 429) or status in statuses or code in codes:
            default = codes.get(code or "") or statuses.get(status) or 60.0
            orders_only = status == 429 and code in self.order_limit_codes
            self.back_off(backoff_seconds(lowered, default), orders_only=orders_only)

    def back_off(self, seconds: float, *, orders_only: bool = False) -> None:
        """Every worker stops calling this venue from this IP (or placing this account's
        new orders, with `orders_only`) for `seconds`; a longer back-off already running stays."""
        key = self.order_backoff_key if orders_only else self.venue_backoff_key
        client = self._client()
        ms = max(1000, math.ceil(seconds * 1000))
        if client.pttl(key) < ms:
            client.set(key, "1", px=ms)

    def backoff_left(self, *, new_order: bool = False) -> float:
        """Seconds until calls (new orders, with `new_order`) may go out again."""
        client = self._client()
        keys = [self.venue_backoff_key] + ([self.order_backoff_key] if new_order else [])
        return max([0.0] + [client.pttl(k) / 1000 for k in keys])

    def headroom(self) -> float:
        """Share of the tightest window left now (1 = untouched, 0 = spent)."""
        if not self.windows:
            return 1.0
        shares = self._client().register_script(_HEADROOM)(
            keys=[self._key(w) for w in self.windows],
            args=[x for w in self.windows for x in (w.limit, w.slice_ms, w.counted)],
        )
        return min(int(s) for s in shares) / 1000


def retry_after_seconds(value: object, default: float = 60.0) -> float:
    """Retry-After in seconds (the venue's word), `default` when it does not say."""
    try:
        return max(1.0, float(str(value)))
    except (TypeError, ValueError):
        return default


def backoff_seconds(headers: Mapping[str, str], default: float = 60.0) -> float:
    """How long the venue's (lower-cased) headers say to wait, `default` when they do not.

    Binance: Retry-After, in seconds (rest-api.md "LIMITS"). Bybit: X-Bapi-Limit-Reset-
    Timestamp, "when your request limit resets if you have exceeded your rate_limit" (epoch
    ms; rate-limit.mdx). KuCoin: gw-ratelimit-reset, the pool's "quota reset countdown
    (milliseconds)" (docs-new "Rate Limit").
    """
    if "retry-after" in headers:
        return retry_after_seconds(headers["retry-after"], default)
    try:
        if "x-bapi-limit-reset-timestamp" in headers:
            left = float(headers["x-bapi-limit-reset-timestamp"]) / 1000 - time.time()
            return left if left > 0 else default
        if "gw-ratelimit-reset" in headers:
            return float(headers["gw-ratelimit-reset"]) / 1000 or default
    except ValueError:
        pass
    return default


def _error_code(body: str | None) -> str | None:
    """The venue's error code in a JSON body: Binance's and KuCoin's "code", Bybit's "retCode"."""
    try:
        data = json.loads(body or "")
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    for name in ("code", "retCode"):
        if name in data:
            return str(data[name])
    return None
