from __future__ import annotations

from typing import Any

from django import forms

from trading.models import ExchangeAccount


class AccountModeForm(forms.Form):
    mode = forms.ChoiceField(choices=ExchangeAccount.Mode.choices)
    reason = forms.CharField(max_length=300)


class AccountKeysForm(forms.Form):
    api_key = forms.CharField(widget=forms.PasswordInput(render_value=False))
    api_secret = forms.CharField(widget=forms.PasswordInput(render_value=False))
    api_password = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False))
    api_url_override = forms.URLField(required=False, assume_scheme="https")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for name in ("api_key", "api_secret"):
            if data.get(name, "").strip() != data.get(name, ""):
                raise forms.ValidationError(f"{name} has leading or trailing spaces")
        return data
