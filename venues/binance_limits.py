"""Binance spot's REST rate limits, enforced and reported as the loopback exchange's own.

From binance/binance-spot-api-docs, rest-api.md "LIMITS":
- "IP Limits": every route has a weight; REQUEST_WEIGHT (enums.md: 6000 per 1 MINUTE) is
  counted per IP ("based on the IPs, not the API keys") and every response carries
  X-MBX-USED-WEIGHT-(intervalNum)(intervalLetter). Over it: 429 (errors.md -1003) with a
  Retry-After; "failing to back off after receiving 429s will result in an automated IP ban
  (HTTP status 418)", bans lasting "from 2 minutes to 3 days", Retry-After giving the seconds
  left. Here the first request that comes back before a 429's Retry-After has passed is banned.
- "Unfilled Order Count": tracked per account; every successful order response carries
  X-MBX-ORDER-COUNT-(intervalNum)(intervalLetter); over it: 429 -1015 "Too many new orders"
  with a Retry-After (new orders only: cancels do not count, faqs/order_count_decrement.md).
  The FAQ: an order's first fill takes one off the count; here only fills in the order's own
  answer do (a resting order that fills later leaves the count as it is).
- Windows are fixed intervals (a count resets at each multiple of the interval, in UTC).
- CHANGELOG 2026-03-27: a successful new order or cancel weighs 0; a failed one its weight.
- /sapi routes have their own limits (not modelled): they weigh nothing here.

Windows and limits are constructor arguments, so tests run them in seconds. Standard library.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from venues.binance_api import Reply, json_reply

# rest-api.md, each endpoint's "Weight:" (klines: 2 whatever the limit in the current docs).
WEIGHTS: dict[tuple[str, str], int] = {
    ("GET", "/api/v3/ping"): 1,
    ("GET", "/api/v3/time"): 1,
    ("GET", "/api/v3/exchangeInfo"): 20,
    ("GET", "/api/v3/klines"): 2,
    ("POST", "/api/v3/order"): 1,
    ("GET", "/api/v3/order"): 4,
    ("DELETE", "/api/v3/order"): 1,
    ("DELETE", "/api/v3/openOrders"): 1,
    ("GET", "/api/v3/allOrders"): 20,
    ("GET", "/api/v3/account"): 20,
    ("GET", "/api/v3/rateLimit/order"): 40,
}
# Any other /api route weighs 1 (the listenKey routes are no longer in the docs).
ZERO_ON_SUCCESS = frozenset(
    {("POST", "/api/v3/order"), ("DELETE", "/api/v3/order"), ("DELETE", "/api/v3/openOrders")}
)
NEW_ORDER = ("POST", "/api/v3/order")


def request_weight(method: str, path: str, params: Mapping[str, str]) -> int:
    if (method, path) == ("GET", "/api/v3/openOrders"):
        return 6 if "symbol" in params else 80
    if (method, path) == ("GET", "/api/v3/myTrades"):
        return 5 if "orderId" in params else 20
    if not path.startswith("/api/"):
        return 0
    return WEIGHTS.get((method, path), 1)


def interval_name(seconds: int) -> str:
    """The header suffix of an interval: 60 -> "1M", 10 -> "10S", 86400 -> "1D"."""
    for letter, size in (("D", 86_400), ("H", 3_600), ("M", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{letter}"
    return f"{seconds}S"


def _interval_json(seconds: int) -> tuple[str, int]:
    name = interval_name(seconds)
    unit = {"S": "SECOND", "M": "MINUTE", "H": "HOUR", "D": "DAY"}[name[-1]]
    return unit, int(name[:-1])


@dataclass
class _Counter:
    """A fixed window's count: `used` units in window number `index`."""

    seconds: int
    limit: int
    index: int = -1
    used: int = 0

    def current(self, now: float) -> int:
        index = int(now // self.seconds)
        if index != self.index:
            self.index, self.used = index, 0
        return self.used

    def retry_after(self, now: float) -> int:
        return max(1, math.ceil((self.index + 1) * self.seconds - now))


@dataclass
class Admission:
    """What `admit` decided: refuse with `reply`, or serve and then `settle`."""

    reply: Reply | None = None
    ip: str = ""
    account: str = ""
    weight: int = 0
    order: bool = False
    headers: dict[str, str] = field(default_factory=dict)


class SpotLimits:
    """REQUEST_WEIGHT per client IP, ORDERS per account (API key), 429 then 418."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        weight_limit: int = 6000,
        weight_window_s: int = 60,
        orders: tuple[tuple[int, int], ...] = ((50, 10), (160_000, 86_400)),
        ban_s: float = 120.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.enabled = enabled
        self.weight_limit = weight_limit
        self.weight_window_s = weight_window_s
        self.order_limits = orders
        self.ban_s = ban_s
        self.clock = clock
        self._lock = threading.Lock()
        self._weight: dict[str, _Counter] = {}
        self._orders: dict[str, list[_Counter]] = {}
        self._retry_at: dict[str, float] = {}  # IP -> when its weight 429's Retry-After ends
        self._banned_until: dict[str, float] = {}
        # Weight counted per (IP, window number): what tests compare with the limit.
        self.weight_log: dict[tuple[str, int], int] = {}
        self.refused: dict[int, int] = {}  # HTTP status -> how many requests it refused

    def rate_limits_json(self) -> list[dict[str, object]]:
        """exchangeInfo's rateLimits: the limits enforced here."""
        unit, num = _interval_json(self.weight_window_s)
        limits: list[dict[str, object]] = [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": unit,
                "intervalNum": num,
                "limit": self.weight_limit,
            }
        ]
        for limit, seconds in self.order_limits:
            unit, num = _interval_json(seconds)
            limits.append(
                {"rateLimitType": "ORDERS", "interval": unit, "intervalNum": num, "limit": limit}
            )
        return limits

    def used_weight(self, ip: str = "127.0.0.1") -> int:
        with self._lock:
            counter = self._weight.get(ip)
            return counter.current(self.clock()) if counter else 0

    def admit(
        self, ip: str, account: str, method: str, path: str, params: Mapping[str, str]
    ) -> Admission:
        """Count the request; a Reply when the venue refuses it (418, 429)."""
        if not self.enabled or not path.startswith("/api/"):
            return Admission()
        now = self.clock()
        with self._lock:
            if self._banned_until.get(ip, 0.0) > now:
                return self._refuse(self._ban_reply(ip, now))
            if self._retry_at.get(ip, 0.0) > now:
                # Came back before the 429's Retry-After: the IP is banned.
                self._banned_until[ip] = now + self.ban_s
                return self._refuse(self._ban_reply(ip, now))
            counter = self._weight.setdefault(ip, _Counter(self.weight_window_s, self.weight_limit))
            weight = request_weight(method, path, params)
            if counter.current(now) + weight > self.weight_limit:
                retry = counter.retry_after(now)
                self._retry_at[ip] = now + retry
                msg = (
                    f"Too much request weight used; current limit is {self.weight_limit} request"
                    f" weight per {interval_name(self.weight_window_s)}. Please use WebSocket"
                    " Streams for live updates to avoid polling the API."
                )
                reply = json_reply(429, {"code": -1003, "msg": msg}, {"Retry-After": str(retry)})
                return self._refuse(reply, self._weight_headers(ip))
            counter.used += weight
            self.weight_log[(ip, counter.index)] = counter.used
            admission = Admission(ip=ip, account=account, weight=weight)
            if (method, path) == NEW_ORDER:
                windows = self._orders.setdefault(
                    account, [_Counter(seconds, limit) for limit, seconds in self.order_limits]
                )
                full = [w for w in windows if w.current(now) + 1 > w.limit]
                if full:
                    msg = (
                        f"Too many new orders; current limit is {full[0].limit} orders per"
                        f" {interval_name(full[0].seconds)}."
                    )
                    wait = {"Retry-After": str(max(w.retry_after(now) for w in full))}
                    reply = json_reply(429, {"code": -1015, "msg": msg}, wait)
                    return self._refuse(reply, self._weight_headers(ip))
                for w in windows:
                    w.used += 1  # held now, so concurrent orders cannot both take the last one
                admission.order = True
            admission.headers = self._weight_headers(ip)
            return admission

    def settle(self, admission: Admission, reply: Reply | None, method: str, path: str) -> None:
        """After the request was served: refunds, fills, and the usage headers on the reply."""
        if not self.enabled or reply is None or admission.reply is not None or not admission.ip:
            return
        accepted = reply.status == 200
        with self._lock:
            counter = self._weight[admission.ip]
            if accepted and (method, path) in ZERO_ON_SUCCESS:
                counter.used = max(0, counter.used - admission.weight)
                self.weight_log[(admission.ip, counter.index)] = counter.used
            reply.headers.update(self._weight_headers(admission.ip))
            if not admission.order:
                return
            windows = self._orders[admission.account]
            if not accepted or _filled(reply):
                for w in windows:
                    w.used = max(0, w.used - 1)
            if accepted:
                for w in windows:
                    reply.headers[f"X-MBX-ORDER-COUNT-{interval_name(w.seconds)}"] = str(w.used)

    def _refuse(self, reply: Reply, headers: Mapping[str, str] | None = None) -> Admission:
        reply.headers.update(headers or {})
        self.refused[reply.status] = self.refused.get(reply.status, 0) + 1
        return Admission(reply=reply)

    def _weight_headers(self, ip: str) -> dict[str, str]:
        counter = self._weight.get(ip)
        used = counter.used if counter else 0
        return {f"X-MBX-USED-WEIGHT-{interval_name(self.weight_window_s)}": str(used)}

    def _ban_reply(self, ip: str, now: float) -> Reply:
        until = self._banned_until[ip]
        msg = (
            f"Way too much request weight used; IP banned until {int(until * 1000)}."
            " Please use WebSocket Streams for live updates to avoid bans."
        )
        retry = {"Retry-After": str(max(1, math.ceil(until - now)))}
        return json_reply(418, {"code": -1003, "msg": msg}, retry)


def _filled(reply: Reply) -> bool:
    try:
        body = json.loads(reply.body)
        return float(body.get("executedQty") or 0) > 0
    except (ValueError, AttributeError, TypeError):
        return False
