"""Operator pages: risk state, limits and the kill switch; decisions; incidents; audit log.

Every view is gated to the operator role here (not only in the links to it). HTMX requests
get the partial they swap; plain requests get the page.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from quantum.roles import role_required
from risk import selectors
from risk.forms import (
    AuditFilterForm,
    DecisionFilterForm,
    IncidentFilterForm,
    IncidentResolveForm,
    KillSwitchForm,
    LimitsForm,
    TradingStateForm,
)
from risk.models import Incident, RiskLimits, TradingState
from risk.services.audit import audit_head, audit_verify
from risk.services.incidents import IncidentStateError, incident_acknowledge, incident_resolve
from risk.services.limits import EDITABLE_LIMITS, risk_limits_update
from risk.services.state import KillSwitchEngaged, kill_switch_set, trading_state_set

operator_required = role_required("operator")


def _query(request: HttpRequest) -> str:
    """The current filters, for the pager's links."""
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


def _actor(request: HttpRequest) -> str:
    return request.user.get_username()


def _states_context(**extra: Any) -> dict[str, Any]:
    return {
        "states": selectors.trading_states(),
        "killswitch_form": KillSwitchForm(),
        "state_form": TradingStateForm(),
        **extra,
    }


def _states_response(request: HttpRequest, status: int = 200, **extra: Any) -> HttpResponse:
    return render(request, "risk/_controls.html", _states_context(**extra), status=status)


@operator_required
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    context = _states_context(
        accounts=selectors.accounts_risk(),
        limits=selectors.limits_all(),
        denials=selectors.decisions_recent(approved=False)[:20],
        flatten_requests=selectors.flatten_requests()[:10],
    )
    return render(request, "risk/overview.html", context)


@operator_required
@require_GET
def controls(request: HttpRequest) -> HttpResponse:
    return _states_response(request)


@operator_required
@require_POST
def killswitch(request: HttpRequest) -> HttpResponse:
    form = KillSwitchForm(request.POST)
    if not form.is_valid():
        return _states_response(request, status=400, killswitch_form=form)
    data = form.cleaned_data
    state = kill_switch_set(
        on=data["switch"] == "on",
        reason=data["reason"],
        actor=_actor(request),
        account=data["account"],
        flatten=data["flatten"],
    )
    TradingState.objects.filter(pk=state.pk).update(changed_by=request.user)
    note = f"Kill switch {data['switch']}: trading is {state.state}."
    if not request.htmx:  # type: ignore[attr-defined]
        messages.info(request, note)
        return redirect("risk:overview")
    return _states_response(request, note=note)


@operator_required
@require_POST
def trading_state(request: HttpRequest) -> HttpResponse:
    form = TradingStateForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            state = trading_state_set(
                state=data["state"],
                reason=data["reason"],
                actor=_actor(request),
                account=data["account"],
            )
        except KillSwitchEngaged as exc:
            form.add_error("state", str(exc))
        else:
            TradingState.objects.filter(pk=state.pk).update(changed_by=request.user)
            if not request.htmx:  # type: ignore[attr-defined]
                return redirect("risk:overview")
            return _states_response(request, note=f"Trading is now {state.state}.")
    return _states_response(request, status=400, state_form=form)


@operator_required
def limits_edit(request: HttpRequest, pk: int) -> HttpResponse:
    limits = get_object_or_404(RiskLimits.objects.select_related("account"), pk=pk)
    if request.method == "POST":
        form = LimitsForm(request.POST, instance=RiskLimits.objects.get(pk=pk))
        if form.is_valid():
            changes = {k: form.cleaned_data[k] for k in form.changed_data if k in EDITABLE_LIMITS}
            limits = risk_limits_update(
                limits=limits,
                changes=changes,
                reason=form.cleaned_data["reason"],
                actor=_actor(request),
            )
            if not request.htmx:  # type: ignore[attr-defined]
                return redirect("risk:overview")
            return render(request, "risk/_limits_row.html", {"limits": limits, "saved": True})
        status = 400
    else:
        form, status = LimitsForm(instance=limits), 200
    return render(
        request, "risk/_limits_form.html", {"limits": limits, "form": form}, status=status
    )


@operator_required
@require_GET
def decisions(request: HttpRequest) -> HttpResponse:
    form = DecisionFilterForm(request.GET or None)
    qs = selectors.decisions_recent()
    if form.is_valid():
        data = form.cleaned_data
        if data["verdict"]:
            qs = qs.filter(approved=data["verdict"] == "approved")
        if data["code"]:
            qs = qs.filter(code=data["code"].upper())
        if data["account"]:
            qs = qs.filter(account=data["account"])
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    template = "risk/_decision_table.html" if request.htmx else "risk/decisions.html"  # type: ignore[attr-defined]
    return render(request, template, {"form": form, "page": page, "query": _query(request)})


@operator_required
@require_GET
def incidents(request: HttpRequest) -> HttpResponse:
    form = IncidentFilterForm(request.GET or {"status": "unresolved"})
    data = form.cleaned_data if form.is_valid() else {}
    qs = selectors.incidents(status=data.get("status", ""), severity=data.get("severity", ""))
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    template = "risk/_incident_table.html" if request.htmx else "risk/incidents.html"  # type: ignore[attr-defined]
    return render(request, template, {"form": form, "page": page, "query": _query(request)})


@operator_required
@require_POST
def incident_ack(request: HttpRequest, pk: int) -> HttpResponse:
    incident = get_object_or_404(Incident, pk=pk)
    try:
        incident = incident_acknowledge(incident=incident, actor=_actor(request))
    except IncidentStateError as exc:
        return render(
            request, "risk/_incident_row.html", {"incident": incident, "error": exc}, status=409
        )
    return render(request, "risk/_incident_row.html", {"incident": incident})


@operator_required
@require_POST
def incident_resolve_view(request: HttpRequest, pk: int) -> HttpResponse:
    incident = get_object_or_404(Incident, pk=pk)
    form = IncidentResolveForm(request.POST)
    if not form.is_valid():
        return render(
            request,
            "risk/_incident_row.html",
            {"incident": incident, "error": "a resolution is required"},
            status=400,
        )
    try:
        incident = incident_resolve(
            incident=incident, actor=_actor(request), resolution=form.cleaned_data["resolution"]
        )
    except IncidentStateError as exc:
        return render(
            request, "risk/_incident_row.html", {"incident": incident, "error": exc}, status=409
        )
    return render(request, "risk/_incident_row.html", {"incident": incident})


@operator_required
@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET or None)
    params = {k: v for k, v in (form.cleaned_data if form.is_valid() else {}).items() if v}
    page = Paginator(selectors.audit_events(params=params), 100).get_page(request.GET.get("page"))
    for event in page.object_list:
        event.payload_json = json.dumps(event.payload, sort_keys=True)  # type: ignore[attr-defined]
    context = {"form": form, "page": page, "query": _query(request), "actions": []}
    if request.htmx:  # type: ignore[attr-defined]
        return render(request, "risk/_audit_table.html", context)
    context["actions"] = selectors.audit_actions()
    return render(request, "risk/audit.html", context)


@operator_required
@require_GET
def audit_chain(request: HttpRequest) -> HttpResponse:
    """The chain's verification status (walks the whole chain: loaded lazily by the page)."""
    ok, message = audit_verify()
    seq, digest = audit_head()
    return render(
        request,
        "risk/_chain_status.html",
        {"ok": ok, "message": message, "head_seq": seq, "head_hash": digest},
    )
