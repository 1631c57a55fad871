from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from models_registry.models import ModelVersion, TrainingRun
from models_registry.services.registry import (
    PromotionError,
    model_shadow_start,
    model_shadow_stop,
    model_version_promote,
    model_version_rollback,
)
from models_registry.services.retraining import training_run_request


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = [
        "version",
        "market_group",
        "timeframe",
        "status",
        "is_active",
        "gate_summary",
        "drift_status",
        "shadow",
        "trained_at",
        "sha256",
    ]
    list_filter = ["status", "is_active", "timeframe", "drift_status", "shadow"]
    readonly_fields = [f.name for f in ModelVersion._meta.fields]
    actions = ["promote", "rollback", "start_shadow", "stop_shadow", "retrain"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="gates")
    def gate_summary(self, obj: ModelVersion) -> str:
        if not obj.gates_json:
            return "-"
        failed = [name for name, g in obj.gates_json.items() if not g.get("passed")]
        text = "passed" if not failed else "FAILED: " + ", ".join(failed)
        return text + (" · UNGATED, paper only" if obj.ungated else "")

    def _one(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> ModelVersion | None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model to promote.", messages.ERROR)
            return None
        return queryset.get()

    @admin.action(description="Promote the selected model (makes it active)")
    def promote(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        mv = self._one(request, queryset)
        if mv is None:
            return
        try:
            mv = model_version_promote(model_version=mv, actor=request.user.get_username())
        except PromotionError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"Model v{mv.version} is now active.")

    @admin.action(description="Roll back the selected model's family to its previous model")
    def rollback(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        families = set(queryset.values_list("market_group", "timeframe"))
        for market_group, timeframe in families:
            try:
                mv = model_version_rollback(
                    market_group=market_group,
                    timeframe=timeframe,
                    actor=request.user.get_username(),
                )
            except PromotionError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            self.message_user(request, f"Rolled back to model v{mv.version}.")

    @admin.action(description="Run the selected models in shadow")
    def start_shadow(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        for mv in queryset:
            try:
                model_shadow_start(model_version=mv, actor=request.user.get_username())
            except PromotionError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            self.message_user(request, f"Model v{mv.version} runs in shadow.")

    @admin.action(description="Stop the selected shadow models")
    def stop_shadow(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        for mv in queryset.filter(shadow=True):
            model_shadow_stop(model_version=mv, actor=request.user.get_username())
        self.message_user(request, "Shadow stopped.")

    @admin.action(description="Retrain the selected models' families")
    def retrain(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        for market_group, timeframe in set(queryset.values_list("market_group", "timeframe")):
            run = training_run_request(
                market_group=market_group, timeframe=timeframe, actor=request.user.get_username()
            )
            self.message_user(request, f"Training #{run.pk} queued for {market_group}.")


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = [
        "pk",
        "market_group",
        "timeframe",
        "status",
        "progress",
        "message",
        "requested_by",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "timeframe"]
    readonly_fields = [f.name for f in TrainingRun._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
