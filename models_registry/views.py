"""The model pages: registry, one model's evaluation, and the operator's actions."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from marketdata.models import TIMEFRAMES
from models_registry.lib.plots import confusion_rows, equity_plot, importance_bars
from models_registry.models import ModelVersion, TrainingRun
from models_registry.selectors import (
    market_group_for,
    markets_of_group,
    model_families,
    model_versions,
    training_runs_recent,
)
from models_registry.services.registry import (
    PromotionError,
    model_shadow_start,
    model_shadow_stop,
    model_version_promote,
    model_version_rollback,
)
from models_registry.services.retraining import training_run_request
from models_registry.services.shadow import shadow_compare
from models_registry.services.training import CLASSES
from quantum.roles import role_required


def _actor(request: HttpRequest) -> str:
    return f"{request.user.get_username()} (web)"


@role_required("viewer")
def model_list(request: HttpRequest) -> HttpResponse:
    versions = list(model_versions())
    return render(
        request,
        "models_registry/list.html",
        {
            "versions": versions,
            "families": model_families(),
            "runs": list(training_runs_recent()),
            "default_family": (market_group_for(), settings.QT_TIMEFRAME),
        },
    )


@role_required("viewer")
def model_detail(request: HttpRequest, pk: int) -> HttpResponse:
    mv = get_object_or_404(ModelVersion, pk=pk)
    metrics = mv.metrics_json
    backtest = metrics.get("backtest") or {}
    comparison = shadow_compare(model_version=mv) if mv.shadow_since else None
    return render(
        request,
        "models_registry/detail.html",
        {
            "mv": mv,
            "metrics": metrics,
            "backtest": backtest,
            "hold": backtest.get("buy_and_hold") or {},
            "equity": equity_plot(backtest.get("equity_curve"), ("strategy", "buy_and_hold")),
            "importance": importance_bars(metrics.get("feature_importance")),
            "confusion": confusion_rows(metrics.get("confusion_matrix"), CLASSES),
            "classes": CLASSES,
            "psi": sorted((mv.drift_json or {}).items(), key=lambda kv: -kv[1]),
            "comparison": comparison,
            "comparison_plot": equity_plot(
                comparison["equity_curve"] if comparison else None, ("shadow", "active")
            ),
        },
    )


@require_POST
@role_required("operator")
def model_promote(request: HttpRequest, pk: int) -> HttpResponse:
    mv = get_object_or_404(ModelVersion, pk=pk)
    try:
        model_version_promote(model_version=mv, actor=_actor(request))
    except PromotionError as exc:
        messages.error(request, str(exc))
        return redirect("models:detail", pk=pk)
    messages.success(request, f"Model v{mv.version} is now active.")
    return redirect("models:detail", pk=pk)


@require_POST
@role_required("operator")
def model_rollback(request: HttpRequest, pk: int) -> HttpResponse:
    mv = get_object_or_404(ModelVersion, pk=pk)
    try:
        target = model_version_rollback(
            market_group=mv.market_group, timeframe=mv.timeframe, actor=_actor(request)
        )
    except PromotionError as exc:
        messages.error(request, str(exc))
        return redirect("models:detail", pk=pk)
    messages.success(request, f"Rolled back to model v{target.version}.")
    return redirect("models:detail", pk=target.pk)


@require_POST
@role_required("operator")
def model_shadow(request: HttpRequest, pk: int) -> HttpResponse:
    mv = get_object_or_404(ModelVersion, pk=pk)
    try:
        if request.POST.get("enabled") == "1":
            model_shadow_start(model_version=mv, actor=_actor(request))
            messages.success(request, f"Model v{mv.version} runs in shadow.")
        else:
            model_shadow_stop(model_version=mv, actor=_actor(request))
            messages.success(request, f"Model v{mv.version} no longer runs in shadow.")
    except PromotionError as exc:
        messages.error(request, str(exc))
    return redirect("models:detail", pk=pk)


@require_POST
@role_required("operator")
def model_retrain(request: HttpRequest) -> HttpResponse:
    market_group = request.POST.get("market_group", "")
    timeframe = request.POST.get("timeframe", "")
    if timeframe not in TIMEFRAMES or not markets_of_group(market_group):
        return HttpResponseBadRequest("unknown model family")
    run = training_run_request(
        market_group=market_group, timeframe=timeframe, actor=_actor(request)
    )
    if request.htmx:  # type: ignore[attr-defined]
        return render(request, "models_registry/_run.html", {"run": run})
    messages.success(request, f"Training #{run.pk} queued.")
    return redirect("models:list")


@role_required("viewer")
def training_run(request: HttpRequest, pk: int) -> HttpResponse:
    """One run's progress (the partial htmx polls while it runs)."""
    run = get_object_or_404(TrainingRun.objects.select_related("model_version"), pk=pk)
    return render(request, "models_registry/_run.html", {"run": run})
