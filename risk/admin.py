from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from quantum.roles import has_role
from risk.models import (
    AuditEvent,
    EquitySnapshot,
    FlattenRequest,
    Incident,
    MarketLimits,
    RiskDecision,
    RiskLimits,
    TradingState,
)
from risk.services.incidents import IncidentStateError, incident_acknowledge, incident_resolve
from risk.services.limits import (
    EDITABLE_LIMITS,
    EDITABLE_MARKET_LIMITS,
    market_limits_update,
    risk_limits_update,
)
from risk.services.state import kill_switch_set

REASON_HELP = "Required: why (stored in the audit log)."


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class OperatorOnly:
    """Limits and states change only for operators, whatever model permissions say."""

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return has_role(request.user, "operator") and super().has_change_permission(  # type: ignore[misc]
            request, obj
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return has_role(request.user, "operator") and super().has_add_permission(request)  # type: ignore[misc]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TradingStateForm(forms.ModelForm):
    reason = forms.CharField(required=True, max_length=500, help_text=REASON_HELP)

    class Meta:
        model = TradingState
        fields = ["kill_switch", "reason"]


@admin.register(TradingState)
class TradingStateAdmin(OperatorOnly, admin.ModelAdmin):
    form = TradingStateForm
    list_display = ["__str__", "state", "kill_switch", "reason", "changed_by", "changed_at"]
    readonly_fields = ["account", "state", "code", "changed_by", "changed_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> Any:
        # The kill switch here is the global one; per-account states are on the risk page.
        return super().get_queryset(request).filter(account__isnull=True)

    def save_model(self, request: HttpRequest, obj: TradingState, form: Any, change: bool) -> None:
        # The service does the write (and audit, incident, live push), not the admin form.
        state = kill_switch_set(
            on=form.cleaned_data["kill_switch"],
            reason=form.cleaned_data["reason"],
            actor=request.user.get_username(),
        )
        TradingState.objects.filter(pk=state.pk).update(changed_by=request.user)
        obj.refresh_from_db()
        messages.info(request, f"Trading is now {state.state}.")


class RiskLimitsForm(forms.ModelForm):
    reason = forms.CharField(required=True, max_length=500, help_text=REASON_HELP)

    class Meta:
        model = RiskLimits
        fields = ["account", *EDITABLE_LIMITS]


@admin.register(RiskLimits)
class RiskLimitsAdmin(OperatorOnly, admin.ModelAdmin):
    form = RiskLimitsForm
    list_display = [
        "__str__",
        "max_order_notional",
        "max_position_notional",
        "max_gross_exposure",
        "max_leverage",
        "max_daily_loss",
        "max_drawdown",
        "max_orders_per_window",
        "version",
    ]
    readonly_fields = ["version", "changed_by", "reason_shown", "updated_at"]

    @admin.display(description="last reason")
    def reason_shown(self, obj: RiskLimits) -> str:
        return obj.reason

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "account"] if obj is not None else fields

    def save_model(self, request: HttpRequest, obj: RiskLimits, form: Any, change: bool) -> None:
        # Through the service: reason, version bump, audit; never a plain save.
        changes = {k: form.cleaned_data[k] for k in form.changed_data if k in EDITABLE_LIMITS}
        saved = risk_limits_update(
            limits=RiskLimits.objects.get(pk=obj.pk) if change else None,
            account=form.cleaned_data.get("account"),
            changes=changes,
            reason=form.cleaned_data["reason"],
            actor=request.user.get_username(),
        )
        obj.pk = saved.pk
        obj.refresh_from_db()


class MarketLimitsForm(forms.ModelForm):
    reason = forms.CharField(required=True, max_length=500, help_text=REASON_HELP)

    class Meta:
        model = MarketLimits
        fields = ["market", *EDITABLE_MARKET_LIMITS]


@admin.register(MarketLimits)
class MarketLimitsAdmin(OperatorOnly, admin.ModelAdmin):
    form = MarketLimitsForm
    list_display = ["market", "min_quantity", "max_quantity", "version", "changed_by"]
    readonly_fields = ["version", "changed_by", "updated_at"]

    def save_model(self, request: HttpRequest, obj: MarketLimits, form: Any, change: bool) -> None:
        saved = market_limits_update(
            market=form.cleaned_data["market"] if not change else obj.market,
            changes={
                k: form.cleaned_data[k] for k in form.changed_data if k in EDITABLE_MARKET_LIMITS
            },
            reason=form.cleaned_data["reason"],
            actor=request.user.get_username(),
        )
        obj.pk = saved.pk
        obj.refresh_from_db()


@admin.register(RiskDecision)
class RiskDecisionAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "account",
        "market",
        "side",
        "quantity",
        "approved",
        "code",
        "detail",
        "limits_version",
    ]
    list_filter = ["approved", "code"]
    list_select_related = ["account", "market"]


@admin.register(Incident)
class IncidentAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "severity", "code", "title", "status", "acknowledged_by"]
    list_filter = ["severity", "status", "code"]
    actions = ["acknowledge", "resolve"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Actions need it; the change form itself shows read-only fields.
        return has_role(request.user, "operator") and obj is None

    @admin.action(description="Acknowledge selected incidents")
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        done = 0
        for incident in queryset.filter(status=Incident.Status.OPEN):
            incident_acknowledge(incident=incident, actor=request.user.get_username())
            done += 1
        messages.info(request, f"{done} incident(s) acknowledged.")

    @admin.action(description="Resolve selected incidents (from the admin)")
    def resolve(self, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        done = 0
        for incident in queryset.exclude(status=Incident.Status.RESOLVED):
            try:
                incident_resolve(
                    incident=incident,
                    actor=request.user.get_username(),
                    resolution="resolved from the admin",
                )
            except IncidentStateError as exc:
                messages.error(request, str(exc))
                continue
            done += 1
        messages.info(request, f"{done} incident(s) resolved.")


@admin.register(EquitySnapshot)
class EquitySnapshotAdmin(ReadOnlyAdmin):
    list_display = ["taken_at", "account", "equity", "peak"]
    list_filter = ["account"]


@admin.register(FlattenRequest)
class FlattenRequestAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "account", "requested_by", "reason", "status", "completed_at"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """Read-only: the audit log is append-only."""

    list_display = ["seq", "created_at", "actor", "action", "object_type", "object_id"]
    list_filter = ["action"]
    search_fields = ["object_id", "actor"]
