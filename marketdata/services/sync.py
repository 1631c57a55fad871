"""Keeping stored candles up to date from the configured source."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import F, Q

from marketdata.models import TIMEFRAMES, Candle, CandleGap, Exchange, Market
from marketdata.services.ingestion import IngestReport, candles_ingest
from marketdata.sources import CcxtSource, ReplaySource

PAGE = 1000


def market_register(*, exchange_code: str, symbol: str) -> Market:
    """Get or create a market from its symbol (BASE/QUOTE)."""
    base, _, quote = symbol.partition("/")
    if not base or not quote:
        raise ValueError(f"market symbol must look like BASE/QUOTE, got {symbol!r}")
    exchange, _ = Exchange.objects.get_or_create(
        code=exchange_code, defaults={"name": exchange_code.title()}
    )
    market, _ = Market.objects.get_or_create(
        exchange=exchange, symbol=symbol, defaults={"base": base, "quote": quote}
    )
    return market


def _latest(market: Market, timeframe: str) -> datetime | None:
    return (
        Candle.objects.filter(market=market, timeframe=timeframe)
        .order_by("-open_time")
        .values_list("open_time", flat=True)
        .first()
    )


def market_backfill(
    *, market: Market, timeframe: str, source: CcxtSource | ReplaySource, days: int
) -> IngestReport:
    """Load `days` of history before now (ccxt) or before the replay start (replay)."""
    if isinstance(source, ReplaySource):
        return candles_ingest(
            market=market,
            timeframe=timeframe,
            rows=source.history(market, timeframe, days),
            source="replay",
        )
    since = datetime.now(UTC) - timedelta(days=days)
    latest = _latest(market, timeframe)
    if latest and latest > since:
        since = latest + TIMEFRAMES[timeframe]
    return _ccxt_pages(market, timeframe, source, since, live=False)


def market_sync(
    *, market: Market, timeframe: str, source: CcxtSource | ReplaySource
) -> IngestReport:
    """One live tick: take what the source has after the newest stored bar."""
    step = TIMEFRAMES[timeframe]
    latest = _latest(market, timeframe)
    if isinstance(source, ReplaySource):
        since = latest + step if latest else source.replay_start(market, timeframe)
        # The replay clock releases one bar per tick.
        rows = source.fetch(market, timeframe, since, 1)
        return candles_ingest(
            market=market, timeframe=timeframe, rows=rows, source="replay", live=True
        )
    since = latest + step if latest else datetime.now(UTC) - 50 * step
    report = _ccxt_pages(market, timeframe, source, since, live=True)
    report.merge(gaps_backfill(market=market, timeframe=timeframe, source=source))
    return report


GAP_MAX_ATTEMPTS = 24
GAP_RETRY_AFTER = timedelta(hours=1)


def gaps_backfill(*, market: Market, timeframe: str, source: CcxtSource) -> IngestReport:
    """Ask the exchange again for recorded holes; what it still lacks stays recorded.

    Each hole is asked for at most once an hour and 24 times in all, oldest attempt first,
    so permanent outages do not cost requests on every tick.
    """
    report = IngestReport()
    now = datetime.now(UTC)
    due = (
        CandleGap.objects.filter(
            market=market,
            timeframe=timeframe,
            backfilled=False,
            backfill_attempts__lt=GAP_MAX_ATTEMPTS,
        )
        .filter(Q(last_attempt_at__isnull=True) | Q(last_attempt_at__lt=now - GAP_RETRY_AFTER))
        .order_by(F("last_attempt_at").asc(nulls_first=True), "start")[:5]
    )
    for gap in due:
        CandleGap.objects.filter(pk=gap.pk).update(
            backfill_attempts=F("backfill_attempts") + 1, last_attempt_at=now
        )
        limit = gap.bars_missing
        rows = source.fetch(market, timeframe, gap.start, limit)
        report.merge(
            candles_ingest(market=market, timeframe=timeframe, rows=rows, source="ccxt-backfill")
        )
    return report


def _ccxt_pages(
    market: Market, timeframe: str, source: CcxtSource, since: datetime, *, live: bool
) -> IngestReport:
    report = IngestReport()
    step = TIMEFRAMES[timeframe]
    while True:
        rows = source.fetch(market, timeframe, since, PAGE)
        part = candles_ingest(
            market=market, timeframe=timeframe, rows=rows, source="ccxt", live=live
        )
        report.merge(part)
        times = [t for r in rows if isinstance(t := r.get("open_time"), int | float)]
        if len(rows) < PAGE // 2 or not times:
            return report
        since = datetime.fromtimestamp(max(times) / 1000, UTC) + step


def markets_configured() -> list[Market]:
    return [
        market_register(exchange_code=settings.QT_EXCHANGE, symbol=s) for s in settings.QT_MARKETS
    ]
