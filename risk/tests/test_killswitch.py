"""The kill switch stops new orders within one second while orders are flowing.

Two measurements: the real pre-trade checks hammered from an engine thread, and the real
execution loop (`trading.tasks.execute_decision`) run by a real Celery worker over the real
broker, as in production. Each engages the kill switch mid-stream and measures when the
last order got through.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import OperationalError, connection, connections, transaction
from django.utils import timezone

from marketdata.services.sync import market_register
from quantum.bootstrap import trading_defaults_ensure
from quantum.celery import app
from risk.models import RiskDecision, TradingState
from risk.services.checks import pretrade_check
from risk.services.state import halt_flags, kill_switch_set, state_lock
from risk.tests.factories import generous, mark
from trading.models import ExchangeAccount, Order

PRICE = Decimal("40000")


@pytest.mark.django_db(transaction=True)
def test_the_kill_switch_stops_checks_from_a_running_engine_within_one_second(
    sent_tasks: list,
) -> None:
    account = trading_defaults_ensure()
    market = market_register(exchange_code="binance", symbol="BTC/USDT")
    generous(max_orders_per_window=1_000_000)
    mark(market, PRICE)
    results: list[tuple[float, float, bool, str]] = []  # started, finished, approved, code
    errors: list[BaseException] = []
    stop = threading.Event()

    def engine() -> None:
        try:
            me = ExchangeAccount.objects.get(pk=account.pk)
            while not stop.is_set():
                started = time.monotonic()
                decision = pretrade_check(
                    account=me, market=market, side="BUY", quantity=Decimal("0.001"), price=PRICE
                )
                results.append((started, time.monotonic(), decision.approved, decision.code))
                # An engine submits between checks (network I/O). Without any gap, SQLite's
                # busy handler, which polls rather than queues, can starve another writer.
                time.sleep(0.005)
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=engine)
    thread.start()
    while len(results) < 20 and thread.is_alive():
        time.sleep(0.01)
    engaged = time.monotonic()
    kill_switch_set(on=True, reason="stop everything", actor="alice")
    committed = time.monotonic()
    time.sleep(1.5)
    stop.set()
    thread.join(timeout=30)

    assert not errors and not thread.is_alive()
    approved = [r for r in results if r[2]]
    after = [r for r in results if r[0] > committed]
    assert approved and approved[0][0] < engaged, "orders were flowing before the switch"
    assert len(after) >= 10, "the engine kept running after the switch"
    assert all((ok, code) == (False, "TRADING_HALTED") for _, _, ok, code in after)
    last_approved = max(finished for _, finished, ok, _ in results if ok)
    first_denied = min(finished for _, finished, ok, _ in results if not ok)
    assert last_approved - engaged < 1.0
    assert first_denied - engaged < 1.0
    print(f"kill switch returned after {committed - engaged:.3f}s; ", end="")
    print(
        f"first denial {first_denied - engaged:.3f}s, last approval {last_approved - engaged:.3f}s"
    )


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_the_kill_switch_stops_the_running_execution_loop_within_one_second() -> None:
    account = trading_defaults_ensure()
    market = market_register(exchange_code="binance", symbol="BTC/USDT")
    generous(max_orders_per_window=1_000_000)
    mark(market, PRICE)
    sent = 0

    def send(n: int, every: float) -> None:
        nonlocal sent
        for _ in range(n):
            sent += 1
            app.send_task(
                "trading.tasks.execute_decision",
                kwargs={
                    "account_id": account.pk,
                    "market_id": market.pk,
                    "side": "BUY",
                    "quantity": "0.001",
                    "decision": f"killswitch-test-{sent}",
                    "reference_price": str(PRICE),
                    "strategy": "test",
                },
            )
            time.sleep(every)

    def wait_for(predicate, timeout: float = 120) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        pytest.fail("the worker did not keep up")

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        send(40, every=0.02)
        # Orders are flowing (several filled) before the switch; the rest are still queued.
        wait_for(lambda: Order.objects.filter(status=Order.Status.FILLED).count() >= 5)
        engaged = timezone.now()
        kill_switch_set(on=True, reason="stop the loop", actor="alice")
        send(60, every=0.04)  # the loop keeps running: decisions keep arriving at the worker
        wait_for(lambda: RiskDecision.objects.count() >= sent)
        time.sleep(0.5)
    connections.close_all()

    orders = Order.objects.filter(account=account)
    assert orders.filter(created_at__lt=engaged).count() >= 5, "the loop was trading"
    last_order = orders.order_by("-created_at").first()
    assert last_order is not None
    assert last_order.created_at - engaged < timedelta(seconds=1)
    halted = RiskDecision.objects.filter(created_at__gt=engaged + timedelta(seconds=1))
    assert halted.count() >= 30, "the loop was still running after the switch"
    assert set(halted.values_list("approved", "code")) == {(False, "TRADING_HALTED")}
    assert not orders.exclude(status=Order.Status.FILLED).exists()


@pytest.mark.django_db(transaction=True)
def test_a_kill_switch_still_waiting_for_a_busy_database_already_denies_new_orders() -> None:
    account = trading_defaults_ensure()
    market = market_register(exchange_code="binance", symbol="BTC/USDT")
    generous(max_orders_per_window=1_000_000)
    mark(market, PRICE)
    held, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def busy_writer() -> None:  # another process's long transaction holds the state row
        try:
            with transaction.atomic():
                state_lock(None)
                held.set()
                release.wait(20)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    def operator() -> None:
        try:
            kill_switch_set(on=True, reason="exchange is on fire", actor="alice")
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    writer = threading.Thread(target=busy_writer)
    writer.start()
    assert held.wait(10)
    switch = threading.Thread(target=operator)
    switch.start()
    deadline = time.monotonic() + 5
    while not halt_flags(account) and time.monotonic() < deadline:
        time.sleep(0.01)

    # The switch is not recorded yet: its transaction waits for the busy writer...
    assert switch.is_alive()
    assert halt_flags(account) == {"global": "exchange is on fire"}
    if connection.vendor == "postgresql":
        # ...and the check (which locks only the account's row) is denied all the same.
        decision = pretrade_check(
            account=account, market=market, side="BUY", quantity=Decimal("0.001"), price=PRICE
        )
        assert switch.is_alive(), "denied before the switch's own transaction committed"
        assert (decision.approved, decision.code) == (False, "TRADING_HALTED")
        assert "exchange is on fire" in decision.detail
    release.set()
    writer.join(20)
    switch.join(20)

    assert not errors
    state = TradingState.objects.get(account=None)
    assert (state.state, state.kill_switch) == ("HALTED", True)
    after = pretrade_check(
        account=account, market=market, side="BUY", quantity=Decimal("0.001"), price=PRICE
    )
    assert (after.approved, after.code) == (False, "TRADING_HALTED")


@pytest.mark.django_db
def test_releasing_the_kill_switch_clears_its_fast_flag_and_trading_resumes(
    django_capture_on_commit_callbacks,
) -> None:
    account = trading_defaults_ensure()
    market = market_register(exchange_code="binance", symbol="BTC/USDT")
    generous(max_orders_per_window=1_000_000)
    mark(market, PRICE)
    kill_switch_set(on=True, reason="maintenance", actor="alice")
    assert halt_flags(account) == {"global": "maintenance"}

    with django_capture_on_commit_callbacks(execute=True):
        kill_switch_set(on=False, reason="maintenance over", actor="alice")

    assert halt_flags(account) == {}
    decision = pretrade_check(
        account=account, market=market, side="BUY", quantity=Decimal("0.001"), price=PRICE
    )
    assert decision.approved, decision.detail


@pytest.mark.django_db(transaction=True)
def test_a_kill_switch_that_cannot_be_recorded_raises_and_leaves_no_flag_behind() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("a lock timeout is how PostgreSQL refuses; SQLite waits out its busy timeout")
    account = trading_defaults_ensure()
    held, release = threading.Event(), threading.Event()

    def busy_writer() -> None:
        try:
            with transaction.atomic():
                state_lock(None)
                held.set()
                release.wait(20)
        finally:
            connection.close()

    writer = threading.Thread(target=busy_writer)
    writer.start()
    assert held.wait(10)
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '300ms'")
    try:
        with pytest.raises(OperationalError, match="lock"):
            kill_switch_set(on=True, reason="panic", actor="alice")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 0")
        release.set()
        writer.join(20)

    # The operator was told it failed; nothing pretends the switch is on.
    assert halt_flags(account) == {}
    assert not TradingState.objects.filter(kill_switch=True).exists()
