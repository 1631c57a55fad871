"""Exchange accounts: API keys (encrypted, masked) and the paper → testnet → live switch."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from models_registry.models import ModelVersion
from quantum.crypto import encrypt
from quantum.roles import has_role
from risk.models import RiskLimits
from risk.services.audit import audit_record
from trading.models import ExchangeAccount


class ModeChangeDenied(Exception):
    pass


@transaction.atomic
def account_keys_set(
    *,
    account: ExchangeAccount,
    api_key: str,
    api_secret: str,
    api_password: str = "",
    actor: str,
) -> ExchangeAccount:
    """Store the keys encrypted; only the last four characters of the key are kept in clear."""
    account.api_key_enc = encrypt(api_key)
    account.api_secret_enc = encrypt(api_secret)
    account.api_password_enc = encrypt(api_password)
    account.api_key_hint = api_key[-4:]
    account.needs_reconcile = True
    account.save()
    audit_record(
        actor=actor,
        action="account.keys_changed",
        obj=account,
        payload={"api_key": account.api_key_masked},
    )
    return account


@transaction.atomic
def account_mode_set(
    *,
    account: ExchangeAccount,
    mode: str,
    user: AbstractBaseUser,
    reason: str,
    mfa_verified: bool,
) -> ExchangeAccount:
    """Switch an account between paper, testnet and live, with the gates live needs."""
    if mode not in ExchangeAccount.Mode.values:
        raise ModeChangeDenied(f"unknown mode {mode!r}")
    if not reason.strip():
        raise ModeChangeDenied("a reason is required")
    if not has_role(user, "operator"):
        raise ModeChangeDenied("only operators change an account's mode")
    if mode != ExchangeAccount.Mode.PAPER and not account.api_key_enc:
        raise ModeChangeDenied(f"{mode} needs API keys on the account")
    if mode == ExchangeAccount.Mode.LIVE:
        if not mfa_verified:
            raise ModeChangeDenied("enabling live trading needs a multi-factor verified operator")
        if not RiskLimits.objects.filter(account=account).exists():
            raise ModeChangeDenied("set this account's own risk limits before going live")
        if not ModelVersion.objects.filter(
            is_active=True, status=ModelVersion.Status.ACTIVE
        ).exists():
            raise ModeChangeDenied("no active model that passed its gates")
    previous = account.mode
    account.mode = mode
    account.needs_reconcile = mode != ExchangeAccount.Mode.PAPER
    if mode == ExchangeAccount.Mode.LIVE:
        account.live_enabled_by = user  # type: ignore[assignment]
        account.live_enabled_at = timezone.now()
    account.save()
    audit_record(
        actor=user.get_username(),
        action="account.mode_changed",
        obj=account,
        payload={"from": previous, "to": mode, "reason": reason},
    )
    return account


@transaction.atomic
def account_strategy_set(*, account: ExchangeAccount, enabled: bool, actor: str) -> ExchangeAccount:
    """Turn the model strategy on or off for an account (audited; no change, no record)."""
    account = ExchangeAccount.objects.select_for_update().get(pk=account.pk)
    if account.strategy_enabled != enabled:
        account.strategy_enabled = enabled
        account.save(update_fields=["strategy_enabled"])
        audit_record(
            actor=actor,
            action="account.strategy_enabled" if enabled else "account.strategy_disabled",
            obj=account,
            payload={"enabled": enabled},
        )
    return account
