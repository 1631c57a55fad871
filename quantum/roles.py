"""Roles are Django groups: viewer < trader < operator. Superusers act as operators.

Operator actions also need multi-factor authentication: in a browser session, a TOTP code
passed in this session (allauth.mfa); through the API, a token with the `operate` scope
(created in an MFA-verified session) whose owner still has an activated TOTP authenticator.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from rest_framework.permissions import BasePermission

ROLES = ("viewer", "trader", "operator")
_RANK = {name: i for i, name in enumerate(ROLES)}
# The token scope that allows acting with each role (a scope includes the lower ones).
SCOPE_FOR_ROLE = {"viewer": "read", "trader": "trade", "operator": "operate"}
_SCOPE_RANK = {SCOPE_FOR_ROLE[role]: rank for role, rank in _RANK.items()}


def user_role(user: Any) -> str | None:
    """The highest role the user holds, or None."""
    if not getattr(user, "is_authenticated", False):
        return None
    if user.is_superuser:
        return "operator"
    names = set(user.groups.values_list("name", flat=True))
    held = [r for r in ROLES if r in names]
    return held[-1] if held else None


def role_rank(role: str | None) -> int:
    return -1 if role is None else _RANK[role]


def has_role(user: Any, role: str) -> bool:
    held = user_role(user)
    return held is not None and _RANK[held] >= _RANK[role]


def scope_allows(scope: str, role: str) -> bool:
    """Does a token of `scope` allow an action that needs `role`?"""
    return _SCOPE_RANK[scope] >= _RANK[role]


def mfa_enabled(user: Any) -> bool:
    """Has the user an activated TOTP authenticator?"""
    from allauth.mfa.models import Authenticator

    return Authenticator.objects.filter(user_id=user.pk, type=Authenticator.Type.TOTP).exists()


def mfa_verified(request: Any) -> bool:
    """Did this session's login include a second factor (allauth's authentication records)?"""
    from allauth.account.authentication import get_authentication_records

    return any(r.get("method") == "mfa" for r in get_authentication_records(request, request.user))


def mfa_challenge(request: HttpRequest) -> HttpResponse | None:
    """None when the operator passed MFA in this session; else where to pass it.

    Without an authenticator: to the TOTP set-up page. With one: to allauth's
    re-authentication page, which asks for a code and then returns here.
    """
    if mfa_verified(request):
        return None
    if mfa_enabled(request.user):
        url = f"{reverse('mfa_reauthenticate')}?{urlencode({'next': request.get_full_path()})}"
    else:
        url = reverse("mfa_activate_totp")
    if getattr(request, "htmx", False):
        # An htmx swap would put the MFA page inside a fragment: send the browser there.
        response = HttpResponse("multi-factor authentication required", status=403)
        response["HX-Redirect"] = url
        return response
    return HttpResponseRedirect(url)


def role_required(role: str) -> Callable:
    """View decorator: login first, then the role (403 if it is missing); MFA for operators."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        @login_required
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not has_role(request.user, role):
                raise PermissionDenied(f"requires the {role} role")
            if role == "operator":
                challenge = mfa_challenge(request)
                if challenge is not None:
                    return challenge
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def api_denial(request: Any, role: str) -> str | None:
    """Why an API caller may not act with `role` (None: it may).

    The role is the user's; a token narrows it to its scope; operator actions need MFA.
    """
    from quantum.models import ApiToken

    if not has_role(request.user, role):
        return f"requires the {role} role"
    token = request.auth if isinstance(request.auth, ApiToken) else None
    if token is not None and not scope_allows(token.scope, role):
        return f"this token's scope ({token.scope}) does not allow it; needs {SCOPE_FOR_ROLE[role]}"
    if role == "operator":
        if token is not None:
            if not mfa_enabled(request.user):
                return "operator actions need an activated TOTP authenticator on the token's owner"
        elif not mfa_verified(request):
            return "operator actions need multi-factor authentication in this session"
    return None


class HasRole(BasePermission):
    """DRF permission: `HasRole.of("trader")` (role, token scope and operator MFA)."""

    role = "viewer"
    message = "permission denied"

    @classmethod
    def of(cls, role: str) -> type[HasRole]:
        return type(f"Has{role.title()}Role", (cls,), {"role": role})

    def has_permission(self, request: Any, view: Any) -> bool:
        denial = api_denial(request, self.role)
        if denial is not None:
            self.message = denial
            return False
        return True


def admin_site_protect(site: Any) -> None:
    """The Django admin is an operator surface: allauth's login (with its MFA stage) and,
    on every admin page, the operator role and MFA passed in this session."""
    from allauth.account.decorators import secure_admin_login

    site.login = secure_admin_login(site.login)
    admin_view = site.admin_view

    def protected(view: Callable, cacheable: bool = False) -> Callable:
        inner = admin_view(view, cacheable)

        @wraps(inner)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            user = request.user
            if user.is_authenticated and user.is_active and user.is_staff:
                if not has_role(user, "operator"):
                    raise PermissionDenied("the admin is for operators")
                challenge = mfa_challenge(request)
                if challenge is not None:
                    return challenge
            return inner(request, *args, **kwargs)

        return wrapper

    site.admin_view = protected
