"""allauth glue: closed sign-up, and a TOTP activation counts as passing MFA."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from django.http import HttpRequest


class ClosedSignupAdapter(DefaultAccountAdapter):
    """Accounts are created by operators; the public sign-up form is closed."""

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return False


def mfa_record_on_activation(
    sender: Any, request: HttpRequest | None, user: Any, authenticator: Any, **kwargs: Any
) -> None:
    """Activating TOTP means typing a valid code: the session has passed MFA, so an operator
    sent to set it up is not asked for a second code on the way back."""
    from allauth.account.internal.flows.login import record_authentication
    from allauth.mfa.models import Authenticator

    if request is not None and authenticator.type == Authenticator.Type.TOTP:
        record_authentication(request, user, "mfa", type=authenticator.type, activated=True)


def mfa_signals_connect() -> None:
    from allauth.mfa.signals import authenticator_added

    authenticator_added.connect(mfa_record_on_activation, dispatch_uid="qt-mfa-activation")
