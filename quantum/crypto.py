"""Secrets at rest: Fernet encryption of exchange API keys, and masking for display.

The key comes from QT_FERNET_KEY, or from the file named by QT_FERNET_KEY_FILE (Docker and
systemd secrets). On the embedded default, with neither set, a key is generated once into
var/fernet.key (mode 0600) so that a single-machine install works out of the box.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class SecretUnreadable(Exception):
    pass


@functools.cache
def _fernet() -> Fernet:
    key = settings.QT_FERNET_KEY
    key_file = os.environ.get("QT_FERNET_KEY_FILE", "")
    if not key and key_file:
        key = Path(key_file).read_text().strip()
    if not key:
        if not settings.EMBEDDED_REDIS and not settings.DEBUG:
            # A production deployment must bring its own key, or encrypted keys would be
            # tied to one container's disk.
            raise ImproperlyConfigured("set QT_FERNET_KEY or QT_FERNET_KEY_FILE")
        path = settings.VAR_DIR / "fernet.key"
        if not path.exists():
            path.write_bytes(Fernet.generate_key())
            path.chmod(0o600)
        key = path.read_text().strip()
    try:
        return Fernet(key.encode() if isinstance(key, str) else key)
    except ValueError as exc:
        raise ImproperlyConfigured(f"QT_FERNET_KEY is not a valid Fernet key: {exc}") from None


def encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode() if plain else ""


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable(
            "stored secret cannot be decrypted with the configured key"
        ) from None


def mask(plain: str) -> str:
    """Only the last four characters, as everywhere a key is shown."""
    return f"…{plain[-4:]}" if plain else ""
