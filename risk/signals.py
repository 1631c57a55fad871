"""Audit events for what happens outside the services: logins and admin actions.

Receivers, so that no path (a view, the admin, allauth, the API) can skip them. Exchange key
changes are audited by `trading.services.accounts.account_keys_set`.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_save
from django.dispatch import receiver

from risk.services.audit import audit_record

ADMIN_ACTIONS = {ADDITION: "admin.added", CHANGE: "admin.changed", DELETION: "admin.deleted"}


def _client(request: Any) -> dict[str, str]:
    if request is None:
        return {}
    return {"ip": request.META.get("REMOTE_ADDR", "")}


@receiver(user_logged_in)
def _audit_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    audit_record(actor=user.get_username(), action="auth.login", obj=user, payload=_client(request))


@receiver(user_logged_out)
def _audit_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        audit_record(
            actor=user.get_username(), action="auth.logout", obj=user, payload=_client(request)
        )


@receiver(user_login_failed)
def _audit_login_failed(sender: Any, credentials: dict, request: Any = None, **kw: Any) -> None:
    # Django has already masked the password in `credentials`; only the name is kept.
    name = str(credentials.get("username") or credentials.get("login") or "")[:150]
    audit_record(
        actor=f"anonymous:{name}" if name else "anonymous",
        action="auth.login_failed",
        object_type="auth.user",
        object_id=name[:64],
        payload=_client(request),
    )


@receiver(post_save, sender=LogEntry)
def _audit_admin_action(sender: Any, instance: LogEntry, created: bool, **kwargs: Any) -> None:
    if not created or kwargs.get("raw"):  # raw: loaddata (a restore) replays, never acts
        return
    audit_record(
        actor=instance.user.get_username(),
        action=ADMIN_ACTIONS.get(instance.action_flag, "admin.action"),
        object_type=(
            f"{instance.content_type.app_label}.{instance.content_type.model}"
            if instance.content_type
            else "admin"
        ),
        object_id=str(instance.object_id or "")[:64],
        payload={"object": instance.object_repr, "message": instance.get_change_message()},
    )
