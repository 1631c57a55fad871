from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from marketdata.lib.candles import parse_time
from marketdata.models import Candle, Market
from quantum.roles import HasRole


class MarketSerializer(serializers.ModelSerializer):
    exchange = serializers.CharField(source="exchange.code")

    class Meta:
        model = Market
        fields = [
            "id",
            "exchange",
            "symbol",
            "base",
            "quote",
            "price_precision",
            "qty_precision",
            "min_notional",
            "active",
            "last_ingest_at",
        ]


class CandleSerializer(serializers.ModelSerializer):
    market = serializers.CharField(source="market.symbol")

    class Meta:
        model = Candle
        fields = ["market", "timeframe", "open_time", "open", "high", "low", "close", "volume"]


class MarketViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Market.objects.select_related("exchange").order_by("id")
    serializer_class = MarketSerializer
    permission_classes = [HasRole.of("viewer")]


def query_params(request: Request) -> Any:
    """The query string, refused (400) if a value holds a NUL: PostgreSQL cannot compare one."""
    params = request.query_params
    for name, values in params.lists():
        if any("\x00" in value for value in values):
            raise ValidationError({name: "must not contain NUL characters"})
    return params


def filter_market(qs: QuerySet, params: dict, field: str = "market") -> QuerySet:
    """?market=<id or SYMBOL> shared by the list endpoints."""
    value = params.get("market")
    if not value:
        return qs
    # ASCII digits only ("²".isdigit() is true but int() refuses it); `__pk` and not `_id`:
    # the primary key's lookup answers "none" to an id too big for the column instead of
    # letting the database driver overflow (a 500).
    if value.isascii() and value.isdigit():
        return qs.filter(**{f"{field}__pk": int(value)})
    return qs.filter(**{f"{field}__symbol": value.upper()})


def filter_since(qs: QuerySet, params: dict, field: str) -> QuerySet:
    for param, lookup in (("since", "gte"), ("until", "lte")):
        if params.get(param):
            try:
                qs = qs.filter(**{f"{field}__{lookup}": parse_time(params[param])})
            except (ValueError, OverflowError) as exc:  # huge epoch digits overflow
                raise ValidationError({param: f"not an ISO-8601 time: {exc}"}) from exc
    return qs


class CandleViewSet(viewsets.ReadOnlyModelViewSet):
    """Candles, newest first; filter with ?market=BTC/USDT&timeframe=1h&since=&until=."""

    serializer_class = CandleSerializer
    permission_classes = [HasRole.of("viewer")]

    @extend_schema(
        parameters=[
            OpenApiParameter("market", str, description="market id or symbol (BTC/USDT)"),
            OpenApiParameter("timeframe", str, description="1m, 5m, 1h, …"),
            OpenApiParameter("since", str, description="ISO-8601 time or epoch milliseconds"),
            OpenApiParameter("until", str, description="ISO-8601 time or epoch milliseconds"),
        ]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[Candle]:
        qs = Candle.objects.select_related("market").order_by("-open_time", "market_id")
        params = query_params(self.request)
        if params.get("timeframe"):
            qs = qs.filter(timeframe=params["timeframe"])
        return filter_since(filter_market(qs, params), params, "open_time")
