"""News sources (CryptoPanic API, RSS/Atom feeds) and reads of the stored headlines.

Sources fetch over HTTP with `requests` and parse with the real format parsers
(`lib/news.py`, feedparser); every source goes through `services/news.py::news_ingest`,
like the headlines file does.

Configuration (environment, or Django settings of the same name):
`QT_CRYPTOPANIC_TOKEN` (CryptoPanic is off without it), `QT_CRYPTOPANIC_URL`,
`QT_NEWS_RSS_FEEDS` (comma-separated feed URLs), `QT_NEWS_INTERVAL` (seconds).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import feedparser
import pandas as pd
import requests
from django.conf import settings

from marketdata.lib.features import DECAY_WINDOW, NEWS_WINDOW
from marketdata.lib.news import NewsRecord, records_from_cryptopanic, records_from_feed

CRYPTOPANIC_URL = "https://cryptopanic.com/api/developer/v2"
USER_AGENT = "QuantumTrader/1 (+https://github.com/)"
TIMEOUT = 15


def news_setting(name: str, default: str = "") -> str:
    """A news setting from Django settings, else the environment."""
    value = getattr(settings, name, None)
    return str(value) if value is not None else os.environ.get(name, default)


class NewsSource(Protocol):
    name: str

    def fetch(self) -> list[NewsRecord]: ...


@dataclass
class CryptoPanicSource:
    """CryptoPanic's posts endpoint: `GET {base}/posts/?auth_token=...&public=true`."""

    token: str
    base_url: str = CRYPTOPANIC_URL
    currencies: tuple[str, ...] = ()
    max_pages: int = 2
    name: str = "cryptopanic"

    def fetch(self) -> list[NewsRecord]:
        query = {"auth_token": self.token, "public": "true", "kind": "news"}
        if self.currencies:
            query["currencies"] = ",".join(self.currencies)
        url: str | None = f"{self.base_url.rstrip('/')}/posts/"
        params: dict[str, str] | None = query
        records: list[NewsRecord] = []
        for _ in range(self.max_pages):
            if not url:
                break
            response = requests.get(
                url, params=params, timeout=TIMEOUT, headers={"User-Agent": USER_AGENT}
            )
            response.raise_for_status()
            payload: dict[str, Any] = response.json()
            records.extend(records_from_cryptopanic(payload))
            url, params = payload.get("next"), None  # `next` carries the query already
        return records


@dataclass
class RssSource:
    """One RSS or Atom feed, fetched with requests and parsed by feedparser."""

    url: str
    name: str = field(default="rss")

    def fetch(self) -> list[NewsRecord]:
        response = requests.get(self.url, timeout=TIMEOUT, headers={"User-Agent": USER_AGENT})
        response.raise_for_status()
        parsed = feedparser.parse(
            response.content,
            response_headers={"content-type": response.headers.get("content-type", "")},
        )
        if parsed.get("bozo") and not parsed.get("entries"):
            raise ValueError(f"{self.url}: not a feed ({parsed.get('bozo_exception')})")
        return records_from_feed(parsed, self.url)


def news_sources_configured() -> list[NewsSource]:
    """The sources the settings turn on (none by default: the platform runs offline)."""
    sources: list[NewsSource] = []
    token = news_setting("QT_CRYPTOPANIC_TOKEN")
    if token:
        sources.append(
            CryptoPanicSource(
                token=token, base_url=news_setting("QT_CRYPTOPANIC_URL", CRYPTOPANIC_URL)
            )
        )
    feeds = news_setting("QT_NEWS_RSS_FEEDS")
    sources.extend(RssSource(url=u.strip()) for u in feeds.split(",") if u.strip())
    return sources


def news_frame(*, asset: str, until: datetime, since: datetime | None = None) -> pd.DataFrame:
    """Scored headlines about `asset` published before `until`: published_at, sentiment.

    Without `since`, only the window the features look at (the longest of the count and
    decay windows) is read, which is all a live feature row needs.
    """
    from marketdata.models import NewsItem  # lazily: the beat schedule imports this module

    since = since if since is not None else until - max(NEWS_WINDOW, DECAY_WINDOW)
    rows = list(
        NewsItem.objects.filter(
            assets__contains=f",{asset.upper()},",
            published_at__gte=since,
            published_at__lt=until,
            sentiment__isnull=False,
        )
        .order_by("published_at")
        .values_list("published_at", "sentiment")
    )
    return pd.DataFrame(rows, columns=["published_at", "sentiment"])


def news_frame_for_bars(*, asset: str, bars: pd.DataFrame, bar_duration: timedelta) -> pd.DataFrame:
    """The headlines every row of `bars` can see (features of the first bar included)."""
    if bars.empty:
        return pd.DataFrame(columns=["published_at", "sentiment"])
    first, last = bars.index[0].to_pydatetime(), bars.index[-1].to_pydatetime()
    return news_frame(
        asset=asset,
        since=first - max(NEWS_WINDOW, DECAY_WINDOW),
        until=last + bar_duration,
    )
