from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from marketdata.models import Candle, Market
from models_registry.models import ModelVersion
from quantum.bootstrap import platform_bootstrap
from risk.models import RiskLimits, TradingState
from trading.models import ExchangeAccount


@pytest.fixture
def replay(settings, tmp_path, data_dir):  # type: ignore[no-untyped-def]
    settings.QT_MARKET_SOURCE = "replay"
    settings.QT_DATA_DIR = data_dir
    settings.QT_HISTORY_DAYS = 60
    settings.QT_ARTIFACT_DIR = tmp_path
    return settings


def test_first_start_creates_everything_and_a_restart_does_not_retrain(
    db, replay, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("QT_ADMIN_USER", "boss")
    monkeypatch.setenv("QT_ADMIN_PASSWORD", "a-long-admin-password")
    said: list[str] = []
    platform_bootstrap(say=said.append)

    assert set(Group.objects.values_list("name", flat=True)) == {"viewer", "trader", "operator"}
    boss = get_user_model().objects.get(username="boss")
    assert boss.is_superuser and boss.check_password("a-long-admin-password")
    assert "a-long-admin-password" not in "\n".join(said)
    assert sorted(Market.objects.values_list("symbol", flat=True)) == ["BTC/USDT", "ETH/USDT"]
    assert Candle.objects.filter(market__symbol="BTC/USDT").count() == 60 * 24
    account = ExchangeAccount.objects.get()
    assert account.mode == ExchangeAccount.Mode.PAPER
    assert TradingState.objects.get(account=None).state == TradingState.State.ACTIVE
    assert RiskLimits.objects.filter(account=None).exists()
    active = ModelVersion.objects.get(is_active=True)

    again: list[str] = []
    platform_bootstrap(say=again.append)
    assert ModelVersion.objects.get() == active, "a restart must not retrain"
    assert any("no retraining needed" in line for line in again)
    assert Candle.objects.filter(market__symbol="BTC/USDT").count() == 60 * 24
    assert get_user_model().objects.count() == 1


def test_a_generated_admin_password_is_printed_once(db, replay, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("QT_ADMIN_PASSWORD", raising=False)
    monkeypatch.setenv("QT_ADMIN_USER", "admin")
    said: list[str] = []
    platform_bootstrap(say=said.append, data=False)
    line = next(s for s in said if "password:" in s)
    password = line.rsplit(": ", 1)[1]
    assert get_user_model().objects.get(username="admin").check_password(password)
    later: list[str] = []
    platform_bootstrap(say=later.append, data=False)
    assert not any("password" in s for s in later)


def test_an_unreachable_exchange_is_reported_and_start_up_goes_on(db, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings.QT_MARKET_SOURCE = "ccxt"
    settings.QT_CCXT_URL_OVERRIDE = "http://127.0.0.1:9"  # discard port: nothing listens
    settings.QT_ARTIFACT_DIR = tmp_path
    said: list[str] = []
    platform_bootstrap(say=said.append)
    assert any("failed" in line and "BTC/USDT" in line for line in said), said
    assert any("Not training yet" in line for line in said), said
    assert not ModelVersion.objects.exists()
    assert ExchangeAccount.objects.filter(mode="paper").exists()
