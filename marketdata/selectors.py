from __future__ import annotations

from datetime import datetime

import pandas as pd
from django.db.models import QuerySet

from marketdata.models import Candle, Market


def candles_frame(
    *, market: Market, timeframe: str, until: datetime | None = None, last: int | None = None
) -> pd.DataFrame:
    """Stored candles as a float DataFrame indexed by open time (oldest first)."""
    qs: QuerySet[Candle] = Candle.objects.filter(market=market, timeframe=timeframe)
    if until is not None:
        qs = qs.filter(open_time__lte=until)
    if last is not None:
        qs = qs.order_by("-open_time")[:last]
    rows = list(qs.values_list("open_time", "open", "high", "low", "close", "volume"))
    frame = pd.DataFrame(rows, columns=["open_time", "open", "high", "low", "close", "volume"])
    frame = frame.set_index("open_time").sort_index()
    return frame.astype("float64")


def latest_candle(market: Market, timeframe: str) -> Candle | None:
    return Candle.objects.filter(market=market, timeframe=timeframe).order_by("-open_time").first()
