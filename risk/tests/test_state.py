from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from risk.models import AuditEvent, FlattenRequest, Incident, TradingState
from risk.services.state import (
    KillSwitchEngaged,
    OperatorRequired,
    ReasonRequired,
    kill_switch_set,
    trading_state_escalate,
    trading_state_recover,
    trading_state_set,
)
from trading.models import ExchangeAccount

State = TradingState.State


def test_it_halts_trading_when_the_kill_switch_is_turned_on(
    paper_account: ExchangeAccount, alice: User
) -> None:
    state = kill_switch_set(on=True, reason="exchange outage", actor=alice.username)

    stored = TradingState.objects.get(account=None)
    assert stored == state
    assert (stored.state, stored.kill_switch, stored.reason, stored.code) == (
        State.HALTED,
        True,
        "exchange outage",
        "KILL_SWITCH",
    )
    incident = Incident.objects.get()
    assert (incident.severity, incident.code) == (Incident.Severity.CRITICAL, "KILL_SWITCH")
    assert "alice" in incident.title
    event = AuditEvent.objects.get(action="killswitch.on")
    assert (event.actor, event.payload) == ("alice", {"reason": "exchange outage"})
    assert event.object_id == str(state.pk)


@pytest.mark.parametrize("reason", ["", "   ", "\n\t"])
def test_it_requires_a_reason(paper_account: ExchangeAccount, alice: User, reason: str) -> None:
    with pytest.raises(ReasonRequired):
        kill_switch_set(on=True, reason=reason, actor=alice.username)

    stored = TradingState.objects.get(account=None)
    assert (stored.state, stored.kill_switch) == (State.ACTIVE, False)
    assert not Incident.objects.exists()
    assert not AuditEvent.objects.exists()


def test_it_restores_active_trading_when_turned_off(
    paper_account: ExchangeAccount, alice: User
) -> None:
    kill_switch_set(on=True, reason="exchange outage", actor=alice.username)

    state = kill_switch_set(on=False, reason="exchange back", actor=alice.username)

    stored = TradingState.objects.get(account=None)
    assert stored == state
    assert (stored.state, stored.kill_switch) == (State.ACTIVE, False)
    assert list(AuditEvent.objects.values_list("action", flat=True)) == [
        "killswitch.on",
        "killswitch.off",
    ]
    assert Incident.objects.filter(severity=Incident.Severity.INFO).count() == 1


def test_it_refuses_to_let_the_system_release_the_kill_switch(
    paper_account: ExchangeAccount,
) -> None:
    kill_switch_set(on=True, reason="daily loss", actor="system:risk", account=paper_account)

    with pytest.raises(OperatorRequired):
        kill_switch_set(on=False, reason="auto", actor="system:risk", account=paper_account)

    assert TradingState.objects.get(account=paper_account).kill_switch is True


def test_it_creates_the_global_state_if_it_is_missing(db: None, alice: User) -> None:
    state = kill_switch_set(on=True, reason="first start", actor=alice.username)

    assert state.account is None
    assert TradingState.objects.get().state == State.HALTED


def test_it_halts_one_account_with_its_own_kill_switch(
    paper_account: ExchangeAccount, alice: User
) -> None:
    kill_switch_set(on=True, reason="key leaked", actor=alice.username, account=paper_account)

    own = TradingState.objects.get(account=paper_account)
    assert (own.state, own.kill_switch) == (State.HALTED, True)
    assert TradingState.objects.get(account=None).state == State.ACTIVE
    event = AuditEvent.objects.get(action="killswitch.on")
    assert event.payload == {"scope": "account paper", "reason": "key leaked"}
    assert Incident.objects.get().account == paper_account


def test_it_cancels_open_orders_after_commit(
    paper_account: ExchangeAccount,
    alice: User,
    sent_tasks: list,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        kill_switch_set(on=True, reason="outage", actor=alice.username, account=paper_account)

    [(name, kwargs)] = sent_tasks
    assert name == "risk.tasks.cancel_open_orders"
    assert kwargs["account_id"] == paper_account.pk
    assert kwargs["cause"] == "kill switch: outage"


def test_it_sends_nothing_when_the_transaction_rolls_back(
    paper_account: ExchangeAccount, alice: User, sent_tasks: list
) -> None:
    from django.db import transaction

    with pytest.raises(RuntimeError), transaction.atomic():
        kill_switch_set(on=True, reason="outage", actor=alice.username, flatten=True)
        raise RuntimeError("rolled back")

    assert sent_tasks == []
    assert TradingState.objects.get(account=None).state == State.ACTIVE


def test_it_requests_a_flatten_that_the_engine_carries_out(
    paper_account: ExchangeAccount,
    alice: User,
    sent_tasks: list,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        kill_switch_set(on=True, reason="get out", actor=alice.username, flatten=True)

    request = FlattenRequest.objects.get()
    assert (request.account, request.requested_by, request.status) == (None, "alice", "pending")
    assert ("trading.tasks.flatten_positions", {"request_id": request.pk}) in sent_tasks
    assert AuditEvent.objects.filter(action="positions.flatten_requested").exists()
    assert AuditEvent.objects.get(action="killswitch.on").payload["flatten"] is True


def test_an_operator_sets_a_state_with_a_reason(
    paper_account: ExchangeAccount, alice: User
) -> None:
    state = trading_state_set(
        state=State.REDUCING, reason="volatile", actor=alice.username, account=paper_account
    )

    assert (state.state, state.code, state.account) == (
        State.REDUCING,
        "TRADING_STATE",
        paper_account,
    )
    event = AuditEvent.objects.get(action="trading_state.changed")
    assert event.payload == {
        "scope": "account paper",
        "from": "ACTIVE",
        "to": "REDUCING",
        "code": "TRADING_STATE",
        "reason": "volatile",
    }
    incident = Incident.objects.get()
    assert (incident.severity, incident.code) == ("warning", "TRADING_STATE")


def test_it_will_not_set_active_under_the_kill_switch(
    paper_account: ExchangeAccount, alice: User
) -> None:
    kill_switch_set(on=True, reason="outage", actor=alice.username)

    with pytest.raises(KillSwitchEngaged):
        trading_state_set(state=State.ACTIVE, reason="go", actor=alice.username)


def test_the_breaker_only_escalates(paper_account: ExchangeAccount, alice: User) -> None:
    trading_state_escalate(to=State.HALTED, code="EXECUTION_ERRORS", reason="3 errors")

    state = trading_state_escalate(to=State.REDUCING, code="SLIPPAGE", reason="slipped")

    assert (state.state, state.code) == (State.HALTED, "EXECUTION_ERRORS")
    # Each cause is still seen as an incident.
    assert set(Incident.objects.values_list("code", flat=True)) == {"EXECUTION_ERRORS", "SLIPPAGE"}
    assert AuditEvent.objects.filter(action="trading_state.escalated").count() == 1


def test_only_the_cause_that_set_a_state_clears_it(paper_account: ExchangeAccount) -> None:
    trading_state_escalate(to=State.REDUCING, code="DATA_STALE", reason="stale")
    assert trading_state_recover(code="SLIPPAGE", reason="fine") is None

    state = trading_state_recover(code="DATA_STALE", reason="fresh")

    assert state is not None and state.state == State.ACTIVE
    trading_state_escalate(to=State.HALTED, code="RECONCILIATION_MISMATCH", reason="x")
    assert trading_state_recover(code="DATA_STALE", reason="fresh") is None
    assert TradingState.objects.get(account=None).state == State.HALTED


def test_it_pushes_the_new_state_to_open_pages_after_commit(
    paper_account: ExchangeAccount,
    alice: User,
    sent_tasks: list,
    django_capture_on_commit_callbacks: Any,
) -> None:
    import asyncio

    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from quantum.realtime import LIVE_GROUP

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(LIVE_GROUP, channel)

    async def receive() -> dict:
        return await asyncio.wait_for(layer.receive(channel), timeout=5)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        kill_switch_set(on=True, reason="outage", actor=alice.username)
    assert callbacks  # queued for commit, nothing sent yet
    for callback in callbacks:
        callback()
    messages = [async_to_sync(receive)() for _ in range(2)]  # the state, the incident cue

    html = "".join(m["html"] for m in messages)
    assert 'id="trading-state"' in html and "HALTED" in html and "kill switch" in html
    assert "outage" not in html  # reasons stay on the operators' pages
