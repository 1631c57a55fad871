from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.utils import timezone

from quantum.fields import money

TIMEFRAMES = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "1d": timedelta(days=1),
}


class Exchange(models.Model):
    code = models.CharField(max_length=32, unique=True)  # ccxt id: binance, bybit, ...
    name = models.CharField(max_length=64)

    def __str__(self) -> str:
        return self.code


class Market(models.Model):
    exchange = models.ForeignKey(Exchange, on_delete=models.PROTECT, related_name="markets")
    symbol = models.CharField(max_length=32)  # BTC/USDT
    base = models.CharField(max_length=16)
    quote = models.CharField(max_length=16)
    price_precision = models.PositiveSmallIntegerField(default=2)
    qty_precision = models.PositiveSmallIntegerField(default=5)
    min_notional = money(default=5)
    active = models.BooleanField(default=True)
    # When a source last answered for this market (replay clocks have no wall-clock bars).
    last_ingest_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["exchange", "symbol"], name="uniq_market_symbol")
        ]
        ordering = ["exchange__code", "symbol"]

    def __str__(self) -> str:
        return f"{self.symbol}@{self.exchange.code}" if self.exchange_id else self.symbol

    @property
    def file_symbol(self) -> str:
        return f"{self.base}{self.quote}"


class Candle(models.Model):
    """One OHLCV bar; its time is its open time (aware UTC)."""

    market = models.ForeignKey(Market, on_delete=models.CASCADE, related_name="candles")
    timeframe = models.CharField(max_length=4, choices=[(k, k) for k in TIMEFRAMES])
    open_time = models.DateTimeField()
    open = money()
    high = money()
    low = money()
    close = money()
    volume = models.DecimalField(max_digits=32, decimal_places=8)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["market", "timeframe", "open_time"], name="uniq_candle_bar"
            ),
            models.CheckConstraint(
                condition=models.Q(low__gt=0) & models.Q(high__gte=models.F("low")),
                name="candle_prices_sane",
            ),
        ]
        ordering = ["market", "timeframe", "open_time"]

    def __str__(self) -> str:
        return f"{self.market_id} {self.timeframe} {self.open_time:%Y-%m-%d %H:%M}"


class CandleGap(models.Model):
    """Bars missing between two stored candles: recorded, never invented."""

    market = models.ForeignKey(Market, on_delete=models.CASCADE, related_name="gaps")
    timeframe = models.CharField(max_length=4)
    start = models.DateTimeField(help_text="open time of the first missing bar")
    end = models.DateTimeField(help_text="open time of the last missing bar")
    bars_missing = models.PositiveIntegerField()
    detected_at = models.DateTimeField(auto_now_add=True)
    backfilled = models.BooleanField(default=False)
    # Real exchange outages never fill: each hole is re-requested a bounded number of times.
    backfill_attempts = models.PositiveIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["market", "timeframe", "start"], name="uniq_gap")
        ]
        ordering = ["-start"]

    def __str__(self) -> str:
        return f"{self.bars_missing} bars missing from {self.start:%Y-%m-%d %H:%M}"


class NewsItem(models.Model):
    """A headline from a news API, an RSS feed or a file, scored and mapped to assets."""

    class Origin(models.TextChoices):
        CRYPTOPANIC = "cryptopanic"
        RSS = "rss"
        FILE = "file"

    # sha256 of the URL (or of source, title and time when there is none): re-ingesting the
    # same headline finds it instead of storing it twice.
    key = models.CharField(max_length=64, unique=True)
    origin = models.CharField(max_length=16, choices=Origin.choices, default=Origin.FILE)
    source = models.CharField(max_length=64)
    external_id = models.CharField(max_length=64, blank=True)
    title = models.CharField(max_length=500)
    url = models.URLField(max_length=500, blank=True)
    published_at = models.DateTimeField(db_index=True)
    ingested_at = models.DateTimeField(default=timezone.now)
    summary = models.TextField(blank=True)
    subject = models.CharField(max_length=64, blank=True)
    sentiment = models.FloatField(null=True, blank=True)  # VADER compound, -1..1
    sentiment_model = models.CharField(max_length=32, blank=True)
    # Asset codes between commas (",BTC,ETH,") so `assets__contains=",BTC,"` selects exactly.
    assets = models.CharField(max_length=200, blank=True, db_index=True)
    markets = models.ManyToManyField(Market, blank=True, related_name="news")

    class Meta:
        ordering = ["-published_at"]

    def __str__(self) -> str:
        return self.title[:80]

    @property
    def asset_codes(self) -> list[str]:
        return [code for code in self.assets.split(",") if code]
