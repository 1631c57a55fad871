from __future__ import annotations

from django.contrib import admin

from marketdata.models import Candle, CandleGap, Exchange, Market, NewsItem

admin.site.register(Exchange)


@admin.register(Market)
class MarketAdmin(admin.ModelAdmin):
    list_display = ["symbol", "exchange", "active", "last_ingest_at"]


@admin.register(Candle)
class CandleAdmin(admin.ModelAdmin):
    list_display = ["market", "timeframe", "open_time", "open", "high", "low", "close", "volume"]
    list_filter = ["timeframe", "market"]
    list_select_related = ["market", "market__exchange"]
    show_full_result_count = False


@admin.register(CandleGap)
class CandleGapAdmin(admin.ModelAdmin):
    list_display = ["market", "timeframe", "start", "end", "bars_missing", "backfilled"]


@admin.register(NewsItem)
class NewsItemAdmin(admin.ModelAdmin):
    list_display = ["published_at", "source", "title", "sentiment"]
