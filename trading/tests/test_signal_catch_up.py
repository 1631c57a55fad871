"""A closed bar whose signal task was lost is sent again, once, while it is still fresh."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from quantum.celery import app
from trading.services.signals import signals_catch_up
from trading.tests.factories import CandleFactory, ModelVersionFactory, SignalFactory

pytestmark = pytest.mark.django_db


def closed_ago(seconds: int):  # type: ignore[no-untyped-def]
    """A 1h bar that closed `seconds` ago (its open time is one hour before its close)."""
    return timezone.now() - timedelta(hours=1, seconds=seconds)


@pytest.fixture
def broker_queue() -> Iterator[list[tuple[str, list]]]:
    """The messages sent to the default queue during the test, read back from Redis."""
    received: list[tuple[str, list]] = []
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue(app.conf.task_default_queue)
        queue.clear()

        def drain() -> list[tuple[str, list]]:
            while True:
                try:
                    message = queue.get(timeout=0.5)
                except queue.Empty:
                    return received
                args, _kwargs, _embed = message.decode()
                received.append((message.headers["task"], list(args)))
                message.ack()

        yield drain  # type: ignore[misc]
        queue.clear()
        queue.close()


def test_it_sends_the_task_again_for_a_fresh_bar_that_has_no_signal(market, broker_queue) -> None:
    ModelVersionFactory(is_active=True)
    bar = CandleFactory(market=market, open_time=closed_ago(30).replace(microsecond=0))

    sent = signals_catch_up(timeframe="1h")

    assert sent == [(market.pk, bar.open_time)]
    assert broker_queue() == [
        ("trading.tasks.process_closed_candle", [market.pk, "1h", bar.open_time.isoformat()])
    ]


def test_it_leaves_alone_a_bar_that_has_its_signal(market, broker_queue) -> None:
    model = ModelVersionFactory(is_active=True)
    bar = CandleFactory(market=market, open_time=closed_ago(30))
    SignalFactory(market=market, candle_time=bar.open_time, model_version=model, timeframe="1h")

    assert signals_catch_up(timeframe="1h") == []
    assert broker_queue() == []


@pytest.mark.parametrize("seconds", [5, 3600])
def test_it_waits_for_the_ingest_task_and_gives_up_on_a_stale_bar(
    market, broker_queue, seconds: int
) -> None:
    ModelVersionFactory(is_active=True)
    CandleFactory(market=market, open_time=closed_ago(seconds))

    assert signals_catch_up(timeframe="1h") == []  # just closed: its own task is running
    assert broker_queue() == []  # or an hour ago: a decision on it would be stale


def test_it_ignores_a_market_without_an_active_model(market, broker_queue) -> None:
    CandleFactory(market=market, open_time=closed_ago(30))

    assert signals_catch_up(timeframe="1h") == []
    assert broker_queue() == []
