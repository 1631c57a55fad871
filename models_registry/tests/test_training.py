from __future__ import annotations

import hashlib
import itertools
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.db import IntegrityError, transaction

from marketdata.lib.features import FEATURE_SET_HASH, FEATURES
from marketdata.services.sync import market_register
from marketdata.tests.factories import load_real
from models_registry.models import ModelVersion
from models_registry.services.datasets import dataset_build, walk_forward
from models_registry.services.inference import ArtifactError, _load, model_predict
from models_registry.services.registry import PromotionError, model_version_promote
from models_registry.services.training import TrainingConfig, model_train
from models_registry.tests.factories import FAST, LENIENT
from risk.models import AuditEvent


@pytest.fixture
def markets(db, settings, tmp_path):  # type: ignore[no-untyped-def]
    settings.QT_ARTIFACT_DIR = tmp_path
    btc = market_register(exchange_code="binance", symbol="BTC/USDT")
    eth = market_register(exchange_code="binance", symbol="ETH/USDT")
    # The same 1,200 hours of 2021 for both markets.
    load_real(btc, start=5000, count=1200)
    load_real(eth, start=12392, count=1200)
    return [btc, eth]


def test_it_trains_evaluates_and_registers_a_model_with_honest_metrics(markets) -> None:
    mv = model_train(markets=markets, timeframe="1h", config=FAST)

    assert mv.version == 1
    assert mv.market_group == "binance:BTC/USDT,ETH/USDT"
    assert mv.sha256 == hashlib.sha256(Path(mv.path).read_bytes()).hexdigest()
    assert mv.feature_set_hash == FEATURE_SET_HASH
    assert mv.params_json["label"] == "forward" and mv.params_json["seed"] == 42
    m = mv.metrics_json
    assert 0 <= m["accuracy"] <= 1 and np.isfinite(m["log_loss"])
    assert set(m["f1"]) == {"SELL", "HOLD", "BUY"}
    assert set(m["feature_importance"]) == set(FEATURES)
    assert np.array(m["confusion_matrix"]).sum() == m["test_rows"] > 0
    assert set(m["lineage"]) == {"BTC/USDT", "ETH/USDT"}
    lineage = m["lineage"]["BTC/USDT"]
    assert lineage["candles"] == 1200 and len(lineage["checksum"]) == 64
    assert "binance BTC/USDT 1h candles" in lineage["source"]
    assert m["data_window"]["start"] < m["test_start"] <= m["test_end"] == m["data_window"]["end"]
    assert len(m["folds"]) == 2
    bt = m["backtest"]
    for key in ("sharpe", "sortino", "max_drawdown", "win_rate", "trades", "total_return"):
        assert key in bt
    assert "profit_factor" in bt and bt["fee_bps"] == 10.0 and bt["slippage_bps"] == 5.0
    assert set(bt["buy_and_hold"]) >= {"sharpe", "max_drawdown", "total_return"}
    assert bt["start"] == m["test_start"]
    assert set(mv.gates_json) == {"sharpe", "max_drawdown", "min_trades", "drift"}
    assert mv.gates_json["sharpe"]["threshold"] == 1.5
    assert AuditEvent.objects.filter(action="model.trained", object_id=str(mv.pk)).exists()


def test_a_first_model_that_fails_its_gates_runs_ungated_on_paper_only(markets) -> None:
    mv = model_train(markets=markets, timeframe="1h", config=FAST)

    # Real hourly data over seven weeks does not reach a Sharpe of 1.5 after costs.
    assert not mv.gates_passed and mv.status == ModelVersion.Status.REJECTED
    assert mv.is_active and mv.ungated
    assert "UNGATED" in str(mv)
    event = AuditEvent.objects.get(action="model.promoted", object_id=str(mv.pk))
    assert event.payload["ungated"] is True


def test_a_model_that_fails_its_gates_does_not_replace_a_serving_one(markets) -> None:
    first = model_train(markets=markets, timeframe="1h", config=FAST)
    second = model_train(markets=markets, timeframe="1h", config=FAST)

    assert first.is_active
    assert not second.is_active and second.status == ModelVersion.Status.REJECTED


def test_a_model_that_passes_its_gates_is_approved_and_promoted(markets) -> None:
    first = model_train(markets=markets, timeframe="1h", config=FAST)
    second = model_train(markets=markets, timeframe="1h", config=FAST, gates=LENIENT)

    first.refresh_from_db()
    assert second.status == ModelVersion.Status.ACTIVE and second.is_active
    assert not second.ungated and second.previous == first
    assert (first.is_active, first.status) == (False, ModelVersion.Status.RETIRED)


def test_the_same_data_and_seed_give_byte_identical_predictions(markets) -> None:
    first = model_train(markets=markets, timeframe="1h", config=FAST, activate=False)
    second = model_train(markets=markets, timeframe="1h", config=FAST, activate=False)
    rows = dataset_build(
        markets=markets, timeframe="1h", label="forward", horizon=4, threshold=0.006
    ).x[-500:]

    a = model_predict(model_version=first, features=rows)
    b = model_predict(model_version=second, features=rows)

    assert a.shape == (500, 3)
    assert a.tobytes() == b.tobytes()
    assert first.sha256 == second.sha256
    assert (
        first.metrics_json["oos_predictions_sha256"]
        == second.metrics_json["oos_predictions_sha256"]
    )
    assert first.version + 1 == second.version


def test_walk_forward_purges_training_labels_that_reach_into_the_test_window(markets) -> None:
    data = dataset_build(
        markets=markets, timeframe="1h", label="forward", horizon=4, threshold=0.006
    )
    folds = walk_forward(
        data,
        folds=3,
        test_fraction=0.3,
        test_start="",
        test_end="",
        embargo=12,
        valid_fraction=0.15,
    )

    assert len(folds) == 3
    for previous, fold in itertools.pairwise(folds):
        assert previous.test_end < fold.test_start
    for fold in folds:
        cut = fold.test_start - 12 * timedelta(hours=1)
        assert (data.label_end[fold.fit] < cut).all()
        assert (data.label_end[fold.valid] < cut).all()
        # fit rows are purged against the validation rows in the same way
        assert data.label_end[fold.fit].max() < data.times[fold.valid].min()
        assert not (fold.fit & fold.test).any() and not (fold.valid & fold.test).any()
        assert (data.times[fold.test] >= fold.test_start).all()
        # the label of every row looks exactly `horizon` bars ahead of it
        labelled = fold.fit
        assert ((data.label_end[labelled] - data.times[labelled]) >= timedelta(hours=4)).all()


def test_triple_barrier_labels_and_an_explicit_test_window_without_refit(markets) -> None:
    config = TrainingConfig(
        label="triple_barrier",
        threshold=0.01,
        stop_loss=0.008,
        n_estimators=20,
        folds=1,
        test_start="2021-06-10T00:00:00Z",
        refit=False,
    )

    mv = model_train(markets=markets, timeframe="1h", config=config, activate=False)

    assert mv.params_json["label"] == "triple_barrier" and mv.params_json["refit"] is False
    assert mv.metrics_json["test_start"].startswith("2021-06-10T00:00")
    assert mv.metrics_json["folds"][0]["trees"] == mv.metrics_json["trees"]


def test_the_database_refuses_two_active_models_for_one_group(markets) -> None:
    first = model_train(markets=markets, timeframe="1h", config=FAST)
    second = model_train(markets=markets, timeframe="1h", config=FAST, activate=False)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=second.pk).update(is_active=True)
    assert first.is_active


def test_a_rejected_model_cannot_be_promoted(markets) -> None:
    mv = model_train(markets=markets, timeframe="1h", config=FAST, activate=False)
    assert mv.status == ModelVersion.Status.REJECTED
    with pytest.raises(PromotionError, match="failed its gates"):
        model_version_promote(model_version=mv, actor="alice")


def test_inference_refuses_an_artifact_that_does_not_match_its_sha256(markets) -> None:
    mv = model_train(markets=markets, timeframe="1h", config=FAST)
    probabilities = model_predict(model_version=mv, features=np.zeros(len(FEATURES)))
    assert probabilities.shape == (1, 3)
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ArtifactError, match="another feature set"):
        model_predict(model_version=mv, features=np.zeros(len(FEATURES) - 3))
    Path(mv.path).write_bytes(Path(mv.path).read_bytes() + b" ")
    _load.cache_clear()
    with pytest.raises(ArtifactError, match="sha256"):
        model_predict(model_version=mv, features=np.zeros(len(FEATURES)))
    mv.forced_hold = True  # the drift fallback answers HOLD without loading anything
    assert model_predict(model_version=mv, features=np.zeros((2, len(FEATURES)))).tolist() == [
        [0.0, 1.0, 0.0],
        [0.0, 1.0, 0.0],
    ]


def test_training_without_enough_data_says_so(db, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings.QT_ARTIFACT_DIR = tmp_path
    btc = market_register(exchange_code="binance", symbol="BTC/USDT")
    load_real(btc, count=200)
    with pytest.raises(ValueError, match="need at least 300"):
        model_train(markets=[btc], timeframe="1h", config=FAST)


def test_an_unknown_label_method_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown label method"):
        TrainingConfig(label="moon")
