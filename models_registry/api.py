from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from marketdata.models import TIMEFRAMES
from models_registry.models import ModelVersion, TrainingRun
from models_registry.selectors import market_group_for, markets_of_group, training_runs_recent
from models_registry.services.registry import (
    PromotionError,
    model_shadow_start,
    model_shadow_stop,
    model_version_promote,
    model_version_rollback,
)
from models_registry.services.retraining import training_run_request
from quantum.roles import HasRole


class ModelVersionSerializer(serializers.ModelSerializer):
    gates = serializers.JSONField(source="gates_json", read_only=True)
    gates_passed = serializers.BooleanField(read_only=True)
    ungated = serializers.BooleanField(read_only=True)

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "version",
            "tag",
            "market_group",
            "timeframe",
            "path",
            "sha256",
            "params_json",
            "metrics_json",
            "gates",
            "gates_passed",
            "ungated",
            "feature_set",
            "feature_set_hash",
            "data_start",
            "data_end",
            "trained_at",
            "is_active",
            "status",
            "activated_at",
            "retired_at",
            "previous",
            "drift_status",
            "drift_checked_at",
            "drift_json",
            "forced_hold",
            "shadow",
            "shadow_since",
        ]


class TrainingRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "market_group",
            "timeframe",
            "status",
            "progress",
            "message",
            "requested_by",
            "model_version",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        ]


class RetrainSerializer(serializers.Serializer):
    market_group = serializers.CharField(required=False, allow_blank=True)
    timeframe = serializers.CharField(required=False, allow_blank=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs["market_group"] = attrs.get("market_group") or market_group_for()
        attrs["timeframe"] = attrs.get("timeframe") or settings.QT_TIMEFRAME
        if attrs["timeframe"] not in TIMEFRAMES:
            raise serializers.ValidationError({"timeframe": "unknown timeframe"})
        if not markets_of_group(attrs["market_group"]):
            raise serializers.ValidationError({"market_group": "no registered markets"})
        return attrs


class ShadowSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()


REFUSAL = inline_serializer("Refusal", {"detail": serializers.CharField()})


class ModelVersionViewSet(viewsets.ReadOnlyModelViewSet):
    """Model versions with their gates; operators promote, roll back, shadow and retrain."""

    queryset = ModelVersion.objects.order_by("-trained_at", "-id")
    serializer_class = ModelVersionSerializer
    permission_classes = [HasRole.of("viewer")]
    mutations = ("promote", "rollback", "shadow", "retrain")

    def get_permissions(self) -> Any:
        if self.action in self.mutations:
            return [HasRole.of("operator")()]
        return super().get_permissions()

    def _actor(self, request: Request) -> str:
        return f"{request.user.get_username()} (api)"

    @extend_schema(
        request=None,
        responses={200: ModelVersionSerializer, 409: REFUSAL},
        examples=[
            OpenApiExample(
                "promoted",
                value={"id": 7, "version": 7, "is_active": True, "status": "active"},
                response_only=True,
                status_codes=["200"],
            ),
            OpenApiExample(
                "refused",
                value={"detail": "v7 did not pass its gates: sharpe 0.41 < 1.5"},
                response_only=True,
                status_codes=["409"],
            ),
        ],
    )
    @action(detail=True, methods=["post"])
    def promote(self, request: Request, pk: str | None = None) -> Response:
        """Make this model active; refused (409) unless it passed its gates."""
        try:
            mv = model_version_promote(model_version=self.get_object(), actor=self._actor(request))
        except PromotionError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(mv).data)

    @extend_schema(
        request=None,
        responses={200: ModelVersionSerializer, 409: REFUSAL},
        examples=[
            OpenApiExample(
                "rolled back",
                value={"id": 6, "version": 6, "is_active": True, "status": "active"},
                response_only=True,
                status_codes=["200"],
            ),
            OpenApiExample(
                "nothing to roll back to",
                value={"detail": "no previous model for binance:BTC/USDT 1h"},
                response_only=True,
                status_codes=["409"],
            ),
        ],
    )
    @action(detail=True, methods=["post"])
    def rollback(self, request: Request, pk: str | None = None) -> Response:
        """Put back the model the active one of this model's family replaced."""
        mv = self.get_object()
        try:
            target = model_version_rollback(
                market_group=mv.market_group, timeframe=mv.timeframe, actor=self._actor(request)
            )
        except PromotionError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(target).data)

    @extend_schema(request=ShadowSerializer, responses={200: ModelVersionSerializer})
    @action(detail=True, methods=["post"])
    def shadow(self, request: Request, pk: str | None = None) -> Response:
        """Start or stop running this model in shadow."""
        body = ShadowSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        mv = self.get_object()
        try:
            if body.validated_data["enabled"]:
                mv = model_shadow_start(model_version=mv, actor=self._actor(request))
            else:
                mv = model_shadow_stop(model_version=mv, actor=self._actor(request))
        except PromotionError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(mv).data)

    @extend_schema(request=RetrainSerializer, responses={202: TrainingRunSerializer})
    @action(detail=False, methods=["post"])
    def retrain(self, request: Request) -> Response:
        """Queue a training of a family (default: the configured markets and timeframe)."""
        body = RetrainSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        run = training_run_request(
            market_group=body.validated_data["market_group"],
            timeframe=body.validated_data["timeframe"],
            actor=self._actor(request),
        )
        return Response(TrainingRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        responses={
            200: inline_serializer("TrainingRuns", {"results": TrainingRunSerializer(many=True)})
        }
    )
    @action(detail=False, methods=["get"])
    def runs(self, request: Request) -> Response:
        """The latest training runs with their progress."""
        return Response({"results": TrainingRunSerializer(training_runs_recent(), many=True).data})
