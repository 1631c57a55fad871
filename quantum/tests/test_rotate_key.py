"""Rotating QT_FERNET_KEY: stored exchange keys move to the new key, or nothing changes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from quantum.crypto import SecretUnreadable, _fernet, decrypt
from risk.models import AuditEvent
from trading.models import ExchangeAccount
from trading.services.accounts import account_keys_set

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


@pytest.fixture
def account_under_old_key(market, settings, monkeypatch) -> Iterator[ExchangeAccount]:  # type: ignore[no-untyped-def]
    settings.QT_FERNET_KEY = OLD
    _fernet.cache_clear()
    account = ExchangeAccount.objects.create(
        name="rotating", exchange=market.exchange, mode=ExchangeAccount.Mode.TESTNET
    )
    account_keys_set(account=account, api_key="key-1234", api_secret="secret-5678", actor="alice")
    settings.QT_FERNET_KEY = NEW
    monkeypatch.setenv("QT_FERNET_KEY_OLD", OLD)
    _fernet.cache_clear()
    yield account
    _fernet.cache_clear()


def test_it_re_encrypts_every_stored_key_under_the_new_key(account_under_old_key) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SecretUnreadable):
        decrypt(account_under_old_key.api_secret_enc)  # the new key alone cannot read it

    call_command("rotate_fernet_key")

    account = ExchangeAccount.objects.get(pk=account_under_old_key.pk)
    assert decrypt(account.api_key_enc) == "key-1234"
    assert decrypt(account.api_secret_enc) == "secret-5678"
    assert AuditEvent.objects.filter(action="secrets.fernet_rotated").count() == 1


def test_a_dry_run_changes_nothing(account_under_old_key) -> None:  # type: ignore[no-untyped-def]
    before = account_under_old_key.api_secret_enc
    call_command("rotate_fernet_key", dry_run=True)
    assert ExchangeAccount.objects.get(pk=account_under_old_key.pk).api_secret_enc == before


def test_a_secret_neither_key_opens_stops_the_rotation_unchanged(
    account_under_old_key, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("QT_FERNET_KEY_OLD", Fernet.generate_key().decode())
    before = account_under_old_key.api_secret_enc
    with pytest.raises(CommandError, match="'rotating': api_key_enc opens with neither key"):
        call_command("rotate_fernet_key")
    assert ExchangeAccount.objects.get(pk=account_under_old_key.pk).api_secret_enc == before


def test_it_needs_the_old_key(account_under_old_key, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("QT_FERNET_KEY_OLD")
    with pytest.raises(CommandError, match="set QT_FERNET_KEY_OLD"):
        call_command("rotate_fernet_key")
