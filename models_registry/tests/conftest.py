from __future__ import annotations

import pytest

from marketdata.services.sync import market_register
from marketdata.tests.factories import load_real

# 1,000 real BTC/USDT hours (2023-01 to 2023-02) for tests that need a trained model.
START, COUNT = 19900, 1000


@pytest.fixture
def btc(db, settings, tmp_path):  # type: ignore[no-untyped-def]
    settings.QT_ARTIFACT_DIR = tmp_path
    settings.QT_DRIFT_WINDOW = 300
    market = market_register(exchange_code="binance", symbol="BTC/USDT")
    load_real(market, start=START, count=COUNT)
    return market
