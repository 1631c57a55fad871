from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from risk.management.commands.killswitch import os_user
from risk.models import AuditEvent, TradingState
from risk.services.audit import audit_head, audit_record
from risk.tests.test_audit import tampering
from trading.models import ExchangeAccount


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_it_reports_an_intact_audit_chain(db: None) -> None:
    for i in range(3):
        audit_record(actor="system:test", action="test.event", payload={"i": i})

    _, digest = audit_head()
    assert run("audit", "verify").splitlines() == ["3 entries, chain intact", f"head 3:{digest}"]


def test_it_fails_naming_the_first_bad_entry(db: None) -> None:
    for i in range(3):
        audit_record(actor="system:test", action="test.event", payload={"i": i})
    with tampering():
        AuditEvent.objects.filter(seq=2).update(payload={"i": 99})

    with pytest.raises(CommandError, match=r"entry #2: hash mismatch") as excinfo:
        run("audit", "verify")

    assert excinfo.value.returncode == 1


def test_it_exits_non_zero_from_the_command_line_when_the_chain_is_broken(
    db: None, capsys: pytest.CaptureFixture[str]
) -> None:
    audit_record(actor="system:test", action="test.event")
    with tampering():
        AuditEvent.objects.update(actor="mallory")

    from django.core.management import ManagementUtility

    with pytest.raises(SystemExit) as excinfo:
        ManagementUtility(["manage.py", "audit", "verify"]).execute()

    assert excinfo.value.code == 1
    captured = capsys.readouterr()
    assert "entry #1: hash mismatch" in captured.err
    assert captured.out == ""


def test_it_rejects_an_unknown_audit_subcommand(db: None) -> None:
    with pytest.raises(CommandError, match="invalid choice"):
        run("audit", "repair")


def test_it_turns_the_kill_switch_on_as_the_os_user(paper_account: ExchangeAccount) -> None:
    output = run("killswitch", "on", "--reason", "exchange outage")

    state = TradingState.objects.get(account=None)
    assert (state.state, state.kill_switch, state.reason) == ("HALTED", True, "exchange outage")
    assert "HALTED" in output
    event = AuditEvent.objects.get(action="killswitch.on")
    assert event.actor == f"cli:{os_user()}"
    assert event.payload == {"reason": "exchange outage"}


def test_it_turns_the_kill_switch_off(paper_account: ExchangeAccount) -> None:
    run("killswitch", "on", "--reason", "exchange outage")

    run("killswitch", "off", "--reason", "exchange back")

    state = TradingState.objects.get(account=None)
    assert (state.state, state.kill_switch) == ("ACTIVE", False)
    assert AuditEvent.objects.filter(action="killswitch.off").count() == 1


@pytest.mark.parametrize("args", [("killswitch", "on"), ("killswitch", "on", "--reason", "  ")])
def test_it_refuses_the_kill_switch_without_a_reason(
    paper_account: ExchangeAccount, args: tuple[str, ...]
) -> None:
    with pytest.raises(CommandError, match="--reason is required"):
        run(*args)

    assert TradingState.objects.get(account=None).state == "ACTIVE"
    assert not AuditEvent.objects.exists()


def test_it_refuses_an_unknown_switch_position(paper_account: ExchangeAccount) -> None:
    with pytest.raises(CommandError, match="invalid choice"):
        run("killswitch", "maybe", "--reason", "testing")
