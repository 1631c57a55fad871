from __future__ import annotations

import logging

from celery import shared_task

from marketdata.models import Market
from marketdata.services.sync import market_sync
from marketdata.sources import source_for

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def ingest_all_markets() -> None:
    """Sync every active market on the configured timeframe from the configured source."""
    from django.conf import settings

    source = source_for()
    for market in Market.objects.filter(active=True).select_related("exchange"):
        try:
            market_sync(market=market, timeframe=settings.QT_TIMEFRAME, source=source)
        except Exception:
            # One market's outage must not stop the others; the error is logged and
            # /ready reports the market as stale.
            logger.exception("ingest failed for %s", market.symbol, extra={"market": market.symbol})


@shared_task(ignore_result=True)
def ingest_news() -> None:
    """Fetch and store headlines from the configured news APIs and feeds (none by default)."""
    from marketdata.news import news_sources_configured
    from marketdata.services.news import news_sync

    sources = news_sources_configured()
    if sources:
        news_sync(sources=sources)
