from __future__ import annotations

from django.conf import settings
from django.db.models import QuerySet

from marketdata.models import Market
from models_registry.models import ModelVersion, TrainingRun


def market_group_for(markets: list[Market] | None = None) -> str:
    """The registry key for the configured markets, e.g. 'binance:BTC/USDT,ETH/USDT'."""
    if markets:
        return f"{markets[0].exchange.code}:" + ",".join(sorted(m.symbol for m in markets))
    return f"{settings.QT_EXCHANGE}:" + ",".join(sorted(settings.QT_MARKETS))


def markets_of_group(market_group: str) -> list[Market]:
    """The registered markets a group key names."""
    exchange, _, symbols = market_group.partition(":")
    return list(
        Market.objects.filter(exchange__code=exchange, symbol__in=symbols.split(","))
        .select_related("exchange")
        .order_by("symbol")
    )


def active_model_for(market: Market, timeframe: str) -> ModelVersion | None:
    """The active model whose market group includes `market`."""
    for model in ModelVersion.objects.filter(is_active=True, timeframe=timeframe):
        exchange, _, symbols = model.market_group.partition(":")
        if exchange == market.exchange.code and market.symbol in symbols.split(","):
            return model
    return None


def model_may_drive(*, model_version: ModelVersion, mode: str) -> bool:
    """Whether signals of `model_version` may drive an account in `mode` (paper/testnet/live).

    Paper accounts follow any active model, an ungated one included (for observation);
    testnet and live accounts only a model that passed its gates and was promoted.
    """
    if not model_version.is_active:
        return False
    if mode == "paper":
        return True
    return model_version.status == ModelVersion.Status.ACTIVE and model_version.gates_passed


def model_versions(*, market_group: str = "", timeframe: str = "") -> QuerySet[ModelVersion]:
    qs = ModelVersion.objects.order_by("market_group", "timeframe", "-version")
    if market_group:
        qs = qs.filter(market_group=market_group)
    if timeframe:
        qs = qs.filter(timeframe=timeframe)
    return qs


def model_families() -> list[tuple[str, str]]:
    """(market group, timeframe) of every registered family, and the configured one."""
    families = set(ModelVersion.objects.values_list("market_group", "timeframe").distinct())
    families.add((market_group_for(), settings.QT_TIMEFRAME))
    return sorted(families)


def training_runs_recent(*, limit: int = 10) -> QuerySet[TrainingRun]:
    return TrainingRun.objects.select_related("model_version").order_by("-created_at", "-id")[
        :limit
    ]
