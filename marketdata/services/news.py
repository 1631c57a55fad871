"""Storing headlines: every source (API, feed, file) goes through `news_ingest`."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from marketdata.lib.news import NewsRecord
from marketdata.lib.sentiment import SENTIMENT_MODEL, assets_mentioned, sentiment_score
from marketdata.models import Market, NewsItem
from marketdata.news import NewsSource

logger = logging.getLogger(__name__)

BATCH = 1000
DAY = timedelta(days=1)


@dataclass
class NewsReport:
    inserted: int = 0
    duplicates: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def reject(self, reason: str) -> None:
        self.rejected += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def summary(self) -> str:
        return f"{self.inserted} stored, {self.duplicates} already stored, {self.rejected} rejected"


def news_ingest(*, records: Iterable[NewsRecord]) -> NewsReport:
    """Score (VADER), map to assets and store new headlines; known ones are skipped."""
    report = NewsReport()
    batch: list[NewsRecord] = []
    for record in records:
        batch.append(record)
        if len(batch) >= BATCH:
            _ingest_batch(batch, report)
            batch = []
    if batch:
        _ingest_batch(batch, report)
    if report.rejected:
        logger.warning("news rejected: %s", report.reasons, extra={"reason": "news_rejected"})
    return report


@transaction.atomic
def _ingest_batch(records: list[NewsRecord], report: NewsReport) -> None:
    now = timezone.now()
    fresh: dict[str, NewsRecord] = {}
    for record in records:
        reason = _invalid(record, now)
        if reason:
            report.reject(reason)
        elif record.key in fresh:
            report.duplicates += 1
        else:
            fresh[record.key] = record
    known = set(NewsItem.objects.filter(key__in=fresh).values_list("key", flat=True))
    # The same headline reaches us from several sources (an aggregator's link and the
    # publisher's feed): the same title within a day of a stored one is that headline.
    same_title = NewsItem.objects.filter(title__in={r.title[:500] for r in fresh.values()})
    for title, published in same_title.values_list("title", "published_at"):
        for key, record in fresh.items():
            if record.title[:500] == title and abs(record.published_at - published) <= DAY:
                known.add(key)
    report.duplicates += len(known)
    items = []
    for key, record in fresh.items():
        if key in known:
            continue
        assets = assets_mentioned(
            f"{record.title} {record.summary}", subject=record.subject, codes=record.codes
        )
        items.append(
            NewsItem(
                key=key,
                origin=record.origin,
                source=record.source[:64],
                external_id=record.external_id[:64],
                title=record.title[:500],
                url=record.url if len(record.url) <= 500 else "",
                published_at=record.published_at,
                ingested_at=now,
                summary=record.summary,
                subject=record.subject[:64],
                # Headlines are scored on their title: VADER is built for short texts.
                sentiment=sentiment_score(record.title),
                sentiment_model=SENTIMENT_MODEL,
                assets="," + ",".join(assets) + "," if assets else "",
            )
        )
    # ignore_conflicts: a concurrent ingest of the same headline is not an error.
    created = NewsItem.objects.bulk_create(items, ignore_conflicts=True)
    report.inserted += len(created)
    _link_markets(keys=[i.key for i in items])


def _invalid(record: NewsRecord, now: datetime) -> str:
    if not record.title.strip():
        return "empty_title"
    if record.published_at.tzinfo is None:
        return "naive_time"
    if record.published_at > now + timedelta(minutes=5):
        return "future_time"
    if record.url and not record.url.startswith(("http://", "https://")):
        return "bad_url"
    return ""


def _link_markets(*, keys: list[str]) -> None:
    """Each headline about an asset is linked to the registered markets trading it."""
    markets = list(Market.objects.all())
    if not markets or not keys:
        return
    through = NewsItem.markets.through
    links: list[Any] = []
    for item_id, assets in NewsItem.objects.filter(key__in=keys).values_list("pk", "assets"):
        codes = {c for c in assets.split(",") if c}
        links.extend(
            through(newsitem_id=item_id, market_id=m.pk) for m in markets if m.base in codes
        )
    through.objects.bulk_create(links, ignore_conflicts=True)


def news_sync(*, sources: Iterable[NewsSource]) -> dict[str, NewsReport | str]:
    """Fetch every source and ingest what it returns; one failing source does not stop others."""
    results: dict[str, NewsReport | str] = {}
    for source in sources:
        label = getattr(source, "url", "") or source.name
        try:
            records = source.fetch()
        except Exception as exc:
            logger.warning("news source %s failed: %s", label, exc, extra={"reason": "news_fetch"})
            results[label] = f"failed: {exc}"
            continue
        results[label] = news_ingest(records=records)
    return results
