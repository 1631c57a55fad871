from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

PASSWORD = "correct-horse-42"


@pytest.mark.django_db
def test_it_renders_the_login_page_in_the_app_layout() -> None:
    response = Client().get("/accounts/login/")
    assert response.status_code == 200
    assert [t.name for t in response.templates][:3] == [
        "account/login.html",
        "account/base_entrance.html",
        "base.html",
    ]
    html = response.content.decode()
    assert "<title>Sign in · Quantum Trader</title>" in html
    assert '<header class="topbar">' in html
    assert "/static/css/app.css" in html
    assert 'name="login"' in html
    assert 'name="password"' in html
    assert 'name="csrfmiddlewaretoken"' in html
    # Sign-up is closed, so the page does not offer it.
    assert "/accounts/signup/" not in html


def test_it_logs_in_with_username_and_password(carol) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    response = client.post("/accounts/login/", {"login": "carol", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/"
    dashboard = client.get("/")
    assert dashboard.status_code == 200
    assert dashboard.context["user"] == carol


def test_it_logs_in_with_email_too(carol) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    response = client.post("/accounts/login/", {"login": "carol@example.com", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_it_returns_to_the_page_asked_for(carol, market) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    wanted = f"/?market={market.pk}"
    login = client.get("/")["Location"]
    assert login == "/accounts/login/?next=/"
    response = client.post(
        "/accounts/login/", {"login": "carol", "password": PASSWORD, "next": wanted}
    )
    assert response["Location"] == wanted


def test_it_refuses_a_wrong_password_on_the_same_page(carol) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    response = client.post("/accounts/login/", {"login": "carol", "password": "wrong"})
    assert response.status_code == 200
    assert response.context["form"].errors
    assert b'class="card auth"' in response.content
    assert b"errorlist" in response.content
    assert client.get("/").status_code == 302


@pytest.mark.django_db
def test_it_has_no_public_signup() -> None:
    client = Client()
    page = client.get("/accounts/signup/")
    assert page.status_code == 200
    assert "account/signup_closed.html" in [t.name for t in page.templates]
    assert b"Sign-up is closed" in page.content
    client.post(
        "/accounts/signup/",
        {
            "email": "mallory@example.com",
            "username": "mallory",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert not get_user_model().objects.filter(username="mallory").exists()


def test_it_logs_out_with_a_post(carol, client_as) -> None:  # type: ignore[no-untyped-def]
    client = client_as(carol)
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/").status_code == 302
