from __future__ import annotations

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.cache import never_cache

from quantum.health import readiness
from quantum.roles import mfa_verified, role_required


@never_cache
def health(request: HttpRequest) -> JsonResponse:
    """The process is alive and serving requests."""
    return JsonResponse({"status": "ok"})


@never_cache
def ready(request: HttpRequest) -> JsonResponse:
    """200 when every component is ready, else 503 naming what failed."""
    checks = readiness()
    failed = sorted(name for name, check in checks.items() if not check["ok"])
    body = {"status": "ok" if not failed else "fail", "failed": failed, "checks": checks}
    return JsonResponse(body, status=200 if not failed else 503)


@role_required("viewer")
def system(request: HttpRequest) -> HttpResponse:
    """System health for people: the /ready components, heartbeats and data per market."""
    from marketdata.models import Market
    from marketdata.selectors import latest_candle

    checks = readiness()
    markets = []
    for market in Market.objects.filter(active=True).select_related("exchange"):
        candle = latest_candle(market, settings.QT_TIMEFRAME)
        markets.append(
            {
                "market": market,
                "newest_bar": candle.open_time if candle else None,
                "last_ingest": market.last_ingest_at,
                "check": checks.get(f"data:{market.symbol}"),
                "model": checks.get(f"model:{market.symbol}"),
            }
        )
    components = {k: v for k, v in checks.items() if not k.startswith(("data:", "model:"))}
    context = {
        "ok": all(c["ok"] for c in checks.values()),
        "components": components,
        "markets": markets,
        "source": settings.QT_MARKET_SOURCE,
        "timeframe": settings.QT_TIMEFRAME,
        "checked_at": timezone.now(),
    }
    template = "quantum/_system_body.html" if request.htmx else "quantum/system.html"  # type: ignore[attr-defined]
    return render(request, template, context)


# Headers that belong to one hop, or that requests has already undone (it decompresses).
_HOP_HEADERS = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "content-encoding",
}
# Only these go upstream: the session cookie and the CSRF token stay with the platform.
_FORWARDED = {"accept", "accept-language", "content-type", "x-requested-with"}


@role_required("operator")
def flower(request: HttpRequest, path: str = "") -> HttpResponse:
    """Flower behind the platform's login: operators who passed MFA in this session.

    Flower listens on loopback (or the compose network) and asks for basic-auth
    credentials that only this view sends, so it is the one way in. Its POSTs (revoke,
    pool resize, shutdown) pass Django's CSRF check like any form: the token is handed to
    Flower's jQuery in the proxied pages.
    """
    import requests

    if request.method not in ("GET", "HEAD") and not mfa_verified(request):
        raise PermissionDenied("Flower's controls need a second factor at login (MFA)")
    base = settings.QT_FLOWER_URL.rstrip("/")
    url = f"{base}/flower/{path}"
    if request.META.get("QUERY_STRING"):
        url += "?" + request.META["QUERY_STRING"]
    headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED}
    try:
        upstream = requests.request(
            request.method or "GET",
            url,
            data=request.body if request.method not in ("GET", "HEAD") else None,
            headers=headers,
            timeout=15,
            allow_redirects=False,
            auth=(settings.QT_FLOWER_USER, settings.QT_FLOWER_PASSWORD)
            if settings.QT_FLOWER_PASSWORD
            else None,
        )
    except requests.RequestException as exc:
        return render(
            request,
            "quantum/flower_down.html",
            {"url": base, "error": f"{type(exc).__name__}: {exc}"},
            status=502,
        )
    content = upstream.content
    content_type = upstream.headers.get("Content-Type", "application/octet-stream")
    if content_type.startswith("text/html") and b"</body>" in content:
        script = render_to_string("quantum/_flower_csrf.html", {"token": get_token(request)})
        content = content.replace(b"</body>", script.encode() + b"</body>", 1)
    response = HttpResponse(content, status=upstream.status_code, content_type=content_type)
    for name, value in upstream.headers.items():
        lowered = name.lower()
        if lowered in _HOP_HEADERS or lowered in ("content-type", "set-cookie"):
            continue
        if lowered == "location" and value.startswith(base):
            value = value[len(base) :]
        response[name] = value
    return response
