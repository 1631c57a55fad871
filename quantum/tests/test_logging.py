"""JSON logs, the level policy and a correlation id that crosses the worker boundary."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from marketdata.services.ingestion import candles_ingest
from quantum.celery import app
from quantum.logging import HEADER, JsonFormatter, RequestIdFilter, correlation, logger_levels
from quantum.tests.workers import celery_worker, json_lines, wait_for
from trading.models import Order


def _format(msg: str, **extra: object) -> dict:
    record = logging.LogRecord("trading.test", logging.INFO, __file__, 1, msg, (), None)
    for key, value in extra.items():
        setattr(record, key, value)
    RequestIdFilter().filter(record)
    return json.loads(JsonFormatter().format(record))


def test_a_log_line_is_one_json_object_with_the_ids_and_extra_fields() -> None:
    with correlation("decision-42"):
        line = _format("order denied", reason="MAX_NOTIONAL", order=7)
    assert line["msg"] == "order denied"
    assert (line["level"], line["logger"]) == ("INFO", "trading.test")
    assert line["correlation_id"] == "decision-42"
    assert line["request_id"] == "-"
    assert (line["reason"], line["order"]) == ("MAX_NOTIONAL", 7)
    assert datetime.fromisoformat(line["ts"]).tzinfo is not None


def test_a_forged_correlation_id_is_replaced_by_a_fresh_one() -> None:
    with correlation('x", "level": "CRITICAL') as cid:
        assert cid != 'x", "level": "CRITICAL'
        assert _format("m")["correlation_id"] == cid


def test_the_level_policy_reads_overrides_per_logger_and_rejects_bad_ones() -> None:
    assert logger_levels("trading=debug, celery=WARNING") == {
        "trading": {"level": "DEBUG"},
        "celery": {"level": "WARNING"},
    }
    assert logger_levels("") == {}
    with pytest.raises(ValueError, match="'trading=LOUD' is not LOGGER=LEVEL"):
        logger_levels("trading=LOUD")


def test_a_request_id_becomes_the_correlation_id_of_the_request(client, caplog) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/health", HTTP_X_REQUEST_ID="edge-77")
    assert response["X-Request-ID"] == "edge-77"


def _ingest_bar(market, at: datetime, *, live: bool = False) -> None:  # type: ignore[no-untyped-def]
    row = {"open_time": at.isoformat(), "open": "100", "high": "110", "low": "90"}
    row |= {"close": "105", "volume": "12.5"}
    candles_ingest(market=market, timeframe="1h", rows=[row], source="test", live=live)


def test_a_new_candle_hands_its_correlation_id_to_the_signal_task(
    market, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with app.connection_for_write() as conn:
        client = conn.default_channel.client
        client.delete("celery")
        try:
            with correlation("tick-7f3a") as cid, django_capture_on_commit_callbacks(execute=True):
                _ingest_bar(market, datetime(2024, 1, 1, tzinfo=UTC), live=True)
            messages = [json.loads(m) for m in client.lrange("celery", 0, -1)]
        finally:
            client.delete("celery")
    tasks = [(m["headers"]["task"], m["headers"].get(HEADER)) for m in messages]
    assert tasks == [("trading.tasks.process_closed_candle", cid)]


@pytest.mark.django_db(transaction=True)
def test_one_decision_logs_one_correlation_id_from_the_order_to_the_fill_and_the_push(
    market, paper_account, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from trading.tasks import execute_decision

    _ingest_bar(market, datetime(2024, 1, 1, tzinfo=UTC))
    log = tmp_path / "worker.log"
    with celery_worker(log) as queue:
        with correlation("decision-9c1e") as cid:
            execute_decision.apply_async(
                args=[paper_account.pk, market.pk, "BUY", "1", "corr-1", "105"], queue=queue
            )
        order = wait_for(
            lambda: Order.objects.filter(status=Order.Status.FILLED).first(),
            timeout=60,
            what="the order to fill in the worker",
        )
        wait_for(
            lambda: any("pushed" in line.get("msg", "") for line in json_lines(log)),
            timeout=20,
            what="the push after commit",
        )
    lines = [line for line in json_lines(log) if line.get("correlation_id") == cid]
    messages = [line["msg"] for line in lines]
    assert any(m.startswith(f"order {order.client_order_id} -> submitted") for m in messages)
    assert any(m.startswith("fill ") and order.client_order_id in m for m in messages)
    assert any(m.startswith(f"order {order.client_order_id} -> filled") for m in messages)
    assert "pushed trading/push/fill.html to live" in messages
    assert {line.get("task") for line in lines} == {"trading.tasks.execute_decision"}
    # The worker's other lines (its banner, "ready") belong to no decision.
    assert all(
        line["correlation_id"] == "-" for line in json_lines(log) if "ready" in line.get("msg", "")
    )
