"""Shared fixtures: a real Redis (embedded or REDIS_URL), personas for each role, data paths."""

from __future__ import annotations

import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import Client


@pytest.fixture(scope="session", autouse=True)
def redis_server() -> Iterator[None]:
    """The embedded redis-server when REDIS_URL is unset (a real server either way)."""
    proc = None
    if settings.EMBEDDED_REDIS:
        from quantum.embedded import redis_start

        proc = redis_start(settings.REDIS_SOCKET, persist=False)
    yield
    if proc is not None:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session", autouse=True)
def _fernet_key() -> None:
    """One encryption key for the session, also handed to the worker processes tests start."""
    from cryptography.fernet import Fernet

    from quantum.crypto import _fernet

    key = os.environ.setdefault("QT_FERNET_KEY", Fernet.generate_key().decode())
    settings.QT_FERNET_KEY = key
    _fernet.cache_clear()


@pytest.fixture(autouse=True)
def _clean_cache() -> Iterator[None]:
    cache.clear()
    yield


@pytest.fixture(autouse=True)
def _fast_passwords(settings) -> None:  # type: ignore[no-untyped-def]
    # PBKDF2 costs ~0.5 s per persona; the hasher is not what these tests are about.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def data_dir() -> Path:
    path = Path(settings.QT_DATA_DIR)
    if not (path / "binance_BTCUSDT_1h.csv").exists():
        pytest.fail(f"real data not found at {path}; set QT_DATA_DIR")
    return path


def _persona(django_user_model, username: str, role: str | None):  # type: ignore[no-untyped-def]
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user(
        username=username, email=f"{username}@example.com", password="correct-horse-42"
    )
    if role:
        group, _ = Group.objects.get_or_create(name=role)
        user.groups.add(group)
    return user


@pytest.fixture
def alice(django_user_model):  # type: ignore[no-untyped-def]
    """Alice is an operator."""
    user = _persona(django_user_model, "alice", "operator")
    user.is_staff = True
    user.save()
    return user


@pytest.fixture
def bob(django_user_model):  # type: ignore[no-untyped-def]
    """Bob is a trader."""
    return _persona(django_user_model, "bob", "trader")


@pytest.fixture
def carol(django_user_model):  # type: ignore[no-untyped-def]
    """Carol is a viewer."""
    return _persona(django_user_model, "carol", "viewer")


@pytest.fixture
def charlie(django_user_model):  # type: ignore[no-untyped-def]
    """Charlie has an account but no role."""
    return _persona(django_user_model, "charlie", None)


@pytest.fixture
def client_as():  # type: ignore[no-untyped-def]
    """A logged-in client; an operator's session has also passed TOTP (mfa=False: not)."""

    def make(user, mfa: bool = True) -> Client:  # type: ignore[no-untyped-def]
        from quantum.roles import has_role, mfa_enabled
        from quantum.tests.auth_helpers import mfa_pass, totp_activate

        client = Client()
        client.force_login(user)
        if mfa and has_role(user, "operator"):
            if not mfa_enabled(user):
                totp_activate(user)
            mfa_pass(client, user)
        return client

    return make


@pytest.fixture
def market(db):  # type: ignore[no-untyped-def]
    from marketdata.services.sync import market_register

    m = market_register(exchange_code="binance", symbol="BTC/USDT")
    return m


@pytest.fixture
def paper_account(db):  # type: ignore[no-untyped-def]
    from quantum.bootstrap import trading_defaults_ensure

    account = trading_defaults_ensure()
    assert account.cash == Decimal(settings.QT_PAPER_CASH)
    return account
