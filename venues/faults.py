"""Faults the loopback exchange injects: which request gets which failure, reproducibly.

A rule names a fault kind, the requests it applies to (`endpoint`: "POST /api/v3/order",
"/api/v3/order" for any method, or None for every exchange request) and when it fires:
on the next `count` matching requests, with `probability` on each one (drawn from the
plan's seeded RNG), or both (each with that chance, at most `count` times). A rule with
neither fires once. Rules are consulted in the order they were added; the first that
fires wins. Standard library only; thread-safe.

`FaultPlan.serve` applies the request faults to any venue: the Binance loopback decides
them in its own handler, the other venues (venues/server.py's `VenueServer`) at dispatch,
each wording the refusal its own way (`fault_reply`).
"""

from __future__ import annotations

import math
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

R = TypeVar("R")

# Whole-request faults, decided before the request is served.
REQUEST_KINDS = frozenset(
    {"accept_then_timeout", "http_5xx", "rate_limit_429", "ip_ban_418", "drop_connection"}
)
# Faults in how a new order fills, decided when the exchange accepts the order.
ORDER_KINDS = frozenset({"delay_fill", "partial_fill"})
KINDS = REQUEST_KINDS | ORDER_KINDS
ORDER_ENDPOINT = "POST /api/v3/order"

# Each kind's parameters and their defaults.
DEFAULTS: dict[str, dict[str, Any]] = {
    # The request is served (the order exists), then the answer is held `delay_s` (longer
    # than the client's timeout) or, with mode "drop", the socket is closed without one.
    "accept_then_timeout": {"mode": "delay", "delay_s": 20.0},
    # A 5xx with an HTML body, as Binance's gateway sends it; `execute` serves the request
    # first, so the order exists although the client saw a server error.
    "http_5xx": {"status": 503, "execute": False},
    "rate_limit_429": {"retry_after": 1},
    # This and every request until the ban ends (retry_after seconds) is answered 418.
    "ip_ban_418": {"retry_after": 2},
    "drop_connection": {},
    # A market order is accepted as NEW and fills after delay_s (None: on fill_pending()).
    "delay_fill": {"delay_s": 1.0},
    # The order fills in `parts` trades, interval_s apart (0: all in one go).
    "partial_fill": {"parts": 3, "interval_s": 0.0},
}


@dataclass
class FaultRule:
    kind: str
    endpoint: str | None = None
    count: int | None = None
    probability: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.endpoint is None:
            return True
        want_method, _, want_path = self.endpoint.rpartition(" ")
        if want_method not in ("", method):
            return False
        if "{" in want_path:  # a venue's template: "/api/v1/hf/orders/{orderId}"
            variable = r"\\\{\w+\\\}"  # re.escape("{orderId}") is "\{orderId\}"
            pattern = re.sub(variable, "[^/]+", re.escape(want_path))
            return re.fullmatch(pattern, path) is not None
        return want_path == path

    @property
    def spent(self) -> bool:
        return self.count is not None and self.fired >= self.count

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "endpoint": self.endpoint,
            "count": self.count,
            "probability": self.probability,
            "params": dict(self.params),
            "fired": self.fired,
        }


def make_rule(
    kind: str,
    *,
    endpoint: str | None = None,
    count: int | None = None,
    probability: float | None = None,
    **params: Any,
) -> FaultRule:
    """A validated rule; ValueError says what is wrong with it."""
    if kind not in KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; one of {sorted(KINDS)}")
    unknown = set(params) - set(DEFAULTS[kind])
    if unknown:
        raise ValueError(f"{kind} takes {sorted(DEFAULTS[kind])}, not {sorted(unknown)}")
    if count is not None and (not isinstance(count, int) or count < 1):
        raise ValueError("count must be a positive integer")
    if probability is not None and not 0 <= float(probability) <= 1:
        raise ValueError("probability must be between 0 and 1")
    if count is None and probability is None:
        count = 1
    if endpoint is None and kind in ORDER_KINDS | {"accept_then_timeout"}:
        endpoint = ORDER_ENDPOINT
    merged = {**DEFAULTS[kind], **params}
    if kind == "accept_then_timeout" and merged["mode"] not in ("delay", "drop"):
        raise ValueError("accept_then_timeout mode is 'delay' or 'drop'")
    if kind == "http_5xx" and not 500 <= int(merged["status"]) <= 599:
        raise ValueError("http_5xx status must be 5xx")
    if kind == "partial_fill" and int(merged["parts"]) < 2:
        raise ValueError("partial_fill needs parts >= 2")
    return FaultRule(
        kind=kind,
        endpoint=endpoint,
        count=count,
        probability=None if probability is None else float(probability),
        params=merged,
    )


def retry_after_s(params: dict[str, Any]) -> int:
    """A refusal's Retry-After in whole seconds, at least 1, as the header says it."""
    return max(1, math.ceil(float(params.get("retry_after", 1))))


class FaultPlan:
    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._rng = random.Random(seed)
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        self.log: deque[dict[str, Any]] = deque(maxlen=10_000)
        self.banned_until = 0.0

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        """Drop every rule and lift a ban; counters and log stay (they are history)."""
        with self._lock:
            self._rules.clear()
            self.banned_until = 0.0

    def reseed(self, seed: int | None) -> None:
        with self._lock:
            self.seed = seed
            self._rng = random.Random(seed)

    def draw(self, method: str, path: str, kinds: frozenset[str]) -> FaultRule | None:
        """The rule of one of `kinds` that fires on this request, counted; None if none does."""
        with self._lock:
            for rule in self._rules:
                if rule.kind not in kinds or rule.spent or not rule.matches(method, path):
                    continue
                if rule.probability is not None and self._rng.random() >= rule.probability:
                    continue
                rule.fired += 1
                self._count(rule.kind, method, path)
                return rule
            return None

    def banned(self, method: str, path: str, now: float) -> bool:
        """Whether an IP ban is in force; a request refused by it counts as a 418 too."""
        with self._lock:
            if now >= self.banned_until:
                return False
            self._count("ip_ban_418", method, path)
            return True

    def ban(self, until: float) -> None:
        with self._lock:
            self.banned_until = max(self.banned_until, until)

    def serve(
        self,
        method: str,
        path: str,
        answer: Callable[[], R],
        refuse: Callable[[str, dict[str, Any]], R],
    ) -> tuple[R | None, float]:
        """(reply, seconds to hold it) for one request under the plan's request faults; a
        None reply means hang up without one. `refuse(kind, params)` words a refusal.

        A 5xx with `execute`, and accept_then_timeout, serve the request first (`answer()`),
        so the venue has acted although the client hears a server error, nothing, or an
        answer held past its timeout.
        """
        now = time.time()
        if self.banned(method, path, now):
            return refuse("ip_ban_418", {"retry_after": self.banned_until - now}), 0.0
        rule = self.draw(method, path, REQUEST_KINDS)
        if rule is None:
            return answer(), 0.0
        kind, params = rule.kind, rule.params
        if kind == "ip_ban_418":
            self.ban(now + float(params["retry_after"]))
        refused = kind in ("ip_ban_418", "rate_limit_429")
        if refused or (kind == "http_5xx" and not params["execute"]):
            return refuse(kind, params), 0.0
        if kind == "drop_connection":
            return None, 0.0
        reply = answer()
        if kind == "http_5xx":
            return refuse(kind, params), 0.0
        if params["mode"] == "drop":
            return None, 0.0
        return reply, float(params["delay_s"])

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "seed": self.seed,
                "rules": [r.as_json() for r in self._rules],
                "injected": dict(self.injected),
                "banned_until": int(self.banned_until * 1000) if self.banned_until else None,
                "log": list(self.log),
            }

    def _count(self, kind: str, method: str, path: str) -> None:
        self.injected[kind] += 1
        self.log.append(
            {"kind": kind, "method": method, "path": path, "time": int(time.time() * 1000)}
        )
