"""Validation at the edge: operator forms turn bad input into a 400 with the form's errors."""

from __future__ import annotations

from django import forms

from risk.models import Incident, RiskLimits, TradingState
from risk.services.limits import EDITABLE_LIMITS
from trading.models import ExchangeAccount

REASON = forms.CharField(
    max_length=500,
    strip=True,
    widget=forms.TextInput(attrs={"placeholder": "why (goes into the audit log)", "size": 40}),
)


class ScopeField(forms.ModelChoiceField):
    """An exchange account, or empty for the global scope."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(
            queryset=ExchangeAccount.objects.order_by("name"),
            required=False,
            empty_label="global (every account)",
            to_field_name="name",
            **kwargs,  # type: ignore[arg-type]
        )


class KillSwitchForm(forms.Form):
    # Both control forms sit on one page: distinct element ids, the same field names.
    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("auto_id", "killswitch_%s")
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    switch = forms.ChoiceField(choices=[("on", "on (halt)"), ("off", "off (release)")])
    account = ScopeField()
    reason = REASON
    flatten = forms.BooleanField(required=False, help_text="also close every position")

    def clean(self) -> dict:
        data = super().clean() or {}
        if data.get("switch") == "off" and data.get("flatten"):
            self.add_error("flatten", "flatten goes with turning the kill switch on")
        return data


class TradingStateForm(forms.Form):
    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("auto_id", "state_%s")
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    state = forms.ChoiceField(choices=TradingState.State.choices)
    account = ScopeField()
    reason = REASON


class LimitsForm(forms.ModelForm):
    reason = REASON

    class Meta:
        model = RiskLimits
        fields = list(EDITABLE_LIMITS)


class IncidentResolveForm(forms.Form):
    resolution = forms.CharField(
        max_length=2000, strip=True, widget=forms.TextInput(attrs={"placeholder": "what was done"})
    )


class IncidentFilterForm(forms.Form):
    status = forms.ChoiceField(
        required=False,
        choices=[("", "any status"), ("unresolved", "unresolved"), *Incident.Status.choices],
    )
    severity = forms.ChoiceField(
        required=False, choices=[("", "any severity"), *Incident.Severity.choices]
    )


class AuditFilterForm(forms.Form):
    action = forms.CharField(required=False, max_length=64)
    actor = forms.CharField(required=False, max_length=150)
    object_type = forms.CharField(required=False, max_length=64)
    object_id = forms.CharField(required=False, max_length=64)
    since = forms.DateTimeField(required=False)
    until = forms.DateTimeField(required=False)
    q = forms.CharField(required=False, max_length=100, label="search")


class DecisionFilterForm(forms.Form):
    verdict = forms.ChoiceField(
        required=False,
        choices=[("", "all"), ("denied", "denied"), ("approved", "approved")],
    )
    code = forms.CharField(required=False, max_length=32)
    account = ScopeField()
