"""News and sentiment pages."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.db.models import Avg, Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from marketdata.models import Market, NewsItem
from quantum.roles import role_required

PAGE_SIZE = 50


@role_required("viewer")
def news(request: HttpRequest) -> HttpResponse:
    """Scored headlines about one market's asset (or all of them), newest first."""
    markets = Market.objects.filter(active=True).select_related("exchange")
    wanted = request.GET.get("market", "")
    market = get_object_or_404(markets, pk=int(wanted)) if wanted.isdigit() else None
    qs = NewsItem.objects.all()
    if market is not None:
        # Asset codes are stored between commas so that ",BTC," selects exactly BTC.
        qs = qs.filter(assets__contains=f",{market.base.upper()},")
    tone = request.GET.get("tone", "")
    if tone == "positive":
        qs = qs.filter(sentiment__gte=0.05)
    elif tone == "negative":
        qs = qs.filter(sentiment__lte=-0.05)
    elif tone == "neutral":
        qs = qs.filter(sentiment__gt=-0.05, sentiment__lt=0.05)
    summary = qs.aggregate(mean=Avg("sentiment"), n=Count("id"))
    page = Paginator(qs.order_by("-published_at", "-id"), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    params = request.GET.copy()
    params.pop("page", None)
    context = {
        "markets": markets,
        "market": market,
        "tone": tone,
        "page": page,
        "summary": summary,
        "query": params.urlencode(),
    }
    template = "marketdata/_news_table.html" if request.htmx else "marketdata/news.html"  # type: ignore[attr-defined]
    return render(request, template, context)
