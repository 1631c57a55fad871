"""System health page and Flower behind the platform's login."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from django.conf import settings as django_settings

from quantum.management.commands.runplatform import flower_argv
from quantum.services import heartbeat_record
from quantum.tests.servers import free_port

FLOWER_PASSWORD = secrets.token_urlsafe(16)


@pytest.fixture(scope="module")
def flower_url() -> Iterator[str]:
    """A real Flower, started as `make run` starts it (loopback, /flower, basic auth)."""
    port = free_port()
    argv = [a if not a.startswith("--port=") else f"--port={port}" for a in flower_argv("python")]
    argv[0] = sys.executable
    env = dict(os.environ, FLOWER_BASIC_AUTH=f"qt-proxy:{FLOWER_PASSWORD}")
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/flower/healthcheck", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Flower did not start (exit code {proc.poll()})")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture
def flower_settings(flower_url, settings):  # type: ignore[no-untyped-def]
    settings.QT_FLOWER_URL = flower_url
    settings.QT_FLOWER_USER = "qt-proxy"
    settings.QT_FLOWER_PASSWORD = FLOWER_PASSWORD
    return settings


def test_make_run_starts_flower_on_loopback_under_the_flower_prefix() -> None:
    argv = flower_argv("python")
    assert argv[:6] == ["python", "-m", "celery", "-A", "quantum", "flower"]
    assert "--address=127.0.0.1" in argv
    assert "--url_prefix=flower" in argv
    assert f"--port={django_settings.QT_FLOWER_PORT}" in argv


def test_the_system_page_shows_components_heartbeats_and_freshness(
    carol, client_as, market, settings
) -> None:
    heartbeat_record(component="worker")
    response = client_as(carol).get("/system/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="check-database"' in html and 'id="check-redis"' in html
    worker = html.split('id="check-worker"')[1].split("</tr>")[0]
    assert "ok" in worker and "last seen" in worker
    beat = html.split('id="check-beat"')[1].split("</tr>")[0]
    assert "failing" in beat and "no beat heartbeat yet" in beat
    row = html.split(f'id="freshness-{market.pk}"')[1].split("</tr>")[0]
    assert "BTC/USDT" in row and "no candles" in row
    assert "not ready" in html
    # Viewers get no Flower link; the htmx refresh gets the body only.
    assert "/flower/" not in html
    partial = client_as(carol).get("/system/", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in partial and 'id="check-worker"' in partial


@pytest.mark.django_db
def test_flower_asks_for_credentials_only_the_platform_has(flower_url) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{flower_url}/flower/", timeout=5)
    assert refused.value.code == 401


@pytest.mark.django_db
def test_flower_is_reachable_by_operators_only(
    flower_settings, alice, bob, carol, client_as
) -> None:
    for user in (bob, carol):
        assert client_as(user).get("/flower/").status_code == 403
    operator = client_as(alice)
    page = operator.get("/flower/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<title>Workers · Flower</title>" in html
    assert "/flower/tasks" in html
    # Flower's own POSTs get the platform's CSRF token; the session cookie never goes upstream.
    assert 'jQuery.ajaxSetup({ headers: { "X-CSRFToken":' in html
    static = operator.get("/flower/static/js/flower.js")
    assert static.status_code == 200 and b"url_prefix" in static.content
    api = operator.get("/flower/api/workers?refresh=false")
    assert api.status_code == 200 and api["Content-Type"].startswith("application/json")


@pytest.mark.django_db
def test_an_operator_without_mfa_in_the_session_never_reaches_flower(
    flower_settings, alice, client_as
) -> None:
    client = client_as(alice, mfa=False)
    page = client.get("/flower/")
    assert page.status_code == 302 and "/flower" not in page["Location"]
    revoke = client.post("/flower/api/task/revoke/nope", {"terminate": "false"})
    assert revoke.status_code in (302, 403)
    assert b"Flower" not in revoke.content


def test_an_unreachable_flower_is_a_502_naming_where_it_was_looked_for(
    alice, client_as, settings
) -> None:
    settings.QT_FLOWER_URL = f"http://127.0.0.1:{free_port()}"
    response = client_as(alice).get("/flower/")
    assert response.status_code == 502
    assert settings.QT_FLOWER_URL in response.content.decode()


def _htmx_request(rf, htmx: bool = True):  # type: ignore[no-untyped-def]
    from django.contrib.messages.storage.fallback import FallbackStorage
    from django.contrib.sessions.backends.cache import SessionStore

    request = rf.post("/anything", HTTP_HX_REQUEST="true" if htmx else "")
    request.session = SessionStore()
    request._messages = FallbackStorage(request)
    request.htmx = htmx
    return request


def test_a_toast_joins_the_other_htmx_triggers_and_refuses_an_unknown_level() -> None:
    from django.http import HttpResponse

    from quantum.toasts import toast_trigger

    response = HttpResponse()
    response["HX-Trigger"] = "refresh"
    toast_trigger(response, level="success", message="Saved.")
    toast_trigger(response, level="error", message="Failed: no keys.")
    assert json.loads(response["HX-Trigger"]) == {
        "refresh": None,
        "toasts": {
            "items": [
                {"level": "success", "message": "Saved."},
                {"level": "error", "message": "Failed: no keys."},
            ]
        },
    }
    with pytest.raises(ValueError, match="toast level must be one of"):
        toast_trigger(response, level="loud", message="x")


def test_messages_of_an_htmx_answer_become_toasts_at_once(rf) -> None:  # type: ignore[no-untyped-def]
    from django.contrib import messages
    from django.http import HttpResponse, HttpResponseRedirect

    from quantum.toasts import HtmxMessagesMiddleware

    def view(request):  # type: ignore[no-untyped-def]
        messages.error(request, "Order refused: MAX_NOTIONAL")
        return HttpResponse("<tr></tr>")

    request = _htmx_request(rf)
    response = HtmxMessagesMiddleware(view)(request)
    assert json.loads(response["HX-Trigger"])["toasts"]["items"] == [
        {"level": "error", "message": "Order refused: MAX_NOTIONAL"}
    ]
    # Marked used: MessageMiddleware does not keep them for a later page.
    assert request._messages.used is True

    def redirecting(request):  # type: ignore[no-untyped-def]
        messages.success(request, "Saved.")
        return HttpResponseRedirect("/")

    for req, inner in ((_htmx_request(rf), redirecting), (_htmx_request(rf, htmx=False), view)):
        untouched = HtmxMessagesMiddleware(inner)(req)
        assert "HX-Trigger" not in untouched
        assert req._messages.used is False, "left for the page that shows them"
