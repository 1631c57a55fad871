"""The one ingestion path: every source (ccxt, replay, CSV import) lands candles here."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from marketdata.lib.candles import Bar, Rejection, find_gaps, validate_bars
from marketdata.models import TIMEFRAMES, Candle, CandleGap, Market

logger = logging.getLogger(__name__)


@dataclass
class IngestReport:
    inserted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    new_times: list[datetime] = field(default_factory=list)
    gaps: int = 0

    def merge(self, other: IngestReport) -> None:
        self.inserted += other.inserted
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.new_times += other.new_times
        self.gaps += other.gaps

    def summary(self) -> str:
        return (
            f"inserted={self.inserted} duplicates={self.duplicates} "
            f"rejected={len(self.rejected)} gaps={self.gaps}"
        )


@transaction.atomic
def candles_ingest(
    *,
    market: Market,
    timeframe: str,
    rows: Iterable[Mapping[str, object]],
    source: str,
    live: bool = False,
) -> IngestReport:
    """Validate and insert candles; duplicates are skipped and stored bars never change.

    With ``live=True`` a signal is requested (after commit) for the newest inserted bar.
    """
    from quantum.metrics import CANDLES_INGESTED, CANDLES_REJECTED

    step = TIMEFRAMES[timeframe]
    bars, rejected = validate_bars(rows, step)
    report = IngestReport(rejected=rejected)
    for r in rejected:
        logger.warning(
            "candle rejected: %s %s at %s: %s",
            market.symbol,
            timeframe,
            r.open_time,
            r.reason,
            extra={"market": market.symbol, "reason": r.reason},
        )
        CANDLES_REJECTED.labels(market=market.symbol, reason=r.reason.split(":")[0]).inc()

    if bars:
        existing = set(
            Candle.objects.filter(
                market=market,
                timeframe=timeframe,
                open_time__gte=bars[0].open_time,
                open_time__lte=bars[-1].open_time,
            ).values_list("open_time", flat=True)
        )
        fresh: list[Bar] = [b for b in bars if b.open_time not in existing]
        report.duplicates = len(bars) - len(fresh)
        Candle.objects.bulk_create(
            [
                Candle(
                    market=market,
                    timeframe=timeframe,
                    open_time=b.open_time,
                    open=b.open,
                    high=b.high,
                    low=b.low,
                    close=b.close,
                    volume=b.volume,
                )
                for b in fresh
            ],
            batch_size=2000,
            # A concurrent writer may have stored the same bar since we looked; the
            # unique constraint keeps the first one and this batch skips it.
            ignore_conflicts=True,
        )
        report.inserted = len(fresh)
        report.new_times = [b.open_time for b in fresh]
        CANDLES_INGESTED.labels(market=market.symbol, source=source).inc(len(fresh))
        if fresh:
            report.gaps = _gaps_record(market, timeframe, fresh[0].open_time, fresh[-1].open_time)

    Market.objects.filter(pk=market.pk).update(last_ingest_at=timezone.now())
    if live and report.new_times:
        newest = max(report.new_times)
        latest_stored = (
            Candle.objects.filter(market=market, timeframe=timeframe)
            .order_by("-open_time")
            .values_list("open_time", flat=True)
            .first()
        )
        if newest == latest_stored:
            from trading.tasks import process_closed_candle

            transaction.on_commit(
                lambda: process_closed_candle.delay(market.pk, timeframe, newest.isoformat())
            )
    if report.inserted or report.rejected:
        logger.info(
            "ingest %s %s from %s: %s",
            market.symbol,
            timeframe,
            source,
            report.summary(),
            extra={"market": market.symbol},
        )
    return report


def _gaps_record(market: Market, timeframe: str, first: datetime, last: datetime) -> int:
    """Record holes around the new bars and mark earlier holes that are now filled."""
    step = TIMEFRAMES[timeframe]
    candles = Candle.objects.filter(market=market, timeframe=timeframe)
    before = (
        candles.filter(open_time__lt=first)
        .order_by("-open_time")
        .values_list("open_time", flat=True)
    ).first()
    after = (
        candles.filter(open_time__gt=last)
        .order_by("open_time")
        .values_list("open_time", flat=True)
        .first()
    )
    lo = before or first
    hi = after or last
    times = list(
        candles.filter(open_time__gte=lo, open_time__lte=hi)
        .order_by("open_time")
        .values_list("open_time", flat=True)
    )
    holes = find_gaps(times, step)
    for start, end, missing in holes:
        CandleGap.objects.update_or_create(
            market=market,
            timeframe=timeframe,
            start=start,
            defaults={"end": end, "bars_missing": missing, "backfilled": False},
        )
    hole_starts = {start for start, _, _ in holes}
    CandleGap.objects.filter(
        market=market, timeframe=timeframe, start__gte=lo, start__lte=hi, backfilled=False
    ).exclude(start__in=hole_starts).update(backfilled=True)
    return len(holes)
