"""The Python client in docs/API.md, run as written against a live server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone

from marketdata.models import Candle
from quantum.tests.auth_helpers import bearer_client
from trading.models import Order

pytestmark = pytest.mark.django_db(transaction=True)


def docs_example() -> str:
    text = (settings.BASE_DIR / "docs" / "API.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1, "docs/API.md has one Python example"
    return blocks[0]


def test_the_documented_client_places_an_idempotent_order(  # type: ignore[no-untyped-def]
    live_server, bob, market, paper_account, tmp_path
) -> None:
    hour = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    Candle.objects.create(
        market=market,
        timeframe="1h",
        open_time=hour,
        open=Decimal("20000"),
        high=Decimal("20100"),
        low=Decimal("19900"),
        close=Decimal("20000"),
        volume=Decimal("50"),
    )
    token = bearer_client(bob, "trade").defaults["HTTP_AUTHORIZATION"].removeprefix("Bearer ")
    script = tmp_path / "client.py"
    script.write_text(docs_example())
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO")}
    env |= {"QT_API_URL": live_server.url, "QT_API_TOKEN": token}
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    order = Order.objects.get()  # the retry found the first order
    assert (order.strategy, order.status, order.side) == ("manual", "filled", "BUY")
    assert f"order {order.pk} filled" in result.stdout
    assert "paper BTC/USDT 0.01000000" in result.stdout
