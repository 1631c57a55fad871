"""The model pages: what each role sees, the plots, and training progress."""

from __future__ import annotations

import pytest

from models_registry.models import TrainingRun
from models_registry.services.registry import model_version_promote
from models_registry.services.training import model_train
from models_registry.tests.factories import FAILED, FAST, model_row


@pytest.fixture
def trained(btc):  # type: ignore[no-untyped-def]
    return model_train(markets=[btc], timeframe="1h", config=FAST)


def test_the_registry_page_lists_versions_with_gates_and_marks_ungated_ones(  # type: ignore[no-untyped-def]
    carol, client_as, django_assert_max_num_queries
) -> None:
    model_version_promote(model_version=model_row(1, gates=FAILED), actor="s", allow_ungated=True)
    for version in range(2, 12):
        model_row(version)

    client = client_as(carol)
    with django_assert_max_num_queries(10):
        response = client.get("/models/")

    page = response.content.decode()
    assert response.status_code == 200
    assert "UNGATED · paper only" in page
    assert "✗ sharpe" in page and "✓ sharpe" in page
    assert "Promote</button>" not in page, "viewers get no operator controls"


def test_operators_get_promote_and_retrain_controls(alice, client_as) -> None:  # type: ignore[no-untyped-def]
    model_row(1)
    model_row(2, gates=FAILED)
    page = client_as(alice).get("/models/").content.decode()
    assert page.count("Promote</button>") == 2
    assert 'disabled title="failed its gates"' in page
    assert "Retrain binance:" in page


def test_the_model_page_shows_gates_metrics_and_plots(carol, client_as, trained) -> None:  # type: ignore[no-untyped-def]
    response = client_as(carol).get(f"/models/{trained.pk}/")

    page = response.content.decode()
    assert response.status_code == 200
    assert "Gates" in page and "max_drawdown" in page
    assert "Confusion matrix" in page and page.count('class="cell"') == 9
    assert "Feature importance" in page and "rsi_14" in page
    assert '<svg class="plot"' in page and 'class="strategy"' in page
    assert 'class="buy_and_hold"' in page
    assert "Walk-forward folds" in page and "Lineage" in page
    assert trained.sha256 in page


def test_people_without_a_role_cannot_see_the_models(charlie, client_as, client) -> None:  # type: ignore[no-untyped-def]
    assert client_as(charlie).get("/models/").status_code == 403
    assert client.get("/models/").status_code == 302


def test_a_training_row_shows_its_progress_bar_without_polling(  # type: ignore[no-untyped-def]
    carol, client_as, db
) -> None:
    running = TrainingRun.objects.create(
        market_group="binance:BTC/USDT",
        timeframe="1h",
        requested_by="alice",
        status=TrainingRun.Status.RUNNING,
        progress=40,
        message="fold 2/3",
    )
    page = client_as(carol).get(f"/models/runs/{running.pk}/").content.decode()
    # The worker pushes the progress over the live socket (quantum/tests/test_live_pushes.py).
    assert f'id="task-training-{running.pk}"' in page and "every" not in page
    assert 'value="40"' in page and "fold 2/3" in page
    running.status, running.progress = TrainingRun.Status.SUCCEEDED, 100
    running.save()
    page = client_as(carol).get(f"/models/runs/{running.pk}/").content.decode()
    assert "hx-trigger" not in page and 'value="100"' in page


def test_an_operator_starts_a_training_from_the_page(alice, bob, client_as, btc) -> None:  # type: ignore[no-untyped-def]
    form = {"market_group": "binance:BTC/USDT", "timeframe": "1h"}
    assert client_as(bob).post("/models/retrain/", form).status_code == 403

    response = client_as(alice).post("/models/retrain/", form, HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    assert "<progress" in response.content.decode()
    assert TrainingRun.objects.get().requested_by == "alice (web)"
    assert client_as(alice).post("/models/retrain/", {"market_group": "x"}).status_code == 400
