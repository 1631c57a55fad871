"""Shadow models on the live loop, and workers picking up a new active model."""

from __future__ import annotations

import pytest

from marketdata.models import Candle
from marketdata.tests.factories import load_real
from models_registry.models import ShadowSignal
from models_registry.services.registry import (
    PromotionError,
    model_shadow_start,
    model_version_promote,
)
from models_registry.services.shadow import shadow_compare, shadow_run, shadow_run_all
from models_registry.services.training import model_train
from models_registry.tests.conftest import COUNT, START
from models_registry.tests.factories import FAST, LENIENT
from trading.models import Order, Signal
from trading.tasks import process_closed_candle

LIVE = 24


def live_bars(market, count: int = LIVE):  # type: ignore[no-untyped-def]
    """Bars arriving after training, each handed to the live loop as the worker would."""
    load_real(market, start=START + COUNT, count=count)
    times = list(
        Candle.objects.filter(market=market, timeframe="1h")
        .order_by("-open_time")
        .values_list("open_time", flat=True)[:count]
    )[::-1]
    for open_time in times:
        process_closed_candle(market.pk, "1h", open_time.isoformat())
    return times


def test_a_shadow_model_calls_live_bars_without_orders_beside_the_active_one(  # type: ignore[no-untyped-def]
    btc, paper_account
) -> None:
    active = model_train(markets=[btc], timeframe="1h", config=FAST)
    candidate = model_train(
        markets=[btc], timeframe="1h", config=FAST, gates=LENIENT, activate=False
    )
    model_shadow_start(model_version=candidate, actor="alice")

    times = live_bars(btc)
    made = shadow_run(model_version=candidate)

    assert made == LIVE
    calls = ShadowSignal.objects.filter(model_version=candidate).order_by("candle_time")
    assert [s.candle_time for s in calls] == times
    assert not Signal.objects.filter(model_version=candidate).exists()
    assert not Order.objects.filter(signal__model_version=candidate).exists()
    assert Signal.objects.filter(model_version=active).count() == LIVE
    assert shadow_run(model_version=candidate) == 0, "each bar is called once"

    comparison = shadow_compare(model_version=candidate)
    assert comparison is not None and comparison["bars"] == LIVE
    assert set(comparison["shadow"]) == set(comparison["active"]) >= {"total_return", "trades"}


def test_the_shadow_job_runs_every_shadow_model(btc, paper_account) -> None:  # type: ignore[no-untyped-def]
    model_train(markets=[btc], timeframe="1h", config=FAST)
    candidate = model_train(markets=[btc], timeframe="1h", config=FAST, activate=False)
    model_shadow_start(model_version=candidate, actor="alice")
    load_real(btc, start=START + COUNT, count=5)

    assert shadow_run_all() == 5


def test_an_active_model_cannot_be_a_shadow(btc) -> None:  # type: ignore[no-untyped-def]
    active = model_train(markets=[btc], timeframe="1h", config=FAST)
    with pytest.raises(PromotionError, match="is active"):
        model_shadow_start(model_version=active, actor="alice")


def test_the_worker_uses_a_newly_promoted_model_on_the_next_bar(btc, paper_account) -> None:  # type: ignore[no-untyped-def]
    first = model_train(markets=[btc], timeframe="1h", config=FAST)
    second = model_train(markets=[btc], timeframe="1h", config=FAST, gates=LENIENT, activate=False)
    before = live_bars(btc, count=1)

    model_version_promote(model_version=second, actor="alice")
    load_real(btc, start=START + COUNT + 1, count=1)
    after = Candle.objects.filter(market=btc).order_by("-open_time").first()
    assert after is not None
    process_closed_candle(btc.pk, "1h", after.open_time.isoformat())

    assert Signal.objects.get(candle_time=before[0]).model_version == first
    assert Signal.objects.get(candle_time=after.open_time).model_version == second
