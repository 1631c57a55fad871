from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from trading.models import BacktestRun, ExchangeAccount, Fill, Order, Position, Signal, Trade
from trading.services.accounts import account_keys_set


class ExchangeAccountForm(forms.ModelForm):
    """Keys are write-only: typed in, encrypted, never rendered back."""

    api_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave empty to keep the stored key.",
    )
    api_secret = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False))
    api_url_override = forms.URLField(
        required=False,
        assume_scheme="https",
        help_text="Another API host for this account (e.g. a loopback exchange).",
    )
    api_password = forms.CharField(
        required=False,
        label="API passphrase (KuCoin)",
        widget=forms.PasswordInput(render_value=False),
    )

    class Meta:
        model = ExchangeAccount
        fields = [
            "name",
            "exchange",
            "market_type",
            "leverage",
            "margin_mode",
            "quote_currency",
            "fee_bps",
            "slippage_bps",
            "strategy_enabled",
            "api_url_override",
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if bool(data.get("api_key")) != bool(data.get("api_secret")):
            raise forms.ValidationError("Give both the API key and the API secret.")
        return data


@admin.register(ExchangeAccount)
class ExchangeAccountAdmin(admin.ModelAdmin):
    form = ExchangeAccountForm
    list_display = [
        "name",
        "exchange",
        "mode",
        "market_type",
        "api_key_masked",
        "cash",
        "needs_reconcile",
        "strategy_enabled",
    ]
    # The mode is switched by a guarded service (live needs MFA, limits and a gated model).
    readonly_fields = [
        "mode",
        "cash",
        "api_key_masked",
        "needs_reconcile",
        "reconciled_at",
        "live_enabled_by",
        "live_enabled_at",
    ]

    @admin.display(description="API key")
    def api_key_masked(self, obj: ExchangeAccount) -> str:
        return obj.api_key_masked or "—"

    def save_model(
        self, request: HttpRequest, obj: ExchangeAccount, form: Any, change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        if form.cleaned_data.get("api_key"):
            account_keys_set(
                account=obj,
                api_key=form.cleaned_data["api_key"],
                api_secret=form.cleaned_data["api_secret"],
                api_password=form.cleaned_data.get("api_password") or "",
                actor=request.user.get_username(),
            )


@admin.register(Signal)
class SignalAdmin(admin.ModelAdmin):
    list_display = [
        "candle_time",
        "market",
        "action",
        "prob_buy",
        "prob_hold",
        "prob_sell",
        "model_version",
    ]
    list_filter = ["action", "market"]
    list_select_related = ["market", "model_version"]


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["created_at", "client_order_id", "market", "side", "quantity", "status"]
    list_filter = ["status", "side"]
    list_select_related = ["market"]
    search_fields = ["client_order_id", "exchange_order_id"]


@admin.register(Fill)
class FillAdmin(admin.ModelAdmin):
    list_display = ["filled_at", "order", "price", "quantity", "fee", "trade_id"]
    list_select_related = ["order", "order__market"]


@admin.register(Position)
class PositionAdmin(admin.ModelAdmin):
    list_display = ["account", "market", "quantity", "average_price", "realized_pnl"]


@admin.register(Trade)
class TradeAdmin(admin.ModelAdmin):
    list_display = ["exit_time", "market", "quantity", "entry_price", "exit_price", "fees", "pnl"]


@admin.register(BacktestRun)
class BacktestRunAdmin(admin.ModelAdmin):
    list_display = ("id", "status", "progress", "data_source", "bars", "code_version", "created_at")
    list_filter = ("status",)
    readonly_fields = [f.name for f in BacktestRun._meta.fields]
