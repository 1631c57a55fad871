from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from marketdata import views as marketdata_views
from marketdata.api import CandleViewSet, MarketViewSet
from models_registry.api import ModelVersionViewSet
from quantum import api_tokens, views
from quantum.metrics import metrics_view
from quantum.roles import admin_site_protect
from risk.api import KillSwitchView, RiskDecisionViewSet
from trading import views as trading_views
from trading import views_backtests
from trading.api import (
    AccountViewSet,
    BacktestViewSet,
    FillViewSet,
    OrderViewSet,
    PositionViewSet,
    SignalViewSet,
)

# Before admin.site.urls is built: the admin is for operators who passed MFA.
admin_site_protect(admin.site)

router = DefaultRouter()
router.register("markets", MarketViewSet, basename="market")
router.register("candles", CandleViewSet, basename="candle")
router.register("signals", SignalViewSet, basename="signal")
router.register("orders", OrderViewSet, basename="order")
router.register("fills", FillViewSet, basename="fill")
router.register("positions", PositionViewSet, basename="position")
router.register("accounts", AccountViewSet, basename="account")
router.register("backtests", BacktestViewSet, basename="backtest")
router.register("models", ModelVersionViewSet, basename="modelversion")
router.register("risk/decisions", RiskDecisionViewSet, basename="riskdecision")

urlpatterns = [
    path("", trading_views.dashboard, name="dashboard"),
    path("markets/<int:market_id>/chart.json", trading_views.chart_data, name="chart-data"),
    path("settings/accounts/", trading_views.accounts, name="accounts"),
    path(
        "settings/accounts/<int:account_id>/mode", trading_views.account_mode, name="account-mode"
    ),
    path(
        "settings/accounts/<int:account_id>/keys", trading_views.account_keys, name="account-keys"
    ),
    path("signals/", trading_views.signals_log, name="signals"),
    path("orders/", trading_views.orders_log, name="orders"),
    path("trades/", trading_views.trades_log, name="trades"),
    path("positions/", trading_views.positions, name="positions"),
    path("news/", marketdata_views.news, name="news"),
    path("backtests/", views_backtests.backtests, name="backtests"),
    path("backtests/<int:run_id>/", views_backtests.backtest_detail, name="backtest-page"),
    path(
        "backtests/<int:run_id>/progress",
        views_backtests.backtest_progress,
        name="backtest-page-progress",
    ),
    path(
        "backtests/<int:run_id>/export.<str:fmt>",
        views_backtests.backtest_export,
        name="backtest-page-export",
    ),
    path("settings/", trading_views.settings_page, name="settings"),
    path("system/", views.system, name="system"),
    path("flower/", views.flower, name="flower"),
    path("flower/<path:path>", views.flower, name="flower-path"),
    path("models/", include("models_registry.urls")),
    path("health", views.health, name="health"),
    path("ready", views.ready, name="ready"),
    # Prometheus: token or internal callers only (quantum/metrics.py::metrics_allowed).
    path("metrics", metrics_view, name="prometheus-django-metrics"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("risk/", include("risk.urls")),
    path("settings/tokens/", api_tokens.tokens, name="api-tokens"),
    path("settings/tokens/<int:token_id>/revoke", api_tokens.token_revoke, name="api-token-revoke"),
    path("api/v1/auth/token/", api_tokens.PasswordTokenView.as_view(), name="api-token"),
    path("api/v1/risk/killswitch/", KillSwitchView.as_view(), name="api-killswitch"),
    path("api/v1/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
]
