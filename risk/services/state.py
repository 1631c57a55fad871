"""Trading state (ACTIVE / REDUCING / HALTED, global and per account) and the kill switch.

Every change goes through `_state_change`: persisted, audited, an incident of the matching
severity, and the new state pushed to open pages after commit.
"""

from __future__ import annotations

import logging

from django.core.cache import cache
from django.db import transaction

from quantum.realtime import push_html
from risk.models import Incident, TradingState
from risk.services.audit import audit_record
from risk.services.incidents import incident_open
from trading.models import ExchangeAccount

State = TradingState.State
logger = logging.getLogger(__name__)

# The severity of the incident a state change raises (docs/RISK.md, severity taxonomy).
INCIDENT_SEVERITY = {
    State.ACTIVE: Incident.Severity.INFO,
    State.REDUCING: Incident.Severity.WARNING,
    State.HALTED: Incident.Severity.CRITICAL,
}


class ReasonRequired(ValueError):
    pass


class OperatorRequired(PermissionError):
    """Only a person (an operator) relaxes a state or releases the kill switch."""


class KillSwitchEngaged(ValueError):
    pass


def scope_name(account: ExchangeAccount | None) -> str:
    return f"account {account.name}" if account is not None else "global"


def state_lock(account: ExchangeAccount | None) -> TradingState:
    """The state row of a scope, locked for this transaction (created ACTIVE if missing)."""
    state, _ = TradingState.objects.select_for_update().get_or_create(account=account)
    return state


def states_push() -> None:
    """Send the header badge and the risk page's state table to open pages (after commit)."""
    push_html(
        template="risk/push/state.html",
        context={"state": TradingState.objects.filter(account__isnull=True).first()},
    )
    # The risk page's controls reload through their own operator view: operators only.
    push_html(template="risk/push/controls.html", context={}, role="operator")


def _state_change(
    *,
    state: TradingState,
    to: str,
    kill_switch: bool,
    reason: str,
    actor: str,
    code: str,
    action: str,
    incident_title: str,
    severity: str | None = None,
    payload: dict[str, object] | None = None,
) -> TradingState:
    before = state.state
    state.state = to
    state.kill_switch = kill_switch
    state.reason = reason[:500]
    state.code = code
    state.save()
    if payload is None:
        payload = {"scope": scope_name(state.account), "from": before, "to": to, "code": code}
    audit_record(actor=actor, action=action, obj=state, payload={**payload, "reason": reason})
    # The audit event above is the record of this change; the incident is for the operator.
    incident_open(
        severity=severity or INCIDENT_SEVERITY[State(to)],
        code=code,
        title=incident_title,
        detail=reason,
        account=state.account,
        audit=False,
    )
    states_push()
    return state


@transaction.atomic
def trading_state_set(
    *, state: str, reason: str, actor: str, account: ExchangeAccount | None = None
) -> TradingState:
    """An operator sets a scope's state (any direction); a reason is always required."""
    if not reason.strip():
        raise ReasonRequired("a reason is required to change the trading state")
    if actor.startswith("system:"):
        raise OperatorRequired("the trading state is set by an operator; use the breaker")
    row = state_lock(account)
    if row.kill_switch and state != State.HALTED:
        raise KillSwitchEngaged("the kill switch is on: release it first (with a reason)")
    if row.state == state:
        return row
    return _state_change(
        state=row,
        to=state,
        kill_switch=row.kill_switch,
        reason=reason,
        actor=actor,
        code="TRADING_STATE",
        action="trading_state.changed",
        incident_title=f"{scope_name(account).capitalize()} trading {state} (set by {actor})",
    )


@transaction.atomic
def trading_state_escalate(
    *,
    to: str,
    code: str,
    reason: str,
    account: ExchangeAccount | None = None,
    actor: str = "system:risk",
    severity: str | None = None,
) -> TradingState:
    """Make a scope at least as restrictive as `to` (never relaxes it): the circuit breaker.

    An incident is opened even when the state is already there, so each cause is seen.
    """
    row = state_lock(account)
    title = f"{scope_name(account).capitalize()}: {code} → {to}"
    if TradingState.SEVERITY[State(row.state)] >= TradingState.SEVERITY[State(to)]:
        incident_open(
            severity=severity or INCIDENT_SEVERITY[State(to)],
            code=code,
            title=title,
            detail=reason,
            account=account,
        )
        return row
    return _state_change(
        state=row,
        to=to,
        kill_switch=row.kill_switch,
        reason=reason,
        actor=actor,
        code=code,
        action="trading_state.escalated",
        incident_title=title,
        severity=severity,
    )


@transaction.atomic
def trading_state_recover(
    *, code: str, reason: str, account: ExchangeAccount | None = None
) -> TradingState | None:
    """Back to ACTIVE, but only if `code` is still what put the scope where it is.

    Used for causes that clear by themselves (stale market data that flows again); anything
    that escalated since, or an operator's own setting, stays until an operator changes it.
    """
    row = state_lock(account)
    if row.kill_switch or row.code != code or row.state == State.ACTIVE:
        return None
    return _state_change(
        state=row,
        to=State.ACTIVE,
        kill_switch=False,
        reason=reason,
        actor="system:risk",
        code=code,
        action="trading_state.recovered",
        incident_title=f"{scope_name(account).capitalize()}: {code} cleared → ACTIVE",
    )


# The kill switch's fast path: a flag in Redis, set before the database transaction that
# records the switch. Pre-trade checks read it, so a switch that has to wait for a busy
# database (SQLite lets one writer in at a time, and its busy handler polls rather than
# queues) still stops new orders at once. It lives HALT_FLAG_TTL_S seconds: by then the
# state row is committed (or the switch failed and said so), and the row is the truth.
HALT_FLAG_TTL_S = 30


def _halt_key(account: ExchangeAccount | None) -> str:
    return f"risk:halt:{account.pk if account is not None else 'global'}"


def halt_flags(account: ExchangeAccount) -> dict[str, str]:
    """Kill switches engaged in the last moments, by scope ("global", "account") → reason."""
    keys = {_halt_key(None): "global", _halt_key(account): "account"}
    try:
        found = cache.get_many(list(keys))
    except Exception:
        # Redis is down: the state rows (read in the same check) still decide.
        logger.warning("kill switch flags unreadable; the trading state rows decide")
        return {}
    return {keys[key]: str(reason) for key, reason in found.items()}


def _halt_flag(account: ExchangeAccount | None, reason: str | None) -> None:
    try:
        if reason is None:
            cache.delete(_halt_key(account))
        else:
            cache.set(_halt_key(account), reason[:500], timeout=HALT_FLAG_TTL_S)
    except Exception:
        action = "set" if reason else "cleared"
        logger.exception("kill switch flag not %s; the state row decides", action)


def kill_switch_set(
    *,
    on: bool,
    reason: str,
    actor: str,
    account: ExchangeAccount | None = None,
    flatten: bool = False,
    code: str = "KILL_SWITCH",
) -> TradingState:
    """Halt (on) or release (off) trading, globally or for one account; a reason is required.

    On: every later pre-trade check is denied (TRADING_HALTED) from the moment the switch's
    flag is set, before the state row is even locked (see HALT_FLAG_TTL_S); open orders of
    the scope are cancelled by a task enqueued after commit; with `flatten` the positions
    are closed too (`positions_flatten_request`). Off: operators only.
    """
    if not reason.strip():
        raise ReasonRequired("a reason is required to use the kill switch")
    if not on and actor.startswith("system:"):
        raise OperatorRequired("only an operator releases the kill switch")
    if not on:
        return _kill_switch_record(
            on=on, reason=reason, actor=actor, account=account, flatten=flatten, code=code
        )
    _halt_flag(account, reason)
    try:
        return _kill_switch_record(
            on=on, reason=reason, actor=actor, account=account, flatten=flatten, code=code
        )
    except BaseException:
        # Not recorded: say so (the caller gets the error) rather than halt without a record.
        _halt_flag(account, None)
        raise


@transaction.atomic
def _kill_switch_record(
    *,
    on: bool,
    reason: str,
    actor: str,
    account: ExchangeAccount | None,
    flatten: bool,
    code: str,
) -> TradingState:
    from risk.services.orders import open_orders_cancel_enqueue, positions_flatten_request

    row = state_lock(account)
    if not on:
        # Released: the flag goes when the release commits (until then the row still halts).
        transaction.on_commit(lambda: _halt_flag(account, None))
    if row.kill_switch == on and row.state == (State.HALTED if on else State.ACTIVE):
        if on and flatten:
            positions_flatten_request(actor=actor, reason=reason, account=account)
        return row
    scope = scope_name(account)
    by = f"{actor} ({code})" if code != "KILL_SWITCH" else actor
    # {"reason": ...} alone for the common case (manual, global); scope, cause and flatten
    # when they say something.
    payload: dict[str, object] = {}
    if account is not None:
        payload["scope"] = scope
    if on and code != "KILL_SWITCH":
        payload["code"] = code
    if on and flatten:
        payload["flatten"] = True
    _state_change(
        state=row,
        to=State.HALTED if on else State.ACTIVE,
        kill_switch=on,
        reason=reason,
        actor=actor,
        code=code if on else "KILL_SWITCH",
        action="killswitch.on" if on else "killswitch.off",
        payload=payload,
        incident_title=(
            f"Kill switch {'engaged' if on else 'released'} by {by}"
            + ("" if account is None else f" for {scope}")
        ),
    )
    if on:
        open_orders_cancel_enqueue(account=account, cause=f"kill switch: {reason}"[:300])
        if flatten:
            positions_flatten_request(actor=actor, reason=reason, account=account)
    return row
