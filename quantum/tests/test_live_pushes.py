"""Live updates through base.html's one socket: the risk pages open no socket of their own,
and long tasks (training) push their progress instead of being polled."""

from __future__ import annotations

import re

import pytest
from django.db import transaction

from quantum.realtime import task_progress_push
from trading.tests.test_consumer_roles import received_by

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_risk_pages_open_no_socket_of_their_own(alice, client_as) -> None:  # type: ignore[no-untyped-def]
    client = client_as(alice)
    for url, target in (("/risk/", "risk-refresh"), ("/risk/incidents/", "incidents-refresh")):
        page = client.get(url).content.decode()
        # One socket (the base layout's): a second one delivered every push twice.
        assert page.count("ws-connect=") == 1, url
        assert 'id="live-socket"' in page
        # The element each operator push swaps out of band is on the page.
        assert f'id="{target}"' in page, url


def test_task_progress_reaches_only_the_roles_it_names(alice, carol, client_as) -> None:  # type: ignore[no-untyped-def]
    def push() -> None:
        with transaction.atomic():
            task_progress_push(kind="backtest", task_id=7, percent=140, status="running")
            task_progress_push(
                kind="training", task_id=3, percent=50, status="running", role="operator"
            )

    operator, viewer = received_by([client_as(alice), client_as(carol)], push)
    assert len(operator) == 2 and len(viewer) == 1
    bar = viewer[0]
    assert 'id="task-backtest-7"' in bar and 'hx-swap-oob="true"' in bar
    assert 'value="100"' in bar, "percent is clamped to 0..100"
    assert 'id="task-training-3"' in operator[1]


def test_a_training_pushes_its_progress_and_a_finished_row_reloads_itself(  # type: ignore[no-untyped-def]
    carol, client_as, settings, tmp_path
) -> None:
    from marketdata.services.sync import market_register
    from marketdata.tests.factories import load_real
    from models_registry.services.retraining import training_run_execute, training_run_request
    from models_registry.tests.factories import FAST

    settings.QT_ARTIFACT_DIR = tmp_path
    btc = market_register(exchange_code="binance", symbol="BTC/USDT")
    load_real(btc, start=19900, count=1000)
    run = training_run_request(
        market_group="binance:BTC/USDT",
        timeframe="1h",
        actor="alice",
        config=FAST,
        enqueue=False,
    )

    (pushes,) = received_by([client_as(carol)], lambda: training_run_execute(run=run))

    bars = [p for p in pushes if f'id="task-training-{run.pk}"' in p]
    assert len(bars) == len(pushes) >= 5
    percents = [int(re.search(r'data-percent="(\d+)"', p).group(1)) for p in bars]  # type: ignore[union-attr]
    assert percents == sorted(percents) and percents[-1] == 100
    assert 'data-status="running"' in bars[0] and "building features" in "".join(bars)
    last = bars[-1]
    assert 'data-status="succeeded"' in last
    assert f'hx-get="/models/runs/{run.pk}/"' in last and 'hx-trigger="load"' in last
    # The row it reloads names the new model.
    row = client_as(carol).get(f"/models/runs/{run.pk}/").content.decode()
    assert "data-task-root" in row and "v1" in row
