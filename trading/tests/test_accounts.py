from __future__ import annotations

import pytest

from risk.models import AuditEvent, RiskLimits
from trading.models import ExchangeAccount
from trading.services.accounts import ModeChangeDenied, account_keys_set, account_mode_set
from trading.tests.factories import ModelVersionFactory


@pytest.fixture
def account(paper_account: ExchangeAccount) -> ExchangeAccount:
    return paper_account


def test_every_account_starts_on_paper(account) -> None:
    assert account.mode == ExchangeAccount.Mode.PAPER
    assert ExchangeAccount._meta.get_field("mode").default == ExchangeAccount.Mode.PAPER


def test_only_an_operator_changes_the_mode(account, bob) -> None:
    account_keys_set(account=account, api_key="k-1234", api_secret="s", actor="alice")
    with pytest.raises(ModeChangeDenied, match="only operators"):
        account_mode_set(account=account, mode="testnet", user=bob, reason="try", mfa_verified=True)


def test_testnet_needs_keys_and_a_reason(account, alice) -> None:
    with pytest.raises(ModeChangeDenied, match="reason"):
        account_mode_set(
            account=account, mode="testnet", user=alice, reason=" ", mfa_verified=False
        )
    with pytest.raises(ModeChangeDenied, match="API keys"):
        account_mode_set(
            account=account, mode="testnet", user=alice, reason="go", mfa_verified=False
        )
    account_keys_set(account=account, api_key="k-1234", api_secret="s", actor="alice")
    account_mode_set(account=account, mode="testnet", user=alice, reason="go", mfa_verified=False)
    account.refresh_from_db()
    assert account.mode == "testnet" and account.needs_reconcile
    event = AuditEvent.objects.filter(action="account.mode_changed").get()
    assert event.payload == {"from": "paper", "to": "testnet", "reason": "go"}
    assert event.actor == "alice"


def test_live_needs_mfa_its_own_limits_and_a_gated_model(account, alice) -> None:
    account_keys_set(account=account, api_key="k-1234", api_secret="s", actor="alice")

    def go_live(mfa: bool = True) -> None:
        account_mode_set(account=account, mode="live", user=alice, reason="ready", mfa_verified=mfa)

    with pytest.raises(ModeChangeDenied, match="multi-factor"):
        go_live(mfa=False)
    with pytest.raises(ModeChangeDenied, match="risk limits"):
        go_live()
    RiskLimits.objects.create(account=account)
    with pytest.raises(ModeChangeDenied, match="active model"):
        go_live()
    ModelVersionFactory(is_active=True, status="active")
    go_live()
    account.refresh_from_db()
    assert account.mode == "live"
    assert account.live_enabled_by == alice and account.live_enabled_at is not None


def test_keys_are_stored_encrypted_and_shown_by_their_last_four(account) -> None:
    account_keys_set(
        account=account, api_key="AKIA-very-secret-9f3c", api_secret="zzz", actor="alice"
    )
    account.refresh_from_db()
    assert "very-secret" not in account.api_key_enc
    assert account.api_key_masked == "…9f3c"
    assert AuditEvent.objects.get(action="account.keys_changed").payload == {"api_key": "…9f3c"}
