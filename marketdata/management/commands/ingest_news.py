"""Fetch headlines now from the configured sources (or the ones given) and store them."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from marketdata.news import CryptoPanicSource, NewsSource, RssSource, news_sources_configured
from marketdata.services.news import news_sync


class Command(BaseCommand):
    help = "Fetch and store headlines from CryptoPanic and RSS feeds."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rss", action="append", default=[], help="feed URL (repeatable)")
        parser.add_argument("--cryptopanic-token", default="")
        parser.add_argument("--cryptopanic-url", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        sources: list[NewsSource] = [RssSource(url=u) for u in options["rss"]]
        if options["cryptopanic_token"]:
            panic = CryptoPanicSource(token=options["cryptopanic_token"])
            if options["cryptopanic_url"]:
                panic.base_url = options["cryptopanic_url"]
            sources.append(panic)
        sources = sources or news_sources_configured()
        if not sources:
            raise CommandError(
                "no news sources: set QT_CRYPTOPANIC_TOKEN or QT_NEWS_RSS_FEEDS, or pass --rss"
            )
        for label, result in news_sync(sources=sources).items():
            summary = result if isinstance(result, str) else result.summary()
            self.stdout.write(f"{label}: {summary}")
