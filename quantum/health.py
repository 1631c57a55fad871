"""Readiness checks: each says ok or what failed. Shared by /ready and the CLI."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from marketdata.models import TIMEFRAMES, Market
from marketdata.selectors import latest_candle
from models_registry.selectors import active_model_for
from quantum.services import heartbeat_get

Check = dict[str, Any]


def _database() -> Check:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"ok": True, "detail": connection.vendor}


def _redis() -> Check:
    cache.set("ready:ping", "1", 10)
    return {"ok": cache.get("ready:ping") == "1", "detail": "cache round trip"}


def _broker() -> Check:
    from quantum.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=3)
        return {"ok": True, "detail": conn.transport_cls}


def _exchange(account: Any) -> Check:
    """The last synthetic check of the account's API (beat: quantum.tasks.exchange_ping)."""
    from quantum.synthetic import exchange_ping_get

    result = exchange_ping_get(account_id=account.pk)
    if result is None:
        return {"ok": False, "detail": "no synthetic check yet"}
    age = (timezone.now() - datetime.fromisoformat(result["at"])).total_seconds()
    if age > max(3 * settings.QT_EXCHANGE_PING_INTERVAL, 60):
        return {"ok": False, "detail": f"last synthetic check {age:.0f}s ago"}
    return {"ok": result["ok"], "detail": result["detail"]}


def _audit() -> Check | None:
    """The last walk of the audit chain (beat: quantum.tasks.audit_chain_check), if any."""
    from quantum.synthetic import AUDIT_KEY

    result = cache.get(AUDIT_KEY)
    if result is None:
        return None
    return {"ok": result["ok"], "detail": result["detail"]}


# A live stream saves its health every 15 s while connected and at every reconnect attempt
# (back-off at most QT_STREAM_BACKOFF_MAX_S, 60 s, plus jitter) otherwise.
STREAM_STALE_S = 90


def stream_check(record: dict[str, Any] | None) -> Check:
    """A websocket stream's last health record (trading/marketdata services/streams.py)."""
    if record is None:
        return {"ok": False, "detail": "no stream process has reported"}
    state, error = record["state"], record.get("last_error") or ""
    age = (timezone.now() - datetime.fromisoformat(record["updated_at"])).total_seconds()
    if state == "stopped":
        # Stopped cleanly (SIGTERM): polling on beat settles everything meanwhile.
        return {"ok": True, "detail": f"stopped {age:.0f}s ago; polling only"}
    if age > STREAM_STALE_S:
        return {"ok": False, "detail": f"{state}, silent for {age:.0f}s: is its process running?"}
    if state == "connected":
        return {"ok": True, "detail": f"connected, {record.get('events', 0)} events"}
    if state == "polling":
        return {"ok": True, "detail": f"websocket unavailable, polling: {error}".rstrip(": ")}
    return {"ok": False, "detail": f"{state}: {error}".rstrip(": ")}


def stream_checks() -> dict[str, Check]:
    """User streams of the accounts that get one (a missing report fails: they are run by
    runplatform, compose and systemd), and the market stream where it has reported."""
    from marketdata.services.streams import market_stream_health
    from trading.models import ExchangeAccount
    from trading.services.streams import stream_account_ids, streams_health

    ids = stream_account_ids()
    found = streams_health(ids)
    names = dict(ExchangeAccount.objects.filter(pk__in=ids).values_list("pk", "name"))
    checks = {f"stream:{names[pk]}": stream_check(found.get(pk)) for pk in ids}
    market = market_stream_health()
    if market is not None:
        checks[f"stream:market:{settings.QT_EXCHANGE}"] = stream_check(market)
    return checks


def _heartbeat(component: str) -> Check:
    seen = heartbeat_get(component=component)
    if seen is None:
        return {"ok": False, "detail": f"no {component} heartbeat yet"}
    age = (timezone.now() - seen).total_seconds()
    ok = age <= settings.QT_HEARTBEAT_MAX_AGE.total_seconds()
    return {"ok": ok, "detail": f"last seen {age:.0f}s ago"}


def _freshness(market: Market) -> Check:
    timeframe = settings.QT_TIMEFRAME
    step = TIMEFRAMES[timeframe]
    candle = latest_candle(market, timeframe)
    now = timezone.now()
    if candle is None:
        return {"ok": False, "detail": "no candles"}
    if settings.QT_MARKET_SOURCE == "replay":
        # Replayed bars carry historical times; freshness is whether the clock still ticks.
        limit = timedelta(seconds=max(settings.QT_REPLAY_INTERVAL * 10, 30))
        seen = market.last_ingest_at
        ok = seen is not None and now - seen <= limit
        return {
            "ok": ok,
            "detail": f"replay at {candle.open_time:%Y-%m-%d %H:%M}, "
            f"last tick {(now - seen).total_seconds():.0f}s ago"
            if seen
            else "no tick yet",
        }
    age = now - candle.open_time
    ok = age <= (settings.QT_STALE_BARS + 1) * step
    return {"ok": ok, "detail": f"newest bar opened {age.total_seconds() / 60:.0f} min ago"}


def _model(market: Market) -> Check:
    model = active_model_for(market, settings.QT_TIMEFRAME)
    return {"ok": model is not None, "detail": f"v{model.version}" if model else "no active model"}


def readiness() -> dict[str, Check]:
    checks: dict[str, Check] = {}
    for name, fn in (("database", _database), ("redis", _redis), ("broker", _broker)):
        try:
            checks[name] = fn()
        except Exception as exc:  # the point of the check is to report, not to raise
            checks[name] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    if not checks["database"]["ok"]:
        return checks
    for component in ("worker", "beat"):
        try:
            checks[component] = _heartbeat(component)
        except Exception as exc:
            checks[component] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    markets = list(Market.objects.filter(active=True).select_related("exchange"))
    if not markets:
        checks["markets"] = {"ok": False, "detail": "no active markets"}
    for market in markets:
        checks[f"data:{market.symbol}"] = _freshness(market)
        checks[f"model:{market.symbol}"] = _model(market)
    from trading.models import ExchangeAccount

    for account in ExchangeAccount.objects.exclude(mode=ExchangeAccount.Mode.PAPER):
        checks[f"exchange:{account.name}"] = _exchange(account)
    checks.update(stream_checks())
    audit = _audit()
    if audit is not None:
        checks["audit"] = audit
    return checks
