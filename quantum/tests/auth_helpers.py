"""Test helpers for MFA and API tokens: real allauth authenticators and real tokens."""

from __future__ import annotations

import time

from allauth.account.authentication import AUTHENTICATION_METHODS_SESSION_KEY
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import (
    TOTP,
    format_hotp_value,
    generate_totp_secret,
    hotp_value,
)
from django.test import Client

from quantum.auth import api_token_create, token_hash
from quantum.models import ApiToken
from quantum.roles import user_role


def totp_activate(user) -> str:  # type: ignore[no-untyped-def]
    """Give the user an activated TOTP authenticator; returns its secret."""
    Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).delete()
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    return secret


def totp_code(secret: str, *, offset: int = 0) -> str:
    """The code an authenticator app shows now (offset: periods later)."""
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30 + offset))


def mfa_pass(client: Client, user) -> None:  # type: ignore[no-untyped-def]
    """Record in the client's session that it passed a TOTP code (as allauth does)."""
    session = client.session
    session[AUTHENTICATION_METHODS_SESSION_KEY] = [
        {"method": "mfa", "at": time.time(), "type": "totp"}
    ]
    session["account_authentication_methods_user"] = str(user.pk)
    session.save()


def bearer_client(user, scope: str = "read") -> Client:  # type: ignore[no-untyped-def]
    """A client sending a fresh personal token of `scope` (operators get TOTP first)."""
    if scope == "operate" and not Authenticator.objects.filter(user=user).exists():
        totp_activate(user)
    if user_role(user) is None:
        # A token left from a role the user has since lost (the service refuses new ones).
        secret = f"qt_left-over-{user.pk}-{scope}"
        ApiToken.objects.create(
            user=user,
            name="left over",
            scope=scope,
            prefix=secret[:11],
            key_hash=token_hash(secret),
        )
    else:
        _, secret = api_token_create(
            user=user, name=f"test {scope}", scope=scope, mfa_verified=True
        )
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
