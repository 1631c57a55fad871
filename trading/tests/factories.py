from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import factory
from django.utils import timezone

from marketdata.models import Candle, Market
from marketdata.services.sync import market_register
from models_registry.models import ModelVersion
from trading.models import Signal

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def btc_usdt() -> Market:
    return market_register(exchange_code="binance", symbol="BTC/USDT")


class ModelVersionFactory(factory.django.DjangoModelFactory):
    """A registered model; execution never loads the artifact, so path and digest are dummies."""

    class Meta:
        model = ModelVersion

    version = factory.Sequence(lambda n: n + 1)
    market_group = "binance:BTC/USDT"
    timeframe = "1h"
    path = factory.LazyAttribute(lambda mv: f"var/artifacts/test-v{mv.version}.json")
    sha256 = "0" * 64
    feature_set = "test"
    feature_set_hash = "test-feature-set"
    trained_at = factory.LazyFunction(timezone.now)
    status = ModelVersion.Status.ACTIVE
    is_active = False


class SignalFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Signal

    market = factory.LazyFunction(btc_usdt)
    timeframe = "1h"
    candle_time = factory.Sequence(lambda n: T0 + timedelta(hours=n))
    action = Signal.Action.BUY
    prob_buy = factory.LazyAttribute(lambda s: 0.7 if s.action == "BUY" else 0.15)
    prob_sell = factory.LazyAttribute(lambda s: 0.7 if s.action == "SELL" else 0.15)
    prob_hold = factory.LazyAttribute(lambda s: 1 - s.prob_buy - s.prob_sell)
    price = Decimal("40000.00")
    model_version = factory.SubFactory(ModelVersionFactory)
    feature_set_hash = "test-feature-set"


class CandleFactory(factory.django.DjangoModelFactory):
    """A sane 1h bar around `close`."""

    class Meta:
        model = Candle

    market = factory.LazyFunction(btc_usdt)
    timeframe = "1h"
    open_time = factory.Sequence(lambda n: T0 + timedelta(hours=n))
    close = Decimal("40000.00")
    open = factory.LazyAttribute(lambda c: c.close)
    high = factory.LazyAttribute(lambda c: c.close * Decimal("1.01"))
    low = factory.LazyAttribute(lambda c: c.close * Decimal("0.99"))
    volume = Decimal("12.5")


def gated_model() -> ModelVersion:
    """The active model that passed its gates (one per group), for testnet/live signals."""
    return ModelVersion.objects.filter(is_active=True).first() or ModelVersionFactory(
        is_active=True
    )
