"""Backtest pages: start a run (traders), watch its progress, read and export its report."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

from django import forms
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render

from marketdata.models import TIMEFRAMES, Market
from quantum.roles import has_role, role_required
from trading.models import BacktestRun
from trading.services.backtests import BacktestConfigError, backtest_start

RUNS_LISTED = 50


class BacktestForm(forms.Form):
    strategy = forms.ChoiceField(
        choices=[
            ("ema_cross", "EMA cross"),
            ("rsi_reversion", "RSI reversion"),
            ("model", "Model (active version)"),
        ]
    )
    params = forms.CharField(
        required=False, help_text="e.g. fast=20,slow=50", widget=forms.TextInput()
    )
    market = forms.ModelChoiceField(
        queryset=Market.objects.filter(active=True).select_related("exchange")
    )
    timeframe = forms.ChoiceField(choices=[(k, k) for k in TIMEFRAMES], initial="1h")
    start = forms.DateTimeField(required=False, help_text="UTC, e.g. 2024-01-01 00:00")
    end = forms.DateTimeField(required=False)
    fee_bps = forms.DecimalField(min_value=0, max_value=1000, initial=10, decimal_places=4)
    slippage_bps = forms.DecimalField(min_value=0, max_value=1000, initial=5, decimal_places=4)
    cash = forms.DecimalField(min_value=1, max_digits=20, decimal_places=8, initial=10000)
    delay_bars = forms.IntegerField(min_value=0, max_value=10, initial=1)
    long_short = forms.BooleanField(required=False)

    def config(self) -> dict[str, Any]:
        data = self.cleaned_data
        market: Market = data["market"]

        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "strategy": data["strategy"],
            "params": data["params"] or {},
            "exchange": market.exchange.code,
            "market": market.symbol,
            "timeframe": data["timeframe"],
            "start": iso(data["start"]),
            "end": iso(data["end"]),
            "fee_bps": str(data["fee_bps"]),
            "slippage_bps": str(data["slippage_bps"]),
            "cash": str(data["cash"]),
            "delay_bars": data["delay_bars"],
            "long_short": data["long_short"],
        }


@role_required("viewer")
def backtests(request: HttpRequest) -> HttpResponse:
    """The runs, newest first, and (for traders) the form that starts one."""
    can_start = has_role(request.user, "trader")
    form = BacktestForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if not can_start:
            raise PermissionDenied("requires the trader role")
        if form.is_valid():
            try:
                run = backtest_start(config=form.config(), user=request.user)
            except BacktestConfigError as exc:
                form.add_error(None, str(exc))
            else:
                return redirect("backtest-page", run_id=run.pk)
        status = 400
    runs = BacktestRun.objects.select_related("created_by").defer("results")[:RUNS_LISTED]
    return render(
        request,
        "trading/backtest_list.html",
        {"form": form, "runs": runs, "can_start": can_start},
        status=status,
    )


def _charts(results: dict[str, Any]) -> dict[str, Any]:
    """Equity, drawdown and trade markers as lightweight-charts series (epoch seconds)."""
    equity, drawdown, peak = [], [], 0.0
    for when, value in results.get("equity", []):
        t = int(datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp())
        peak = max(peak, value)
        equity.append({"time": t, "value": value})
        drawdown.append({"time": t, "value": round(100 * (value / peak - 1), 4) if peak else 0})
    markers = []
    for trade in results.get("trades", []):
        long = trade["side"] == "LONG"
        for key, entering in (("entry_time", True), ("exit_time", False)):
            t = int(datetime.fromisoformat(trade[key].replace("Z", "+00:00")).timestamp())
            buy = entering == long
            markers.append(
                {
                    "time": t - t % 86400,
                    "position": "belowBar" if buy else "aboveBar",
                    "shape": "arrowUp" if buy else "arrowDown",
                    "color": "#22c55e" if buy else "#ef4444",
                    "text": "B" if buy else "S",
                }
            )
    markers.sort(key=lambda m: m["time"])
    return {"equity": equity, "drawdown": drawdown, "markers": markers}


@role_required("viewer")
def backtest_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    """A run's record; its progress while it runs, its report once done."""
    run = get_object_or_404(BacktestRun.objects.select_related("created_by"), pk=run_id)
    context: dict[str, Any] = {"run": run}
    if run.status == BacktestRun.Status.DONE and run.results:
        context["metrics"] = run.results["metrics"]
        context["trades"] = run.results["trades"]
        context["charts"] = _charts(run.results)
    return render(request, "trading/backtest_detail.html", context)


@role_required("viewer")
def backtest_progress(request: HttpRequest, run_id: int) -> HttpResponse:
    """The progress bar alone (htmx polls it every second); a finished run reloads the page."""
    run = get_object_or_404(
        BacktestRun.objects.only("id", "status", "progress", "error"), pk=run_id
    )
    response = render(request, "trading/_backtest_progress.html", {"run": run})
    if run.status in (BacktestRun.Status.DONE, BacktestRun.Status.FAILED):
        response["HX-Refresh"] = "true"
    return response


TRADE_COLUMNS = (
    "entry_time",
    "exit_time",
    "side",
    "qty",
    "entry_price",
    "exit_price",
    "fee",
    "pnl",
)


@role_required("viewer")
def backtest_export(request: HttpRequest, run_id: int, fmt: str) -> HttpResponse:
    """The report as JSON (record + results), or its trades / daily equity as CSV."""
    run = get_object_or_404(BacktestRun, pk=run_id, status=BacktestRun.Status.DONE)
    results = run.results or {}
    name = f"backtest-{run.pk}"
    if fmt == "json":
        record = {
            "id": run.pk,
            "config": run.config,
            "config_hash": run.config_hash,
            "data_source": run.data_source,
            "data_start": run.data_start.isoformat() if run.data_start else None,
            "data_end": run.data_end.isoformat() if run.data_end else None,
            "bars": run.bars,
            "code_version": run.code_version,
            "seed": run.seed,
            "schema_version": run.schema_version,
            **results,
        }
        response: HttpResponse = JsonResponse(record, json_dumps_params={"indent": 1})
        response["Content-Disposition"] = f'attachment; filename="{name}.json"'
        return response
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    if fmt == "trades.csv":
        writer.writerow(TRADE_COLUMNS)
        for trade in results.get("trades", []):
            writer.writerow([trade[c] for c in TRADE_COLUMNS])
    elif fmt == "equity.csv":
        writer.writerow(["time", "equity"])
        writer.writerows(results.get("equity", []))
    else:
        raise Http404(f"unknown export format {fmt!r}")
    response = HttpResponse(buffer.getvalue(), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{name}-{fmt}"'
    return response
