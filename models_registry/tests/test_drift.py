"""Drift: a shifted feed raises an incident, is exported as metrics and can fall back."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from marketdata.lib.candles import parse_time
from marketdata.lib.features import FEATURE_SET_HASH
from marketdata.services.ingestion import candles_ingest
from marketdata.tests.factories import load_real, real_rows
from models_registry.models import ModelVersion
from models_registry.services.drift import drift_check_all, model_drift_check
from models_registry.services.training import model_train
from models_registry.tests.conftest import COUNT, START
from models_registry.tests.factories import FAST, LENIENT
from risk.models import AuditEvent, Incident


def shifted_feed(count: int, volatility: float = 4.0) -> list[dict[str, object]]:
    """The real bars that follow the training data, with every move `volatility` times larger."""
    before = real_rows(start=START + COUNT - 1, count=1)[0]
    rows = real_rows(start=START + COUNT, count=count)
    previous_real = float(before["close"])
    previous_new = previous_real
    out = []
    for row in rows:
        close = float(row["close"])
        new_close = previous_new * math.exp(volatility * math.log(close / previous_real))
        ratio = new_close / close
        out.append(
            {
                **row,
                "open": f"{float(row['open']) * ratio:.2f}",
                "high": f"{float(row['high']) * ratio:.2f}",
                "low": f"{float(row['low']) * ratio:.2f}",
                "close": f"{new_close:.2f}",
            }
        )
        previous_real, previous_new = close, new_close
    return out


def test_the_real_continuation_of_the_training_data_is_not_critical(btc) -> None:  # type: ignore[no-untyped-def]
    mv = model_train(markets=[btc], timeframe="1h", config=FAST)
    load_real(btc, start=START + COUNT, count=300)

    result = model_drift_check(model_version=mv)

    assert result["status"] in ("ok", "warning")
    assert not Incident.objects.filter(code="MODEL_DRIFT").exists()


def test_a_shifted_feed_raises_a_critical_drift_incident_and_metrics(  # type: ignore[no-untyped-def]
    btc, client_as, alice
) -> None:
    mv = model_train(markets=[btc], timeframe="1h", config=FAST)
    candles_ingest(market=btc, timeframe="1h", rows=shifted_feed(300), source="test")

    result = model_drift_check(model_version=mv)

    mv.refresh_from_db()
    assert result["status"] == "critical" and result["score"] >= 0.5
    assert mv.drift_status == ModelVersion.Drift.CRITICAL
    assert mv.drift_json["vol_20"] > 1.0
    incident = Incident.objects.get(code="MODEL_DRIFT")
    assert incident.severity == Incident.Severity.CRITICAL
    assert f"v{mv.version}" in incident.title and "vol_20" in incident.detail
    assert AuditEvent.objects.filter(action="model.drift_changed", object_id=str(mv.pk)).exists()
    assert not mv.forced_hold, "no fallback unless one is configured"
    metrics = client_as(alice).get("/metrics").content.decode()
    assert (
        'qt_model_drift_critical{market_group="binance:BTC/USDT",timeframe="1h",version="1"} 1.0'
        in metrics
    )
    assert 'qt_model_feature_psi{feature="vol_20"' in metrics


def test_a_second_check_does_not_open_a_second_incident(btc) -> None:  # type: ignore[no-untyped-def]
    model_train(markets=[btc], timeframe="1h", config=FAST)
    candles_ingest(market=btc, timeframe="1h", rows=shifted_feed(300), source="test")

    drift_check_all()
    drift_check_all()

    assert Incident.objects.filter(code="MODEL_DRIFT").count() == 1


def test_the_hold_fallback_turns_every_signal_into_hold(btc, settings, paper_account) -> None:  # type: ignore[no-untyped-def]
    from trading.services.signals import signal_generate

    settings.QT_DRIFT_FALLBACK = "hold"
    mv = model_train(markets=[btc], timeframe="1h", config=FAST)
    rows = shifted_feed(300)
    candles_ingest(market=btc, timeframe="1h", rows=rows, source="test")

    assert model_drift_check(model_version=mv)["fallback"] == "hold"

    mv.refresh_from_db()
    assert mv.forced_hold and mv.is_active
    signal = signal_generate(
        market=btc, timeframe="1h", candle_time=parse_time(rows[-1]["open_time"])
    )
    assert signal is not None and signal.action == "HOLD" and signal.prob_hold == 1.0
    assert AuditEvent.objects.filter(action="model.hold", actor="system:drift").exists()


def test_the_previous_fallback_rolls_back_to_the_model_before(btc, settings) -> None:  # type: ignore[no-untyped-def]
    settings.QT_DRIFT_FALLBACK = "previous"
    first = model_train(markets=[btc], timeframe="1h", config=FAST, gates=LENIENT)
    second = model_train(markets=[btc], timeframe="1h", config=FAST, gates=LENIENT)
    assert second.is_active and second.previous == first
    candles_ingest(market=btc, timeframe="1h", rows=shifted_feed(300), source="test")

    result = model_drift_check(model_version=second)

    assert result["fallback"] == f"rolled back to v{first.version}"
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.is_active and not second.is_active
    assert AuditEvent.objects.get(action="model.rolled_back").actor == "system:drift"


def test_drift_is_unknown_without_enough_live_rows(db) -> None:  # type: ignore[no-untyped-def]
    mv = ModelVersion.objects.create(
        version=1,
        market_group="binance:NOPE/USDT",
        timeframe="1h",
        path="x",
        sha256="0" * 64,
        feature_set="qt_v2",
        feature_set_hash=FEATURE_SET_HASH,
        trained_at=datetime.now(UTC),
        drift_reference={"ret_1": {"edges": [0.0], "expected": [0.5, 0.5]}},
    )
    assert model_drift_check(model_version=mv)["status"] == "unknown"
