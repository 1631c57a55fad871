"""The terminal in a real browser: Debian's Chromium driven by Playwright, against Daphne.

The platform runs as in production: Daphne (HTTP and the Channels websocket) in its own
process on the test database, a Celery worker on the real broker, Redis as the channel
layer. Screenshots go to QT_SCREENSHOT_DIR (default artifacts/screenshots/, which CI keeps).
Without /usr/bin/chromium these tests skip, saying why, except under CI=true, where they
fail: a CI run that silently skipped its browser tests would prove nothing.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings

from quantum.processes import database_url
from quantum.tests.servers import daphne_server, in_ci, wait_until

CHROMIUM = Path("/usr/bin/chromium")
PHONE = {"width": 390, "height": 844}
PASSWORD = "correct-horse-42"
# Real BTC/USDT bars and headlines: the ten days before the news file ends.
REPLAY_START = "2022-07-05T00:00:00Z"

CHROMIUM_MISSING = "Chromium not installed at /usr/bin/chromium (apt-get install chromium)"


pytestmark = [
    pytest.mark.browser,
    # In CI the `chromium` fixture fails instead (see the module docstring).
    pytest.mark.skipif(not CHROMIUM.exists() and not in_ci(), reason=CHROMIUM_MISSING),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture(scope="module")
def daphne(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Daphne on the test database for the whole module (each test brings its own rows)."""
    with django_db_blocker.unblock():
        url = database_url()
    env = dict(os.environ, DATABASE_URL=url, DJANGO_DEBUG="false")
    with daphne_server(env, tmp_path_factory.mktemp("daphne") / "daphne.log") as base:
        yield base


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"CI=true and {CHROMIUM_MISSING}: the browser tests must run in CI")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread while the browser is open;
    # the ORM calls the tests (and pytest-django's flushes) make meanwhile are ordinary
    # blocking calls, which Django would otherwise refuse as "async unsafe".
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def browser(chromium) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    contexts: list[Any] = []

    def new_page(**options: Any) -> Any:
        """A page in a fresh context (its own cookies) with `options` (viewport, is_mobile)."""
        contexts.append(chromium.new_context(**options))
        # Playwright's 30 s default is tight for a loaded 2-core CI runner doing a second
        # full run; a page that never gets there still fails, a minute later.
        contexts[-1].set_default_timeout(60_000)
        return contexts[-1].new_page()

    yield new_page
    for context in contexts:
        context.close()


@pytest.fixture
def shots() -> Path:
    path = Path(
        os.environ.get("QT_SCREENSHOT_DIR") or django_settings.BASE_DIR / "artifacts/screenshots"
    )
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def terminal(bob, settings, data_dir):  # type: ignore[no-untyped-def]
    """Real BTC/USDT bars and headlines, a model's signals with fills, and bob who trades."""
    from marketdata.lib.news import records_from_csv
    from marketdata.models import Candle
    from marketdata.services.news import news_ingest
    from marketdata.services.sync import market_backfill, market_register
    from marketdata.sources import ReplaySource
    from quantum.bootstrap import trading_defaults_ensure
    from trading.models import Fill, Order
    from trading.tests.factories import ModelVersionFactory, SignalFactory

    # Daphne checks passwords with the default hashers, not the tests' fast one.
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]
    bob.set_password(PASSWORD)
    bob.save()
    settings.QT_TIMEFRAME = "1h"
    btc = market_register(exchange_code="binance", symbol="BTC/USDT")
    market_backfill(
        market=btc, timeframe="1h", source=ReplaySource(data_dir, REPLAY_START), days=10
    )
    start = datetime.fromisoformat(REPLAY_START) - timedelta(days=10)
    news_ingest(
        records=[
            r
            for r in records_from_csv(data_dir / "crypto_news_headlines.csv")
            if r.published_at >= start
        ]
    )
    account = trading_defaults_ensure()
    model = ModelVersionFactory(version=3, is_active=True)
    bars = list(Candle.objects.filter(market=btc).order_by("open_time"))
    for i, bar in enumerate(bars[40::37]):
        action = "BUY" if i % 2 == 0 else "SELL"
        signal = SignalFactory(
            market=btc,
            model_version=model,
            candle_time=bar.open_time,
            action=action,
            price=bar.close,
        )
        order = Order.objects.create(
            account=account,
            market=btc,
            signal=signal,
            client_order_id=f"shot-{i}",
            side=action,
            quantity=Decimal("0.01"),
            filled_quantity=Decimal("0.01"),
            average_price=bar.close,
            status=Order.Status.FILLED,
        )
        Fill.objects.create(
            order=order,
            trade_id=f"shot-{i}",
            price=bar.close,
            quantity=Decimal("0.01"),
            fee=bar.close * Decimal("0.00001"),
            fee_currency="USDT",
            filled_at=bar.open_time + timedelta(hours=1),
        )
    return {"market": btc, "account": account, "last": bars[-1]}


def _login(page: Any, base: str, username: str, next_url: str = "/") -> None:
    page.goto(f"{base}/accounts/login/?next={next_url}")
    page.fill("input[name=login]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{base}{next_url}")


def test_a_trader_logs_in_sees_the_chart_and_a_fill_pushed_by_the_worker_without_reload(
    daphne, browser, terminal, bob, shots
) -> None:
    from celery.contrib.testing.worker import start_worker

    from quantum.celery import app
    from trading.models import Fill
    from trading.tasks import execute_decision

    page = browser(viewport={"width": 1440, "height": 1000})
    _login(page, daphne, "bob")
    # The chart drew the real bars: canvases exist and the script counted the candles.
    page.wait_for_selector("#chart[data-loaded]")
    assert int(page.get_attribute("#chart", "data-loaded")) == 10 * 24
    assert page.locator("#chart canvas").count() > 0
    assert page.locator("#fill-rows tr.fill").count() == 6
    # The page's socket is open before the worker fills (htmx marks it on connect).
    page.evaluate("window.__sameDocument = true")
    page.wait_for_function("() => window.__qtSocketOpen === true")

    last = terminal["last"]
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        execute_decision.delay(
            terminal["account"].pk,
            terminal["market"].pk,
            "BUY",
            "0.002",
            "browser-1",
            str(last.close),
        )
        wait_until(lambda: Fill.objects.filter(quantity=Decimal("0.002")).exists(), "the fill")
    fill = Fill.objects.get(quantity=Decimal("0.002"))
    page.wait_for_selector(f"#fill-{fill.pk}", timeout=15000)
    assert page.locator("#fill-rows tr.fill").count() == 7
    assert page.locator(f"#order-{fill.order_id}").count() == 1
    toast = page.locator("#toasts .toast.success", has_text="Order executed")
    assert "BUY 0.00200000 BTC/USDT" in toast.inner_text()
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
    page.screenshot(path=str(shots / "dashboard.png"))


def test_a_viewer_filters_the_orders_log_and_downloads_the_same_rows_as_csv(
    daphne, browser, terminal, bob, shots
) -> None:
    from trading.models import Order

    page = browser(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    _login(page, daphne, "bob", "/orders/")
    assert page.locator("#log-table tr.order").count() == 6
    page.select_option("#filters select[name=side]", "SELL")
    page.click("#filters button[type=submit]")
    page.wait_for_function("() => document.querySelectorAll('#log-table tr.order').length === 3")
    assert "side=SELL" in page.url  # hx-push-url: the filtered view can be bookmarked
    page.screenshot(path=str(shots / "orders.png"))
    with page.expect_download() as download:
        page.click("#log-table a.csv")
    with open(download.value.path(), encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    sells = Order.objects.filter(side="SELL").order_by("-created_at", "-id")
    assert [r["client_order_id"] for r in rows] == [o.client_order_id for o in sells]
    assert {r["side"] for r in rows} == {"SELL"}


def test_the_pages_fit_a_phone_screen_without_sideways_scrolling(
    daphne, browser, terminal, bob, shots
) -> None:
    page = browser(viewport=PHONE, is_mobile=True, has_touch=True)
    _login(page, daphne, "bob")
    for url in ("/", "/signals/", "/orders/", "/trades/", "/positions/", "/news/", "/system/"):
        page.goto(f"{daphne}{url}")
        page.wait_for_load_state("networkidle")
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{url} scrolls sideways by {overflow}px on a phone"
        if url == "/":
            page.wait_for_selector("#chart[data-loaded]")
            page.screenshot(path=str(shots / "dashboard-phone.png"))
    # The navigation folds into a menu that opens on a tap.
    assert not page.locator("#nav").is_visible()
    page.click("label.nav-button")
    assert page.locator("#nav a[href='/orders/']").is_visible()
    page.goto(f"{daphne}/news/?market={terminal['market'].pk}")
    page.screenshot(path=str(shots / "news-phone.png"))
