from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from quantum.crypto import SecretUnreadable, _fernet, decrypt, encrypt, mask


@pytest.fixture
def fresh_key(settings):  # type: ignore[no-untyped-def]
    _fernet.cache_clear()
    yield settings
    _fernet.cache_clear()


def test_it_round_trips_a_secret_without_storing_it_in_clear(fresh_key) -> None:
    token = encrypt("my-exchange-secret")
    assert "my-exchange-secret" not in token
    assert decrypt(token) == "my-exchange-secret"
    assert encrypt("") == "" and decrypt("") == ""


def test_a_secret_from_another_key_is_refused_loudly(fresh_key) -> None:
    token = Fernet(Fernet.generate_key()).encrypt(b"other").decode()
    with pytest.raises(SecretUnreadable):
        decrypt(token)


def test_the_key_can_come_from_a_secret_file(fresh_key, tmp_path, monkeypatch) -> None:
    key = Fernet.generate_key()
    (tmp_path / "fernet").write_bytes(key + b"\n")
    fresh_key.QT_FERNET_KEY = ""
    monkeypatch.setenv("QT_FERNET_KEY_FILE", str(tmp_path / "fernet"))
    assert Fernet(key).decrypt(encrypt("x").encode()) == b"x"


def test_production_without_a_key_refuses_to_start_encrypting(fresh_key, monkeypatch) -> None:
    fresh_key.QT_FERNET_KEY = ""
    fresh_key.EMBEDDED_REDIS = False
    fresh_key.DEBUG = False
    monkeypatch.delenv("QT_FERNET_KEY_FILE", raising=False)
    with pytest.raises(ImproperlyConfigured, match="QT_FERNET_KEY"):
        encrypt("x")


def test_an_invalid_key_is_named_as_the_problem(fresh_key) -> None:
    fresh_key.QT_FERNET_KEY = "not-a-key"
    with pytest.raises(ImproperlyConfigured, match="not a valid Fernet key"):
        encrypt("x")


def test_a_key_is_shown_by_its_last_four_characters_only() -> None:
    assert mask("abcdefgh1234") == "…1234"
    assert mask("") == ""
