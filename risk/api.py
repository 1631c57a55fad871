"""REST: the kill switch (operators) and risk decisions with their denial codes (viewers)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from marketdata.api import query_params
from quantum.roles import HasRole
from risk.models import RiskDecision, TradingState
from risk.selectors import decisions_recent, trading_states
from risk.services.state import kill_switch_set
from trading.api import NameField
from trading.models import ExchangeAccount


class TradingStateSerializer(serializers.ModelSerializer):
    scope = serializers.SerializerMethodField()

    class Meta:
        model = TradingState
        fields = ["scope", "state", "kill_switch", "code", "reason", "changed_at"]

    def get_scope(self, obj: TradingState) -> str:
        return obj.account.name if obj.account else "global"


class KillSwitchSerializer(serializers.Serializer):
    on = serializers.BooleanField()
    reason = serializers.CharField(max_length=500, trim_whitespace=True)
    account = NameField(
        slug_field="name",
        queryset=ExchangeAccount.objects.all(),
        required=False,
        allow_null=True,
        default=None,
        help_text="account name; omit for the global kill switch",
    )
    flatten = serializers.BooleanField(default=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["flatten"] and not attrs["on"]:
            raise serializers.ValidationError({"flatten": "only with on=true"})
        return attrs


class KillSwitchView(APIView):
    """GET the trading states; POST {"on", "reason", "account"?, "flatten"?} (operators)."""

    permission_classes = [HasRole.of("operator")]

    @extend_schema(responses=TradingStateSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(TradingStateSerializer(trading_states(), many=True).data)

    @extend_schema(
        request=KillSwitchSerializer,
        responses=TradingStateSerializer,
        examples=[
            OpenApiExample(
                "halt everything",
                value={"on": True, "reason": "exchange outage", "flatten": False},
                request_only=True,
            ),
            OpenApiExample(
                "halt one account and close its positions",
                value={"on": True, "reason": "key leak", "account": "paper", "flatten": True},
                request_only=True,
            ),
            OpenApiExample(
                "release",
                value={"on": False, "reason": "exchange back"},
                request_only=True,
            ),
            OpenApiExample(
                "halted",
                value={
                    "scope": "global",
                    "state": "HALTED",
                    "kill_switch": True,
                    "code": "KILL_SWITCH",
                    "reason": "exchange outage",
                    "changed_at": "2026-11-03T10:15:00Z",
                },
                response_only=True,
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        serializer = KillSwitchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        state = kill_switch_set(
            on=data["on"],
            reason=data["reason"],
            actor=request.user.get_username(),
            account=data["account"],
            flatten=data["flatten"],
        )
        TradingState.objects.filter(pk=state.pk).update(changed_by=request.user)
        state.refresh_from_db()
        return Response(TradingStateSerializer(state).data, status=status.HTTP_200_OK)


class RiskDecisionSerializer(serializers.ModelSerializer):
    account = serializers.CharField(source="account.name")
    market = serializers.CharField(source="market.symbol")

    class Meta:
        model = RiskDecision
        fields = [
            "id",
            "account",
            "market",
            "signal",
            "side",
            "quantity",
            "price",
            "notional",
            "approved",
            "code",
            "detail",
            "reduces",
            "flatten",
            "limits_version",
            "created_at",
        ]


class RiskDecisionViewSet(viewsets.ReadOnlyModelViewSet):
    """Pre-trade decisions, newest first; ?approved=false&code=MAX_NOTIONAL&account=&signal=."""

    serializer_class = RiskDecisionSerializer
    permission_classes = [HasRole.of("viewer")]

    @extend_schema(
        parameters=[
            OpenApiParameter("approved", bool, description="true or false"),
            OpenApiParameter("code", str, description="denial code, e.g. MAX_NOTIONAL"),
            OpenApiParameter("account", str, description="account name"),
            OpenApiParameter("signal", int, description="signal id"),
        ]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[RiskDecision]:
        params = query_params(self.request)
        qs = decisions_recent()
        if params.get("approved") in ("true", "false"):
            qs = qs.filter(approved=params["approved"] == "true")
        if params.get("code"):
            qs = qs.filter(code=params["code"].upper())
        if params.get("account"):
            qs = qs.filter(account__name=params["account"])
        signal = params.get("signal", "")
        if signal.isascii() and signal.isdigit():  # __pk: an id past the column's range is none
            qs = qs.filter(signal__pk=int(signal))
        return qs
