"""Operators pass TOTP before any operator action; login is rate limited; password reset
mails a working link. Personas: alice operator, bob trader, carol viewer."""

from __future__ import annotations

import re

import pytest
from allauth.mfa.totp.internal.auth import SECRET_SESSION_KEY
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client

from quantum.tests.auth_helpers import mfa_pass, totp_activate, totp_code
from risk.models import TradingState

PASSWORD = "correct-horse-42"
OPERATOR_PAGES = ["/risk/", "/settings/accounts/", "/admin/"]


def logged_in(user: User) -> Client:
    """A session from the real login form (password only)."""
    client = Client()
    response = client.post("/accounts/login/", {"login": user.username, "password": PASSWORD})
    assert response.status_code == 302
    return client


@pytest.mark.parametrize("url", OPERATOR_PAGES)
def test_an_operator_without_an_authenticator_is_sent_to_set_one_up(url, alice) -> None:  # type: ignore[no-untyped-def]
    response = logged_in(alice).get(url)
    assert response.status_code == 302
    assert response["Location"] == "/accounts/2fa/totp/activate/"


@pytest.mark.parametrize("url", OPERATOR_PAGES)
def test_an_operator_who_has_not_passed_totp_is_asked_for_a_code(url, alice) -> None:  # type: ignore[no-untyped-def]
    totp_activate(alice)
    client = Client()
    client.force_login(alice)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/2fa/reauthenticate/?next={url.replace('/', '%2F')}"


def test_a_code_at_the_prompt_lets_the_operator_through(alice) -> None:  # type: ignore[no-untyped-def]
    secret = totp_activate(alice)
    client = Client()
    client.force_login(alice)
    prompt = client.get("/risk/")["Location"]
    assert client.post(prompt, {"code": "000000"}).status_code == 200  # wrong: asked again
    assert client.get("/risk/").status_code == 302
    response = client.post(prompt, {"code": totp_code(secret)})
    assert response.status_code == 302 and response["Location"] == "/risk/"
    assert client.get("/risk/").status_code == 200


def test_signing_in_with_password_and_code_opens_the_operator_pages(alice) -> None:  # type: ignore[no-untyped-def]
    secret = totp_activate(alice)
    client = Client()
    response = client.post("/accounts/login/", {"login": "alice", "password": PASSWORD})
    assert response["Location"] == "/accounts/2fa/authenticate/"
    assert client.get("/").status_code == 302  # not signed in until the code is given
    client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})
    assert client.get("/risk/").status_code == 200
    assert client.get("/admin/").status_code == 200


def test_a_code_from_the_period_just_passed_is_accepted_once_and_an_older_one_never(alice) -> None:  # type: ignore[no-untyped-def]
    secret = totp_activate(alice)

    def sign_in(code: str) -> bool:
        client = Client()
        client.post("/accounts/login/", {"login": "alice", "password": PASSWORD})
        client.post("/accounts/2fa/authenticate/", {"code": code})
        return client.get("/risk/").status_code == 200

    assert not sign_in(totp_code(secret, offset=-2)), "two periods old: refused"
    assert sign_in(totp_code(secret, offset=-1)), "typed as the period turned: accepted"
    assert not sign_in(totp_code(secret, offset=-1)), "the same code twice: refused"


@pytest.mark.django_db(transaction=True)  # allauth announces a new authenticator on commit
def test_setting_up_totp_counts_as_passing_it(alice) -> None:  # type: ignore[no-untyped-def]
    client = logged_in(alice)
    # allauth asks for the password again before adding an authenticator.
    confirm = client.get("/risk/", follow=True).redirect_chain
    assert [url for url, _ in confirm] == [
        ("/accounts/2fa/totp/activate/"),
        ("/accounts/reauthenticate/?next=%2Faccounts%2F2fa%2Ftotp%2Factivate%2F"),
    ]
    client.post(confirm[-1][0], {"password": PASSWORD})
    assert client.get("/accounts/2fa/totp/activate/").status_code == 200
    secret = client.session[SECRET_SESSION_KEY]
    response = client.post("/accounts/2fa/totp/activate/", {"code": totp_code(secret)})
    assert response.status_code == 302
    assert client.get("/risk/").status_code == 200


def test_an_htmx_request_is_told_where_to_pass_mfa(alice) -> None:  # type: ignore[no-untyped-def]
    response = logged_in(alice).get("/risk/controls/", HTTP_HX_REQUEST="true")
    assert response.status_code == 403
    assert response["HX-Redirect"] == "/accounts/2fa/totp/activate/"


def test_viewers_and_traders_need_no_second_factor(carol, bob) -> None:  # type: ignore[no-untyped-def]
    assert logged_in(carol).get("/").status_code == 200
    assert logged_in(bob).get("/").status_code == 200
    assert logged_in(bob).get("/risk/").status_code == 403


def test_an_operator_api_call_in_a_session_without_mfa_is_refused(alice, paper_account) -> None:  # type: ignore[no-untyped-def]
    totp_activate(alice)
    client = Client()
    client.force_login(alice)  # signed in, no code given in this session
    body = {"on": True, "reason": "outage"}
    url = "/api/v1/risk/killswitch/"
    refused = client.post(url, body, content_type="application/json")
    assert refused.status_code == 403
    assert "multi-factor" in refused.json()["detail"]
    assert TradingState.objects.get(account=None).kill_switch is False
    mfa_pass(client, alice)
    assert client.post(url, body, content_type="application/json").status_code == 200
    assert TradingState.objects.get(account=None).kill_switch is True


def test_the_admin_login_goes_through_allauth(alice) -> None:  # type: ignore[no-untyped-def]
    response = Client().get("/admin/login/?next=/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_staff_without_the_operator_role_is_kept_out_of_the_admin(bob, client_as) -> None:  # type: ignore[no-untyped-def]
    bob.is_staff = True
    bob.save()
    assert client_as(bob).get("/admin/").status_code == 403


def test_login_is_rate_limited_after_repeated_failures(carol) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    for _ in range(5):
        response = client.post("/accounts/login/", {"login": "carol", "password": "wrong"})
        assert response.status_code == 200
    # The right password no longer gets in: the key is locked for a while.
    blocked = client.post("/accounts/login/", {"login": "carol", "password": PASSWORD})
    assert blocked.status_code in (200, 429)
    assert b"Too many" in blocked.content or blocked.status_code == 429
    assert client.get("/").status_code == 302


def test_password_reset_mails_a_link_that_sets_a_new_password(carol) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    response = client.post("/accounts/password/reset/", {"email": "carol@example.com"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["carol@example.com"]
    link = re.search(r"http://testserver(/accounts/password/reset/key/\S+/)", mail.outbox[0].body)
    assert link, mail.outbox[0].body
    form_url = client.get(link.group(1))["Location"]  # the key moves into the session
    assert client.get(form_url).status_code == 200
    done = client.post(
        form_url, {"password1": "new-battery-staple-9", "password2": "new-battery-staple-9"}
    )
    assert done.status_code == 302
    assert Client().login(username="carol", password="new-battery-staple-9")
    assert not Client().login(username="carol", password=PASSWORD)
