"""REST: signals, orders, fills, positions and accounts (read); manual orders, cancels and
the strategy switch (traders; on a live account, operators with MFA)."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from django.db.models import Max, QuerySet
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from marketdata.api import filter_market, filter_since, query_params
from marketdata.models import Market
from quantum.roles import HasRole, api_denial
from risk.models import RiskDecision
from trading.models import BacktestRun, ExchangeAccount, Fill, Order, Position, Signal
from trading.selectors import fills_recent, last_price, orders_recent, signals_recent
from trading.services.accounts import account_strategy_set
from trading.services.execution import Intent, decision_execute
from trading.services.ids import client_order_id
from trading.services.orders import S
from trading.services.submission import OPEN, order_cancel

VIEWER = [HasRole.of("viewer")]
MANUAL = "manual"
_KEY = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def _param(name: str, description: str, type_: Any = str) -> OpenApiParameter:
    return OpenApiParameter(name, type_, OpenApiParameter.QUERY, description=description)


MARKET = _param("market", "market id or symbol (BTC/USDT)")
SINCE = _param("since", "ISO-8601 time or epoch milliseconds (inclusive)")
UNTIL = _param("until", "ISO-8601 time or epoch milliseconds (inclusive)")
ACCOUNT = _param("account", "account name")


def _actor(request: Request) -> str:
    return f"{request.user.get_username()} (api)"


def _live_needs_operator(request: Request, account: ExchangeAccount) -> None:
    """Real money: on a live account the trader's actions are the operator's (with MFA)."""
    if account.mode == ExchangeAccount.Mode.LIVE:
        denial = api_denial(request, "operator")
        if denial is not None:
            raise PermissionDenied(f"account {account.name} is live: {denial}")


class SignalSerializer(serializers.ModelSerializer):
    market = serializers.CharField(source="market.symbol")
    model_version = serializers.IntegerField(source="model_version.version")

    class Meta:
        model = Signal
        fields = [
            "id",
            "market",
            "timeframe",
            "candle_time",
            "action",
            "prob_buy",
            "prob_hold",
            "prob_sell",
            "price",
            "model_version",
            "feature_set_hash",
            "created_at",
        ]


class OrderSerializer(serializers.ModelSerializer):
    market = serializers.CharField(source="market.symbol")
    account = serializers.CharField(source="account.name")

    class Meta:
        model = Order
        fields = [
            "id",
            "account",
            "market",
            "signal",
            "client_order_id",
            "exchange_order_id",
            "side",
            "order_type",
            "quantity",
            "price",
            "filled_quantity",
            "average_price",
            "status",
            "strategy",
            "reason",
            "error",
            "created_at",
            "updated_at",
        ]


class FillSerializer(serializers.ModelSerializer):
    market = serializers.CharField(source="order.market.symbol")
    side = serializers.CharField(source="order.side")
    client_order_id = serializers.CharField(source="order.client_order_id")

    class Meta:
        model = Fill
        fields = [
            "id",
            "order",
            "client_order_id",
            "market",
            "side",
            "trade_id",
            "price",
            "quantity",
            "fee",
            "fee_currency",
            "filled_at",
        ]


class PositionSerializer(serializers.ModelSerializer):
    market = serializers.CharField(source="market.symbol")
    account = serializers.CharField(source="account.name")

    class Meta:
        model = Position
        fields = [
            "id",
            "account",
            "market",
            "quantity",
            "average_price",
            "realized_pnl",
            "opened_at",
            "updated_at",
        ]


class AccountSerializer(serializers.ModelSerializer):
    exchange = serializers.CharField(source="exchange.code")
    api_key = serializers.CharField(source="api_key_masked", help_text="last four characters")

    class Meta:
        model = ExchangeAccount
        fields = [
            "id",
            "name",
            "exchange",
            "mode",
            "market_type",
            "strategy_enabled",
            "quote_currency",
            "cash",
            "starting_cash",
            "api_key",
            "needs_reconcile",
            "reconciled_at",
        ]


class NameField(serializers.SlugRelatedField):
    """A related object by name; a NUL in the name is "no such object", not a database error."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str) and "\x00" in data:
            self.fail("does_not_exist", slug_name=self.slug_field, value=data)
        return super().to_internal_value(data)


class ManualOrderSerializer(serializers.Serializer):
    account = NameField(
        slug_field="name",
        queryset=ExchangeAccount.objects.select_related("exchange"),
        help_text="account name",
    )
    market = serializers.CharField(help_text="market id or symbol on the account's exchange")
    side = serializers.ChoiceField(choices=Order.Side.choices)
    quantity = serializers.DecimalField(
        max_digits=20, decimal_places=8, min_value=Decimal("0.00000001")
    )
    idempotency_key = serializers.CharField(
        required=False,
        help_text="your id for this order (1-64 of A-Z a-z 0-9 . _ : -); a retry with the same "
        "key returns the same order instead of placing another. Or the Idempotency-Key header.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        account: ExchangeAccount = attrs["account"]
        markets = Market.objects.filter(exchange_id=account.exchange_id)
        value = attrs["market"]
        market = (
            markets.filter(pk=int(value)).first()
            if value.isascii() and value.isdigit()
            else markets.filter(symbol=value.upper()).first()
        )
        if market is None:
            raise serializers.ValidationError(
                {"market": f"no market {value!r} on {account.exchange.code}"}
            )
        attrs["market"] = market
        step = Decimal(1).scaleb(-market.qty_precision)
        if attrs["quantity"] % step:
            raise serializers.ValidationError(
                {"quantity": f"{market.symbol} trades in steps of {step}"}
            )
        header = self.context["request"].headers.get("Idempotency-Key")
        key = attrs.get("idempotency_key") or header
        if not key or not _KEY.match(key):
            raise serializers.ValidationError(
                {"idempotency_key": "required: 1-64 characters of A-Z a-z 0-9 . _ : -"}
            )
        attrs["idempotency_key"] = key
        return attrs


class StrategySerializer(serializers.Serializer):
    enabled = serializers.BooleanField()


class SignalViewSet(viewsets.ReadOnlyModelViewSet):
    """Signals, newest bar first; ?market=&action=&since=&until=."""

    serializer_class = SignalSerializer
    permission_classes = VIEWER

    @extend_schema(parameters=[MARKET, _param("action", "BUY, SELL or HOLD"), SINCE, UNTIL])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[Signal]:
        params = query_params(self.request)
        qs = filter_since(filter_market(signals_recent(), params), params, "candle_time")
        return qs.filter(action=params["action"].upper()) if params.get("action") else qs


ORDER_EXAMPLES = [
    OpenApiExample(
        "buy on paper",
        value={
            "account": "paper",
            "market": "BTC/USDT",
            "side": "BUY",
            "quantity": "0.01000",
            "idempotency_key": "rebalance-2026-11-03-1",
        },
        request_only=True,
    ),
    OpenApiExample(
        "filled",
        value={
            "id": 42,
            "account": "paper",
            "market": "BTC/USDT",
            "client_order_id": "qt3f1c…",
            "side": "BUY",
            "quantity": "0.01000000",
            "filled_quantity": "0.01000000",
            "average_price": "68012.34000000",
            "status": "filled",
            "strategy": "manual",
        },
        response_only=True,
        status_codes=["201"],
    ),
    OpenApiExample(
        "denied by risk",
        value={"code": "MAX_NOTIONAL", "detail": "notional 250000 above max 10000"},
        response_only=True,
        status_codes=["422"],
    ),
]

DENIAL = inline_serializer(
    "RiskDenial", {"code": serializers.CharField(), "detail": serializers.CharField()}
)


@extend_schema_view(
    list=extend_schema(
        parameters=[
            MARKET,
            ACCOUNT,
            SINCE,
            UNTIL,
            _param("status", "new, submitted, accepted, partially_filled, filled, canceled, …"),
            _param("side", "BUY or SELL"),
            _param("strategy", "model, manual, flatten"),
        ]
    )
)
class OrderViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Orders, newest first. Traders place manual orders and cancel open ones."""

    serializer_class = OrderSerializer
    permission_classes = VIEWER

    def get_permissions(self) -> Any:
        if self.action in ("create", "cancel"):
            return [HasRole.of("trader")()]
        return super().get_permissions()

    def get_queryset(self) -> QuerySet[Order]:
        params = query_params(self.request)
        qs = filter_since(filter_market(orders_recent(), params), params, "created_at")
        for param, field in (("status", "status"), ("account", "account__name")):
            if params.get(param):
                qs = qs.filter(**{field: params[param]})
        if params.get("side"):
            qs = qs.filter(side=params["side"].upper())
        if params.get("strategy"):
            qs = qs.filter(strategy=params["strategy"])
        return qs

    @extend_schema(
        request=ManualOrderSerializer,
        responses={200: OrderSerializer, 201: OrderSerializer, 409: DENIAL, 422: DENIAL},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key", str, OpenApiParameter.HEADER, description="or idempotency_key"
            )
        ],
        examples=ORDER_EXAMPLES,
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """A market order through the engine: risk checks, the intent persisted, then sent.

        The client order id is derived from the caller and the idempotency key: retrying with
        the same key returns the first order (200) and never places a second one.
        """
        body = ManualOrderSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        data = body.validated_data
        account, market = data["account"], data["market"]
        _live_needs_operator(request, account)
        coid = client_order_id(
            strategy=MANUAL,
            account_id=account.pk,
            market_id=market.pk,
            decision=f"manual:{request.user.pk}:{data['idempotency_key']}",
        )
        existing = Order.objects.filter(client_order_id=coid).first()
        if existing is not None:
            return self._replay(existing, data)
        price = last_price(market.pk)
        if price is None:
            return Response(
                {"code": "NO_PRICE", "detail": f"no candle for {market.symbol} yet"},
                status=status.HTTP_409_CONFLICT,
            )
        decided_before = RiskDecision.objects.aggregate(last=Max("id"))["last"] or 0
        order = decision_execute(
            account=account,
            market=market,
            intent=Intent(
                data["side"], data["quantity"], f"manual order by {request.user.get_username()}"
            ),
            client_order_id=coid,
            reference_price=price,
            strategy=MANUAL,
        )
        if order is None:
            denial = (
                RiskDecision.objects.filter(
                    account=account, market=market, approved=False, id__gt=decided_before
                )
                .order_by("-id")
                .first()
            )
            return Response(
                {
                    "code": denial.code if denial else "DENIED",
                    "detail": denial.detail if denial else "refused by the risk checks",
                },
                status=status.HTTP_422_UNPROCESSABLE_ENTITY,
            )
        return Response(OrderSerializer(order).data, status=status.HTTP_201_CREATED)

    def _replay(self, order: Order, data: dict[str, Any]) -> Response:
        if order.side != data["side"] or order.quantity != data["quantity"]:
            return Response(
                {
                    "code": "IDEMPOTENCY_KEY_REUSED",
                    "detail": f"key already used for order {order.pk} "
                    f"({order.side} {order.quantity}); use a new key for a new order",
                },
                status=status.HTTP_409_CONFLICT,
            )
        return Response(OrderSerializer(order).data, status=status.HTTP_200_OK)

    @extend_schema(
        request=None,
        responses={200: OrderSerializer, 409: DENIAL},
        examples=[
            OpenApiExample(
                "canceled",
                value={"id": 42, "status": "canceled", "filled_quantity": "0E-8"},
                response_only=True,
            )
        ],
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Cancel an open order (at the exchange first when it is there)."""
        order = self.get_object()
        _live_needs_operator(request, order.account)
        if order.status not in (S.NEW, *OPEN):
            return Response(
                {"code": "NOT_OPEN", "detail": f"order {order.pk} is {order.status}"},
                status=status.HTTP_409_CONFLICT,
            )
        order = order_cancel(order=order, cause=f"canceled by {_actor(request)}")
        order.refresh_from_db()
        return Response(OrderSerializer(order).data)


@extend_schema_view(list=extend_schema(parameters=[MARKET, ACCOUNT, SINCE, UNTIL]))
class FillViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = FillSerializer
    permission_classes = VIEWER

    def get_queryset(self) -> QuerySet[Fill]:
        params = query_params(self.request)
        qs = filter_since(
            filter_market(fills_recent(), params, "order__market"), params, "filled_at"
        )
        if params.get("account"):
            qs = qs.filter(order__account__name=params["account"])
        return qs


@extend_schema_view(
    list=extend_schema(
        parameters=[MARKET, ACCOUNT, _param("open", "true: only non-zero positions", bool)]
    )
)
class PositionViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = PositionSerializer
    permission_classes = VIEWER

    def get_queryset(self) -> QuerySet[Position]:
        params = query_params(self.request)
        qs = Position.objects.select_related("market", "account").order_by("id")
        if params.get("account"):
            qs = qs.filter(account__name=params["account"])
        if params.get("open") == "true":
            qs = qs.exclude(quantity=0)
        return filter_market(qs, params)


class AccountViewSet(viewsets.ReadOnlyModelViewSet):
    """Exchange accounts (keys masked); traders switch the model strategy on and off."""

    serializer_class = AccountSerializer
    permission_classes = VIEWER
    queryset = ExchangeAccount.objects.select_related("exchange").order_by("name")

    def get_permissions(self) -> Any:
        if self.action == "strategy":
            return [HasRole.of("trader")()]
        return super().get_permissions()

    @extend_schema(
        request=StrategySerializer,
        responses={200: AccountSerializer},
        examples=[
            OpenApiExample("pause the bot", value={"enabled": False}, request_only=True),
        ],
    )
    @action(detail=True, methods=["post"])
    def strategy(self, request: Request, pk: str | None = None) -> Response:
        """Enable or disable the model strategy on this account (live: operators)."""
        body = StrategySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        account = self.get_object()
        _live_needs_operator(request, account)
        account = account_strategy_set(
            account=account, enabled=body.validated_data["enabled"], actor=_actor(request)
        )
        return Response(AccountSerializer(account).data)


class BacktestRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = BacktestRun
        fields = [
            "id",
            "status",
            "progress",
            "config",
            "config_hash",
            "data_source",
            "data_start",
            "data_end",
            "bars",
            "code_version",
            "seed",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        ]


class BacktestRunDetailSerializer(BacktestRunSerializer):
    class Meta(BacktestRunSerializer.Meta):
        fields = [*BacktestRunSerializer.Meta.fields, "results"]


BACKTEST_CONFIG = inline_serializer(
    "BacktestConfig",
    {
        "strategy": serializers.ChoiceField(choices=["ema_cross", "rsi_reversion", "model"]),
        "market": serializers.CharField(help_text="symbol, e.g. BTC/USDT"),
        "exchange": serializers.CharField(required=False, help_text="default binance"),
        "timeframe": serializers.CharField(required=False, help_text="default 1h"),
        "start": serializers.DateTimeField(required=False),
        "end": serializers.DateTimeField(required=False),
        "params": serializers.DictField(required=False, help_text="the strategy's parameters"),
        "fee_bps": serializers.DecimalField(max_digits=8, decimal_places=4, required=False),
        "slippage_bps": serializers.DecimalField(max_digits=8, decimal_places=4, required=False),
        "cash": serializers.DecimalField(max_digits=20, decimal_places=8, required=False),
        "seed": serializers.IntegerField(required=False),
    },
)


class BacktestViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Backtest runs, newest first (results on the detail); traders start new ones."""

    permission_classes = VIEWER

    def get_permissions(self) -> Any:
        if self.action == "create":
            return [HasRole.of("trader")()]
        return super().get_permissions()

    def get_serializer_class(self) -> Any:
        return BacktestRunDetailSerializer if self.action == "retrieve" else BacktestRunSerializer

    def get_queryset(self) -> QuerySet[BacktestRun]:
        qs = BacktestRun.objects.order_by("-created_at", "-id")
        if self.action == "list":
            qs = qs.defer("results")
        status_ = query_params(self.request).get("status")
        return qs.filter(status=status_) if status_ else qs

    @extend_schema(
        request=BACKTEST_CONFIG,
        responses={202: BacktestRunSerializer, 400: DENIAL},
        examples=[
            OpenApiExample(
                "EMA cross on BTC/USDT, 2024",
                value={
                    "strategy": "ema_cross",
                    "market": "BTC/USDT",
                    "timeframe": "1h",
                    "start": "2024-01-01T00:00:00Z",
                    "end": "2024-12-31T23:00:00Z",
                    "params": {"fast": 12, "slow": 26},
                },
                request_only=True,
            ),
            OpenApiExample(
                "queued",
                value={"id": 3, "status": "queued", "progress": 0.0},
                response_only=True,
                status_codes=["202"],
            ),
        ],
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Queue a backtest of a stored market (the worker runs it; poll the detail)."""
        # Late: the backtester's service pulls in the engine and numpy only when used.
        from trading.services.backtests import BacktestConfigError, backtest_start

        if not isinstance(request.data, dict):
            return Response(
                {"code": "BAD_CONFIG", "detail": "the body is a JSON object (the config)"},
                status=status.HTTP_400_BAD_REQUEST,
            )
        if "\\u0000" in json.dumps(request.data):  # PostgreSQL stores no NUL in text or JSON
            return Response(
                {"code": "BAD_CONFIG", "detail": "config: must not contain NUL characters"},
                status=status.HTTP_400_BAD_REQUEST,
            )
        try:
            run = backtest_start(config=dict(request.data), user=request.user)
        except BacktestConfigError as exc:
            return Response(
                {"code": "BAD_CONFIG", "detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST
            )
        return Response(BacktestRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)
