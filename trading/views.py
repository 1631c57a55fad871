"""Server-rendered pages; every one needs a login and a role."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Count, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from marketdata.models import TIMEFRAMES, Candle, Market, NewsItem
from quantum.preferences import (
    PreferenceForm,
    preference_for_form,
    preference_update,
    preferences_of,
)
from quantum.roles import has_role, mfa_verified, role_required
from trading.forms import AccountKeysForm, AccountModeForm
from trading.logs import (
    CSV_CHUNK,
    OrderFilter,
    SignalFilter,
    TradeFilter,
    csv_response,
    iso,
    page_of,
    query_without_page,
)
from trading.models import ExchangeAccount, Order, Trade
from trading.selectors import (
    account_equity,
    fills_recent,
    orders_recent,
    positions_with_pnl,
    reconcile_problems,
    signals_recent,
)
from trading.services.accounts import ModeChangeDenied, account_keys_set, account_mode_set

EMA_PERIOD = 20


def _market(request: HttpRequest) -> Market | None:
    markets = Market.objects.filter(active=True).select_related("exchange")
    wanted = request.GET.get("market")
    if wanted and wanted.isdigit():
        return get_object_or_404(markets, pk=int(wanted))
    # No choice in the URL: the user's first chosen market (settings), else the first one.
    preferred = preferences_of(request.user).market_id
    if preferred is not None:
        chosen = markets.filter(pk=preferred).first()
        if chosen is not None:
            return chosen
    return markets.first()


@role_required("viewer")
def dashboard(request: HttpRequest) -> HttpResponse:
    market = _market(request)
    account = ExchangeAccount.objects.filter(name="paper").first()
    positions = positions_with_pnl(account=account) if account else []
    context = {
        "market": market,
        "markets": Market.objects.filter(active=True).select_related("exchange"),
        "signals": signals_recent()[:30],
        "fills": fills_recent()[:30],
        "orders": orders_recent()[:30],
        "positions": positions,
        "market_position": next(
            (p for p in positions if market and p.market_id == market.pk), None
        ),
        "account": account,
        "equity": account_equity(account=account) if account else None,
    }
    return render(request, "trading/dashboard.html", context)


def _ema(closes: list[float], period: int) -> list[float | None]:
    """TA-Lib's EMA (the features' reference implementation); None before it is defined."""
    import numpy as np
    import talib

    if len(closes) < period:
        return [None] * len(closes)
    values = talib.EMA(np.asarray(closes, dtype=float), period)
    return [None if v != v else round(float(v), 8) for v in values]


def _sentiment_strip(market: Market, times: list[datetime], step_s: int) -> list[dict[str, Any]]:
    """Mean VADER sentiment of the headlines about the market's asset, per bar with news."""
    if not times:
        return []
    start, end = int(times[0].timestamp()), int(times[-1].timestamp()) + step_s
    rows = NewsItem.objects.filter(
        assets__contains=f",{market.base.upper()},",
        published_at__gte=times[0],
        published_at__lt=datetime.fromtimestamp(end, tz=times[0].tzinfo),
        sentiment__isnull=False,
    ).values_list("published_at", "sentiment")
    buckets: dict[int, list[float]] = {}
    for published, sentiment in rows:
        if sentiment is None:
            continue
        bar = start + (int(published.timestamp()) - start) // step_s * step_s
        buckets.setdefault(bar, []).append(sentiment)
    return [
        {"time": bar, "value": round(sum(v) / len(v), 4), "count": len(v)}
        for bar, v in sorted(buckets.items())
    ]


@role_required("viewer")
def chart_data(request: HttpRequest, market_id: int) -> JsonResponse:
    """Candles and signal/fill markers for the chart (UNIX seconds, as lightweight-charts wants)."""
    market = get_object_or_404(Market, pk=market_id)
    # One timeframe: bars of several would give the chart duplicate times, which it refuses.
    # The user's preferred one where this market has bars in it, else the loop's.
    timeframe = settings.QT_TIMEFRAME
    preferred = preferences_of(request.user).timeframe
    if (
        preferred
        and preferred != timeframe
        and Candle.objects.filter(market=market, timeframe=preferred).exists()
    ):
        timeframe = preferred
    candles = list(
        Candle.objects.filter(market=market, timeframe=timeframe)
        .order_by("-open_time")[:500]
        .values_list("open_time", "open", "high", "low", "close", "volume")
    )[::-1]
    first = candles[0][0] if candles else None
    signals = signals_recent(market_id=market.pk).filter(timeframe=timeframe).exclude(action="HOLD")
    fills = fills_recent(market_id=market.pk)
    if first is not None:
        signals = signals.filter(candle_time__gte=first)
        fills = fills.filter(order__signal__candle_time__gte=first)
    closes = [float(row[4]) for row in candles]
    ema = _ema(closes, EMA_PERIOD)
    step_s = int(TIMEFRAMES[timeframe].total_seconds())
    return JsonResponse(
        {
            "market": market.symbol,
            "timeframe": timeframe,
            "ema": [
                {"time": int(row[0].timestamp()), "value": value}
                for row, value in zip(candles, ema, strict=True)
                if value is not None
            ],
            "ema_period": EMA_PERIOD,
            "sentiment": _sentiment_strip(market, [row[0] for row in candles], step_s),
            "candles": [
                {
                    "time": int(t.timestamp()),
                    "open": float(o),
                    "high": float(h),
                    "low": float(lo),
                    "close": float(c),
                    "volume": float(v),
                }
                for t, o, h, lo, c, v in candles
            ],
            "signals": [
                {"time": int(s.candle_time.timestamp()), "action": s.action} for s in signals[:300]
            ],
            "fills": [
                {
                    "time": int(f.order.signal.candle_time.timestamp()) if f.order.signal else None,
                    "side": f.order.side,
                    "price": float(f.price),
                }
                for f in fills.select_related("order__signal")[:300]
            ],
        }
    )


@role_required("operator")
def accounts(request: HttpRequest) -> HttpResponse:
    """Exchange accounts: keys (write-only, masked) and the paper/testnet/live switch."""
    accounts = list(ExchangeAccount.objects.select_related("exchange").order_by("name"))
    problems = reconcile_problems([a.pk for a in accounts])
    for account in accounts:
        # Shown while the account waits for an operator; the incident itself stays open
        # on /risk/incidents/ until someone resolves it.
        problem = problems.get(account.pk) if account.needs_reconcile else None
        account.reconcile_problem = problem  # type: ignore[attr-defined]
    return render(
        request,
        "trading/accounts.html",
        {
            "accounts": accounts,
            "mode_form": AccountModeForm(),
            "keys_form": AccountKeysForm(),
            "mfa": mfa_verified(request),
        },
    )


@require_POST
@role_required("operator")
def account_mode(request: HttpRequest, account_id: int) -> HttpResponse:
    account = get_object_or_404(ExchangeAccount, pk=account_id)
    form = AccountModeForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Mode not changed: {form.errors.as_text()}")
        return redirect("accounts")
    try:
        account_mode_set(
            account=account,
            mode=form.cleaned_data["mode"],
            user=cast(AbstractBaseUser, request.user),  # role_required: authenticated
            reason=form.cleaned_data["reason"],
            mfa_verified=mfa_verified(request),
        )
    except ModeChangeDenied as exc:
        messages.error(request, f"Mode not changed: {exc}")
        return redirect("accounts")
    messages.success(request, f"{account.name} is now in {account.mode} mode.")
    return redirect("accounts")


@require_POST
@role_required("operator")
def account_keys(request: HttpRequest, account_id: int) -> HttpResponse:
    account = get_object_or_404(ExchangeAccount, pk=account_id)
    form = AccountKeysForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Keys not saved: {form.errors.as_text()}")
        return redirect("accounts")
    account.api_url_override = form.cleaned_data["api_url_override"] or ""
    account.save(update_fields=["api_url_override"])
    account_keys_set(
        account=account,
        api_key=form.cleaned_data["api_key"],
        api_secret=form.cleaned_data["api_secret"],
        api_password=form.cleaned_data["api_password"] or "",
        actor=request.user.get_username(),
    )
    messages.success(request, f"Keys saved for {account.name} ({account.api_key_masked}).")
    return redirect("accounts")


def _log_page(
    request: HttpRequest, *, form: Any, qs: Any, template: str, partial: str, extra: dict
) -> HttpResponse:
    """A filtered, paginated log: the page, its table for an HTMX swap, or 400 naming the error."""
    if not form.is_valid():
        context = {"form": form, "page": None, "query": query_without_page(request), **extra}
        return render(request, partial if request.htmx else template, context, status=400)  # type: ignore[attr-defined]
    page = page_of(request, form.apply(qs))
    context = {
        "form": form,
        "page": page,
        "query": query_without_page(request),
        # Live rows are prepended only to the unfiltered first page: elsewhere they would
        # not belong (another market, an older page).
        "live": page.number == 1 and not form.is_filtered,
        **extra,
    }
    return render(request, partial if request.htmx else template, context)  # type: ignore[attr-defined]


@role_required("viewer")
def signals_log(request: HttpRequest) -> HttpResponseBase:
    """Every signal with its model version and the three probabilities."""
    form = SignalFilter(request.GET or {})
    qs = signals_recent()
    if request.GET.get("format") == "csv" and form.is_valid():
        return csv_response(
            filename="signals.csv",
            header=[
                "candle_time",
                "market",
                "timeframe",
                "action",
                "prob_buy",
                "prob_hold",
                "prob_sell",
                "price",
                "model_version",
                "created_at",
            ],
            rows=form.apply(qs).iterator(chunk_size=CSV_CHUNK),
            row=lambda s: [
                iso(s.candle_time),
                s.market.symbol,
                s.timeframe,
                s.action,
                s.prob_buy,
                s.prob_hold,
                s.prob_sell,
                s.price,
                s.model_version.version,
                iso(s.created_at),
            ],
        )
    return _log_page(
        request,
        form=form,
        qs=qs,
        template="trading/signals.html",
        partial="trading/_signals_table.html",
        extra={},
    )


@role_required("viewer")
def orders_log(request: HttpRequest) -> HttpResponseBase:
    """Orders of every account: filters, pages of 50 and the same rows as CSV."""
    form = OrderFilter(request.GET or {})
    qs = orders_recent()
    if request.GET.get("format") == "csv" and form.is_valid():
        return csv_response(
            filename="orders.csv",
            header=[
                "created_at",
                "account",
                "market",
                "side",
                "type",
                "quantity",
                "price",
                "filled_quantity",
                "average_price",
                "status",
                "client_order_id",
                "strategy",
                "reason",
                "error",
            ],
            rows=form.apply(qs).iterator(chunk_size=CSV_CHUNK),
            row=lambda o: [
                iso(o.created_at),
                o.account.name,
                o.market.symbol,
                o.side,
                o.order_type,
                o.quantity,
                o.price if o.price is not None else "",
                o.filled_quantity,
                o.average_price if o.average_price is not None else "",
                o.status,
                o.client_order_id,
                o.strategy,
                o.reason,
                o.error,
            ],
        )
    return _log_page(
        request,
        form=form,
        qs=qs,
        template="trading/orders.html",
        partial="trading/_orders_table.html",
        extra={"statuses": Order.Status},
    )


@role_required("viewer")
def trades_log(request: HttpRequest) -> HttpResponseBase:
    """Closed round trips with their net PnL."""
    form = TradeFilter(request.GET or {})
    qs = Trade.objects.select_related("market", "account")
    if request.GET.get("format") == "csv" and form.is_valid():
        return csv_response(
            filename="trades.csv",
            header=[
                "entry_time",
                "exit_time",
                "account",
                "market",
                "side",
                "quantity",
                "entry_price",
                "exit_price",
                "fees",
                "pnl",
            ],
            rows=form.apply(qs).iterator(chunk_size=CSV_CHUNK),
            row=lambda t: [
                iso(t.entry_time),
                iso(t.exit_time),
                t.account.name,
                t.market.symbol,
                t.side,
                t.quantity,
                t.entry_price,
                t.exit_price,
                t.fees,
                t.pnl,
            ],
        )
    totals = (
        form.apply(qs).aggregate(pnl=Sum("pnl"), fees=Sum("fees"), n=Count("id"))
        if form.is_valid()
        else {}
    )
    return _log_page(
        request,
        form=form,
        qs=qs,
        template="trading/trades.html",
        partial="trading/_trades_table.html",
        extra={"totals": totals},
    )


@role_required("viewer")
def positions(request: HttpRequest) -> HttpResponse:
    """Positions and PnL per account, with the account's equity curve."""
    from risk.models import EquitySnapshot

    accounts = list(ExchangeAccount.objects.select_related("exchange").order_by("name"))
    wanted = request.GET.get("account", "")
    account = next((a for a in accounts if str(a.pk) == wanted), None)
    if account is None:
        account = next(
            (a for a in accounts if a.name == "paper"), accounts[0] if accounts else None
        )
    curve: list[dict[str, Any]] = []
    if account is not None:
        # The latest 2,000 snapshots (risk_watch takes one every 15 s: about 8 hours).
        seen: set[int] = set()
        snapshots = (
            EquitySnapshot.objects.filter(account=account)
            .order_by("-taken_at")
            .values_list("taken_at", "equity")[:2000]
        )
        for taken_at, equity in reversed(list(snapshots)):
            t = int(taken_at.timestamp())
            if t not in seen:  # the chart refuses two points at one second
                seen.add(t)
                curve.append({"time": t, "value": float(equity)})
    trades = Trade.objects.filter(account=account) if account else Trade.objects.none()
    context = {
        "accounts": accounts,
        "account": account,
        "positions": positions_with_pnl(account=account) if account else [],
        "equity": account_equity(account=account) if account else None,
        "curve": curve,
        "totals": trades.aggregate(pnl=Sum("pnl"), fees=Sum("fees"), n=Count("id")),
        "recent_trades": trades.select_related("market")[:10],
    }
    return render(request, "trading/positions.html", context)


@role_required("viewer")
def settings_page(request: HttpRequest) -> HttpResponse:
    """Platform defaults, the user's own preferences, exchange accounts (masked keys)."""
    form = PreferenceForm(
        request.POST or None, instance=preference_for_form(request.user), user=request.user
    )
    if request.method == "POST":
        if form.is_valid():
            preference_update(user=request.user, **form.preference_values())
            messages.success(request, "Preferences saved.")
            return redirect("settings")
        errors = "; ".join(str(e) for errs in form.errors.values() for e in errs)
        messages.error(request, f"Preferences not saved: {errors}")
    return render(
        request,
        "trading/settings.html",
        {
            "default_exchange": settings.QT_EXCHANGE,
            "default_markets": settings.QT_MARKETS,
            "timeframe": settings.QT_TIMEFRAME,
            "markets": Market.objects.select_related("exchange"),
            "accounts": ExchangeAccount.objects.select_related("exchange").order_by("name"),
            "can_manage_accounts": has_role(request.user, "operator"),
            "form": form,
        },
        status=400 if form.is_bound and not form.is_valid() else 200,
    )
