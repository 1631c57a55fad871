"""Preferences: saved from /settings/, opening the dashboard on the user's market, muting the
live toasts the user turned off, and mailing risk incidents to operators who opted in."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.db import transaction

from marketdata.services.sync import market_register
from quantum.models import UserPreference
from quantum.preferences import preference_update, preferences_of
from risk.models import Incident
from risk.services.incidents import incident_open

pytestmark = pytest.mark.django_db


@pytest.fixture
def markets(db):  # type: ignore[no-untyped-def]
    return {
        "btc": market_register(exchange_code="binance", symbol="BTC/USDT"),
        "eth": market_register(exchange_code="binance", symbol="ETH/USDT"),
        "kraken": market_register(exchange_code="kraken", symbol="SOL/USD"),
    }


def _form(**overrides):  # type: ignore[no-untyped-def]
    data = {"timeframe": "1h", "notify_fills": "on", "notify_signals": "on", "notify_risk": "on"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


@pytest.fixture
def save(django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    """POST the settings form as the browser does; after-commit work (the cache) runs."""

    def post(client, data):  # type: ignore[no-untyped-def]
        with django_capture_on_commit_callbacks(execute=True):
            return client.post("/settings/", data)

    return post


def _muted(page: str) -> str | None:
    found = re.search(r'<body[^>]*data-notify-muted="([^"]*)"', page)
    return found.group(1) if found else None


def test_a_trader_saves_preferences_and_sees_a_saved_toast(bob, client_as, markets) -> None:  # type: ignore[no-untyped-def]
    client = client_as(bob)
    exchange = markets["eth"].exchange
    response = client.post(
        "/settings/",
        _form(
            default_exchange=exchange.pk,
            markets=[markets["eth"].pk],
            timeframe="4h",
            notify_signals=None,
        ),
    )
    assert response.status_code == 302 and response["Location"] == "/settings/"

    page = client.get("/settings/").content.decode()
    assert 'class="toast success"' in page and "Preferences saved." in page
    pref = UserPreference.objects.get(user=bob)
    assert pref.default_exchange == exchange and pref.timeframe == "4h"
    assert list(pref.markets.all()) == [markets["eth"]]
    assert (pref.notify_fills, pref.notify_signals) == (True, False)
    # The form shows what was stored.
    assert re.search(rf'value="{markets["eth"].pk}"[^>]*checked', page)


def test_markets_off_the_chosen_exchange_are_refused_and_nothing_changes(  # type: ignore[no-untyped-def]
    bob, client_as, markets
) -> None:
    preference_update(
        user=bob,
        default_exchange=None,
        markets=[markets["btc"]],
        timeframe="1h",
        notify_fills=True,
        notify_signals=True,
        notify_risk=True,
        notify_email=False,
    )
    response = client_as(bob).post(
        "/settings/",
        _form(
            default_exchange=markets["btc"].exchange.pk,
            markets=[markets["btc"].pk, markets["kraken"].pk],
        ),
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "Preferences not saved" in page and "markets not on binance: SOL/USD" in page
    assert list(UserPreference.objects.get(user=bob).markets.all()) == [markets["btc"]]

    unknown = client_as(bob).post("/settings/", _form(timeframe="7h"))
    assert unknown.status_code == 400 and "7h" in unknown.content.decode()
    assert UserPreference.objects.get(user=bob).timeframe == "1h"


def test_the_dashboard_opens_on_the_users_first_chosen_market(  # type: ignore[no-untyped-def]
    carol, client_as, markets, save
) -> None:
    client = client_as(carol)
    assert client.get("/").context["market"] == markets["btc"]
    save(client, _form(markets=[markets["eth"].pk, markets["kraken"].pk]))

    assert client.get("/").context["market"] == markets["eth"]
    # A market named in the URL still wins.
    assert client.get(f"/?market={markets['btc'].pk}").context["market"] == markets["btc"]
    # A chosen market that is switched off is skipped.
    markets["eth"].active = False
    markets["eth"].save()
    save(client, _form(markets=[markets["kraken"].pk]))
    assert client.get("/").context["market"] == markets["kraken"]


def test_the_page_names_the_toast_kinds_the_user_turned_off(carol, client_as, save) -> None:  # type: ignore[no-untyped-def]
    client = client_as(carol)
    assert _muted(client.get("/signals/").content.decode()) is None
    save(client, _form(notify_fills=None, notify_signals=None))
    assert _muted(client.get("/signals/").content.decode()) == "fill signal"
    save(client, _form())
    assert _muted(client.get("/signals/").content.decode()) is None


def test_pushed_toasts_carry_their_kind_and_the_script_drops_muted_kinds(db, settings) -> None:  # type: ignore[no-untyped-def]
    from django.template.loader import render_to_string

    from trading.tests.factories import SignalFactory

    signal = SignalFactory(action="BUY")
    pushed = render_to_string("trading/push/signal.html", {"signal": signal})
    assert 'data-kind="signal"' in pushed and "Signal: BUY" in pushed
    assert "toast" not in render_to_string(
        "trading/push/signal.html", {"signal": SignalFactory(action="HOLD")}
    ), "HOLD on every bar would flood the page"
    incident = Incident(severity="critical", code="X", title="exchange down")
    assert 'data-kind="risk"' in render_to_string("risk/push/incident.html", {"incident": incident})
    script = (settings.BASE_DIR / "static/js/app.js").read_text(encoding="utf-8")
    assert "notifyMuted" in script and "toast.remove()" in script


def test_risk_and_email_choices_are_offered_to_operators_only_and_kept_for_others(  # type: ignore[no-untyped-def]
    alice, bob, client_as, markets
) -> None:
    assert 'name="notify_email"' in client_as(alice).get("/settings/").content.decode()
    page = client_as(bob).get("/settings/").content.decode()
    assert 'name="notify_email"' not in page and 'name="notify_risk"' not in page
    UserPreference.objects.create(user=bob, notify_risk=False, notify_email=True)
    client_as(bob).post("/settings/", _form(notify_risk="on", notify_email="on"))
    pref = UserPreference.objects.get(user=bob)
    assert (pref.notify_risk, pref.notify_email) == (False, True), "not offered: not changed"


def test_an_operator_without_an_email_address_cannot_ask_for_incident_mails(  # type: ignore[no-untyped-def]
    alice, client_as
) -> None:
    alice.email = ""
    alice.save()
    response = client_as(alice).post("/settings/", _form(notify_email="on"))
    assert response.status_code == 400
    assert "your account has no email address" in response.content.decode()
    assert not UserPreference.objects.filter(user=alice).exists()


def test_preferences_are_read_from_the_cache_after_the_first_page(  # type: ignore[no-untyped-def]
    carol, markets, django_assert_num_queries
) -> None:
    UserPreference.objects.create(user=carol, notify_fills=False).markets.set([markets["eth"]])
    first = preferences_of(carol)
    with django_assert_num_queries(0):
        again = preferences_of(carol)
    assert again == first and first.muted == ("fill",) and first.market_id == markets["eth"].pk


def _opt_in(user, email: bool = True) -> None:  # type: ignore[no-untyped-def]
    UserPreference.objects.update_or_create(user=user, defaults={"notify_email": email})


def test_a_risk_incident_is_mailed_after_commit_to_operators_who_opted_in(  # type: ignore[no-untyped-def]
    alice, bob, django_user_model, django_capture_on_commit_callbacks
) -> None:
    from django.contrib.auth.models import Group

    dave = django_user_model.objects.create_user("dave", "dave@example.com", "x")
    dave.groups.add(Group.objects.get(name="operator"))
    root = django_user_model.objects.create_superuser("root", "root@example.com", "x")
    _opt_in(alice)
    _opt_in(root)
    _opt_in(dave, email=False)
    _opt_in(bob)  # a trader: never mailed, whatever is stored

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        incident = incident_open(
            severity=Incident.Severity.CRITICAL, code="KILL_SWITCH", title="kill switch on"
        )
    assert mail.outbox == [], "nothing is sent before the transaction commits"
    for callback in callbacks:
        callback()

    assert sorted(m.to[0] for m in mail.outbox) == ["alice@example.com", "root@example.com"]
    message = mail.outbox[0]
    assert all(len(m.to) == 1 for m in mail.outbox), "operators do not see each other's address"
    assert message.subject == "[Quantum Trader] CRITICAL incident: kill switch on"
    assert "Code: KILL_SWITCH" in message.body and "/risk/incidents/" in message.body
    assert incident.pk


def test_info_incidents_and_rolled_back_ones_are_not_mailed(  # type: ignore[no-untyped-def]
    alice, django_capture_on_commit_callbacks
) -> None:
    _opt_in(alice)
    with django_capture_on_commit_callbacks(execute=True):
        incident_open(severity=Incident.Severity.INFO, code="STATE", title="back to ACTIVE")
    assert mail.outbox == []

    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        incident_open(severity=Incident.Severity.CRITICAL, code="X", title="never happened")
        raise RuntimeError("rolled back")
    assert mail.outbox == [] and not Incident.objects.filter(code="X").exists()


def test_a_mail_server_failure_is_logged_and_the_incident_stays(  # type: ignore[no-untyped-def]
    alice, settings, django_capture_on_commit_callbacks, caplog
) -> None:
    _opt_in(alice)
    # A real SMTP client against a closed loopback port: the connection is refused.
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2
    with django_capture_on_commit_callbacks(execute=True):
        incident_open(severity=Incident.Severity.WARNING, code="SLIPPAGE", title="slippage high")
    assert Incident.objects.filter(code="SLIPPAGE").exists()
    assert "email notification failed" in caplog.text
