"""Backtest runs as records: the service, the Celery task, the pages, the exports, the CLI.

Candles are real (BTC/USDT 1h from ../shared/data) stored through the ingestion service;
runs go through `backtest_start` / `backtest_run`, and once through a real Celery worker
whose progress pushes reach a trader's live socket.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.management import call_command
from django.db import connections
from django.urls import reverse

from marketdata.models import Market
from marketdata.services.ingestion import candles_ingest
from marketdata.services.sync import market_register
from quantum.celery import app
from trading.models import BacktestRun
from trading.services.backtests import (
    BacktestConfigError,
    backtest_run,
    backtest_start,
    config_hash,
    config_validate,
)
from trading.tests.test_consumers import connect_then

FIRST_ROW, ROWS = 20000, 2000  # 2023-03: trends both ways, several EMA round trips


def _rows(data_dir: Path) -> list[dict[str, str]]:
    with (data_dir / "binance_BTCUSDT_1h.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return rows[FIRST_ROW : FIRST_ROW + ROWS]


@pytest.fixture
def btc(data_dir: Path) -> Market:
    market = market_register(exchange_code="binance", symbol="BTC/USDT")
    report = candles_ingest(market=market, timeframe="1h", rows=_rows(data_dir), source="test")
    assert report.inserted == ROWS
    return market


def _form(**overrides: object) -> dict[str, object]:
    market = Market.objects.get(symbol="BTC/USDT")
    form: dict[str, object] = {
        "strategy": "ema_cross",
        "params": "fast=12,slow=40",
        "market": market.pk,
        "timeframe": "1h",
        "start": "",
        "end": "",
        "fee_bps": "10",
        "slippage_bps": "5",
        "cash": "10000",
        "delay_bars": "1",
    }
    form.update(overrides)
    return form


def _config(btc: Market, **overrides: object) -> dict[str, object]:
    config: dict[str, object] = {
        "strategy": "ema_cross",
        "params": {"fast": 12, "slow": 40},
        "market": btc.symbol,
        "timeframe": "1h",
    }
    config.update(overrides)
    return config


@pytest.mark.django_db
def test_the_backtest_pages_need_a_login(client, btc) -> None:  # type: ignore[no-untyped-def]
    run = BacktestRun.objects.create(config={}, config_hash="x", data_source="db", code_version="t")
    for url in (
        reverse("backtests"),
        reverse("backtest-page", args=[run.pk]),
        reverse("backtest-page-progress", args=[run.pk]),
        reverse("backtest-page-export", args=[run.pk, "json"]),
    ):
        response = client.get(url)
        assert response.status_code == 302
        assert "/accounts/login/" in response["Location"]


@pytest.mark.django_db
def test_a_user_without_a_role_cannot_see_backtests(client_as, charlie, btc) -> None:  # type: ignore[no-untyped-def]
    assert client_as(charlie).get(reverse("backtests")).status_code == 403


@pytest.mark.django_db
def test_a_viewer_sees_the_runs_but_cannot_start_one(client_as, carol, btc) -> None:  # type: ignore[no-untyped-def]
    client = client_as(carol)
    page = client.get(reverse("backtests"))
    assert page.status_code == 200
    assert b"Start backtest" not in page.content
    assert client.post(reverse("backtests"), _form()).status_code == 403
    assert not BacktestRun.objects.exists()


@pytest.mark.django_db
def test_a_trader_starts_a_run_that_is_stored_with_its_record_and_queued_after_commit(
    client_as, bob, btc, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    client = client_as(bob)
    assert b"Start backtest" in client.get(reverse("backtests")).content
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(reverse("backtests"), _form(start="2023-04-01 00:00"))
    run = BacktestRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("backtest-page", args=[run.pk])
    assert len(callbacks) == 1, "the task is queued once the run is committed"
    assert run.created_by == bob
    assert run.status == BacktestRun.Status.QUEUED
    assert run.config["params"] == {"fast": 12, "slow": 40}
    assert run.config["start"].startswith("2023-04-01T00:00:00")
    assert run.config_hash == config_hash(run.config)
    assert run.data_source == "db:binance:BTC/USDT:1h"
    assert run.code_version and run.schema_version == 1


@pytest.mark.django_db
def test_bad_parameters_are_refused_with_a_message_and_nothing_is_stored(
    client_as, bob, btc
) -> None:  # type: ignore[no-untyped-def]
    client = client_as(bob)
    response = client.post(reverse("backtests"), _form(params="fast=50,slow=20"))
    assert response.status_code == 400
    assert b"fast &lt; slow" in response.content or b"fast < slow" in response.content
    response = client.post(reverse("backtests"), _form(cash="-5"))
    assert response.status_code == 400
    assert not BacktestRun.objects.exists()


@pytest.mark.django_db
def test_the_start_service_refuses_a_file_path_and_an_unknown_market(btc, bob) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BacktestConfigError, match="data: CSV files"):
        backtest_start(config={"data": "/etc/passwd"}, user=bob)
    with pytest.raises(BacktestConfigError, match="market: no DOGE/USDT"):
        backtest_start(config=_config(btc, market="DOGE/USDT"), user=bob)
    assert not BacktestRun.objects.exists()


@pytest.mark.django_db
def test_a_run_records_the_results_the_cli_prints_for_the_same_market_and_window(
    btc, bob, tmp_path, data_dir, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    start, end = "2023-02-01T00:00:00Z", "2023-03-15T00:00:00Z"
    in_window = [r for r in _rows(data_dir) if start <= r["timestamp"] <= end]
    with django_capture_on_commit_callbacks(execute=False):
        run = backtest_start(config=_config(btc, start=start, end=end), user=bob)
    run = backtest_run(run_id=run.pk)
    assert run.status == BacktestRun.Status.DONE
    assert run.progress == 1.0
    assert run.bars == len(in_window) > 1000
    assert run.data_start.isoformat() == "2023-02-01T00:00:00+00:00"  # type: ignore[union-attr]
    assert run.data_end.isoformat() == "2023-03-15T00:00:00+00:00"  # type: ignore[union-attr]
    assert run.results["metrics"]["trade_count"] >= 3  # type: ignore[index]

    out = tmp_path / "cli.json"
    call_command(
        "backtest",
        market="BTC/USDT",
        timeframe="1h",
        start=start,
        end=end,
        params="fast=12,slow=40",
        json_out=str(out),
    )
    cli = json.loads(out.read_text())
    assert cli == run.results
    # A redelivered task finds the run finished and leaves it alone.
    assert backtest_run(run_id=run.pk).finished_at == run.finished_at


@pytest.mark.django_db
def test_a_run_over_a_window_without_candles_fails_with_the_reason(btc, bob) -> None:  # type: ignore[no-untyped-def]
    config = config_validate(_config(btc, start="2015-01-01T00:00:00Z", end="2015-02-01T00:00:00Z"))
    run = BacktestRun.objects.create(
        config=config, config_hash="h", data_source="db", code_version="t"
    )
    run = backtest_run(run_id=run.pk)
    assert run.status == BacktestRun.Status.FAILED
    assert "fewer than two stored candles" in run.error
    assert run.results is None


@pytest.mark.django_db
def test_the_report_page_shows_metrics_charts_and_trades_and_exports_them(
    client_as, carol, btc
) -> None:  # type: ignore[no-untyped-def]
    config = config_validate(_config(btc))
    run = BacktestRun.objects.create(
        config=config, config_hash="h", data_source="db", code_version="t"
    )
    run = backtest_run(run_id=run.pk)
    results = run.results
    assert results is not None
    client = client_as(carol)
    page = client.get(reverse("backtest-page", args=[run.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert "sharpe" in html and "max_drawdown" in html
    assert 'id="backtest-equity-chart"' in html and 'id="backtest-drawdown-chart"' in html
    charts = page.context["charts"]
    assert len(charts["equity"]) == len(results["equity"])
    assert min(p["value"] for p in charts["drawdown"]) == pytest.approx(
        100 * results["metrics"]["max_drawdown"], abs=0.01
    )
    assert len(charts["markers"]) == 2 * len(results["trades"])
    assert html.count("<tr><td>20") == len(results["trades"])  # one row per trade

    exported = client.get(reverse("backtest-page-export", args=[run.pk, "json"]))
    assert "attachment" in exported["Content-Disposition"]
    body = json.loads(exported.content)
    assert body["trades"] == results["trades"] and body["metrics"] == results["metrics"]
    assert body["config_hash"] == "h" and body["schema_version"] == 1

    trades = list(
        csv.DictReader(
            io.StringIO(
                client.get(
                    reverse("backtest-page-export", args=[run.pk, "trades.csv"])
                ).content.decode()
            )
        )
    )
    assert trades == results["trades"]
    equity = client.get(reverse("backtest-page-export", args=[run.pk, "equity.csv"])).content
    assert len(equity.decode().strip().splitlines()) == len(results["equity"]) + 1
    assert client.get(reverse("backtest-page-export", args=[run.pk, "xml"])).status_code == 404


@pytest.mark.django_db
def test_the_progress_bar_polls_while_queued_and_reloads_the_page_when_done(
    client_as, carol, btc
) -> None:  # type: ignore[no-untyped-def]
    config = config_validate(_config(btc))
    run = BacktestRun.objects.create(
        config=config, config_hash="h", data_source="db", code_version="t"
    )
    client = client_as(carol)
    url = reverse("backtest-page-progress", args=[run.pk])
    queued = client.get(url)
    assert b'hx-trigger="every 1s"' in queued.content
    assert "HX-Refresh" not in queued
    backtest_run(run_id=run.pk)
    done = client.get(url)
    assert done["HX-Refresh"] == "true"
    assert b"every 1s" not in done.content and b'value="100"' in done.content
    assert f'id="task-backtest-{run.pk}"'.encode() in done.content, "the bar pushes replace"


@pytest.mark.django_db
def test_the_runs_list_costs_the_same_queries_for_one_run_or_many(
    client_as, carol, btc, django_assert_max_num_queries
) -> None:  # type: ignore[no-untyped-def]
    client = client_as(carol)
    for _ in range(2):
        BacktestRun.objects.create(
            config=config_validate(_config(btc)),
            config_hash="h",
            data_source="db",
            code_version="t",
            created_by=carol,
        )
    with django_assert_max_num_queries(8) as few:
        client.get(reverse("backtests"))
    for _ in range(20):
        BacktestRun.objects.create(
            config=config_validate(_config(btc)),
            config_hash="h",
            data_source="db",
            code_version="t",
            created_by=carol,
        )
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = client.get(reverse("backtests"))
    assert page.content.count(b"ema_cross") >= 22


PERCENT = re.compile(r'<progress max="100" value="(\d+)"')


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_run_started_on_the_page_progresses_on_a_live_socket_and_completes_in_a_worker(
    client_as, bob, btc
) -> None:  # type: ignore[no-untyped-def]
    client = client_as(bob)
    polled: list[str] = []

    def start_and_wait() -> BacktestRun:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
            response = client.post(reverse("backtests"), _form(params="fast=5,slow=20"))
            assert response.status_code == 302
            run = BacktestRun.objects.get()
            deadline = time.monotonic() + 60
            # Poll as the page does (every second there; faster here) until it says done.
            while time.monotonic() < deadline:
                polled.append(
                    client.get(reverse("backtest-page-progress", args=[run.pk])).content.decode()
                )
                if 'data-status="done"' in polled[-1]:
                    break
                time.sleep(0.05)
            run.refresh_from_db()
        connections.close_all()
        return run

    run, pushed = connect_then(client, start_and_wait)
    assert run.status == BacktestRun.Status.DONE
    percents = [int(m) for html in pushed for m in PERCENT.findall(html)]
    assert percents == sorted(percents), "progress only moves forward"
    assert len({p for p in percents if 0 < p < 100}) >= 5, percents
    assert percents[-1] == 100 and 'data-status="done"' in pushed[-1]
    assert all(f'id="task-backtest-{run.pk}"' in html for html in pushed)
    assert 'data-status="done"' in polled[-1]
    report = client.get(reverse("backtest-page", args=[run.pk]))
    assert report.context["metrics"]["trade_count"] == run.results["metrics"]["trade_count"]  # type: ignore[index]
