"""Synthetic checks run by beat: each exchange account's API answers; the audit chain holds.

Results are kept in Redis (every web replica's /ready sees them) and exported as metrics.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.cache import cache
from django.utils import timezone

logger = logging.getLogger(__name__)

EXCHANGE_KEY = "synthetic:exchange:{account_id}"
AUDIT_KEY = "synthetic:audit"
TTL = 24 * 3600


def exchange_ping(*, account: Any) -> dict[str, Any]:
    """Ask one exchange account's API for its server time (a public, weight-1 call)."""
    from quantum.metrics import EXCHANGE_PING, EXCHANGE_UP
    from trading.adapters.ccxt_adapter import ccxt_for_account

    labels = {"account": account.name, "exchange": account.exchange.code, "mode": account.mode}
    start = time.perf_counter()
    try:
        server_ms = ccxt_for_account(account).fetch_time()
        elapsed = time.perf_counter() - start
        skew = abs(server_ms / 1000 - time.time()) if server_ms else None
        result = {"ok": True, "detail": f"time answered in {elapsed * 1000:.0f} ms"}
        if skew is not None and skew > 5:
            # Signed requests older than recvWindow (5 s on Binance) are refused.
            result = {"ok": False, "detail": f"clock skew {skew:.1f}s against the exchange"}
    except Exception as exc:
        elapsed = time.perf_counter() - start
        result = {"ok": False, "detail": f"{type(exc).__name__}: {str(exc)[:200]}"}
        logger.warning("exchange ping failed for %s: %s", account.name, result["detail"])
    result.update(at=timezone.now().isoformat(), seconds=round(elapsed, 4), name=account.name)
    cache.set(EXCHANGE_KEY.format(account_id=account.pk), result, TTL)
    EXCHANGE_UP.labels(**labels).set(1 if result["ok"] else 0)
    EXCHANGE_PING.labels(**labels).set(elapsed)
    return result


def exchange_ping_all() -> dict[str, dict[str, Any]]:
    """Every account that talks to an exchange (testnet, live); paper needs none."""
    from trading.models import ExchangeAccount

    accounts = ExchangeAccount.objects.exclude(mode=ExchangeAccount.Mode.PAPER)
    return {a.name: exchange_ping(account=a) for a in accounts.select_related("exchange")}


def exchange_ping_get(*, account_id: int) -> dict[str, Any] | None:
    return cache.get(EXCHANGE_KEY.format(account_id=account_id))


def audit_chain_check() -> dict[str, Any]:
    """Walk the whole audit chain (risk.services.audit.audit_verify) and record the result."""
    from quantum.metrics import AUDIT_CHAIN_CHECKED, AUDIT_CHAIN_ENTRIES, AUDIT_CHAIN_OK
    from risk.models import AuditEvent
    from risk.services.audit import audit_verify

    ok, detail = audit_verify()
    entries = AuditEvent.objects.count()
    result = {"ok": ok, "detail": detail, "entries": entries, "at": timezone.now().isoformat()}
    cache.set(AUDIT_KEY, result, TTL)
    AUDIT_CHAIN_OK.set(1 if ok else 0)
    AUDIT_CHAIN_ENTRIES.set(entries)
    AUDIT_CHAIN_CHECKED.set(time.time())
    if not ok:
        logger.error("audit chain broken: %s", detail)
    return result
