"""Personal API tokens: create (the secret shown once), revoke, and the DRF authentication.

A token is `qt_` + 43 url-safe characters (256 random bits). Only its sha256 is stored, so
looking a token up is one indexed query on the hash and a stolen database authenticates
nobody. `Authorization: Bearer qt_...` on every request.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any, cast

from django.contrib.auth.models import AbstractBaseUser, User
from django.db import transaction
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from quantum.models import ApiToken
from quantum.roles import SCOPE_FOR_ROLE, has_role, scope_allows, user_role

TOKEN_PREFIX = "qt_"  # noqa: S105 (a marker, not a secret)
PREFIX_SHOWN = 11  # "qt_" and 8 characters of the secret
# last_used_at is written at most this often per token: not one write per request.
LAST_USED_RESOLUTION = timedelta(seconds=60)


class TokenDenied(Exception):
    """A token that this user may not create (scope above their role, operate without MFA)."""


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@transaction.atomic
def api_token_create(
    *, user: AbstractBaseUser, name: str, scope: str, mfa_verified: bool
) -> tuple[ApiToken, str]:
    """A new token and its secret (returned once; only the hash is stored)."""
    from risk.services.audit import audit_record

    if scope not in ApiToken.Scope.values:
        raise TokenDenied(f"unknown scope {scope!r}")
    role = user_role(user)
    if role is None or not scope_allows(SCOPE_FOR_ROLE[role], _role_of_scope(scope)):
        raise TokenDenied(f"the {scope} scope needs the {_role_of_scope(scope)} role")
    if scope == ApiToken.Scope.OPERATE and not mfa_verified:
        raise TokenDenied("an operate token needs multi-factor authentication in this session")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=cast(User, user),
        name=name.strip()[:64] or "token",
        scope=scope,
        prefix=secret[:PREFIX_SHOWN],
        key_hash=token_hash(secret),
    )
    audit_record(
        actor=user.get_username(),
        action="api_token.created",
        obj=token,
        payload={"name": token.name, "scope": scope, "prefix": token.prefix},
    )
    return token, secret


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor: str) -> ApiToken:
    """Revoke a token (kept for the record; refused from now on)."""
    from risk.services.audit import audit_record

    token = ApiToken.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit_record(
            actor=actor, action="api_token.revoked", obj=token, payload={"prefix": token.prefix}
        )
    return token


def _role_of_scope(scope: str) -> str:
    return {v: k for k, v in SCOPE_FOR_ROLE.items()}[scope]


def api_token_authenticate(secret: str) -> ApiToken | None:
    """The active token with this secret, its last use recorded; None if unknown or revoked."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=token_hash(secret), revoked_at__isnull=True)
        .first()
    )
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


class BearerTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer qt_...` → (the token's user, the token)."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Authorization: Bearer <token>, one token")
        try:
            secret = parts[1].decode()
        except UnicodeError as exc:
            raise exceptions.AuthenticationFailed("token is not valid text") from exc
        token = api_token_authenticate(secret)
        if token is None:
            raise exceptions.AuthenticationFailed("invalid or revoked token")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("the token's user is inactive")
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "quantum.auth.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "qt_<secret>",
            "description": "A personal API token from /settings/tokens/.",
        }


def user_may_hold(user: AbstractBaseUser, scope: str) -> bool:
    return has_role(user, _role_of_scope(scope))
