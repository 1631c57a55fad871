"""Roles in a real browser: an operator passes TOTP and uses the kill switch; a viewer sees no
operator controls and is refused operator URLs; the main pages are photographed.

Same set-up as trading/tests/test_browser.py (Daphne in its own process, Debian's Chromium
driven by Playwright); its fixtures are shared. Screenshots go to artifacts/screenshots/
(QT_SCREENSHOT_DIR), which CI keeps.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from quantum.tests.auth_helpers import totp_activate, totp_code
from quantum.tests.servers import in_ci
from trading.tests import test_browser as shared
from trading.tests.test_browser import CHROMIUM, CHROMIUM_MISSING, PASSWORD

# The browser module's fixtures: Daphne, Chromium, fresh contexts, the screenshot folder and
# real BTC/USDT data with a model's signals and fills.
daphne, chromium, browser, shots, terminal = (
    shared.daphne,
    shared.chromium,
    shared.browser,
    shared.shots,
    shared.terminal,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists() and not in_ci(), reason=CHROMIUM_MISSING),
    pytest.mark.django_db(transaction=True),
]

OPERATOR_URLS = ("/risk/", "/risk/incidents/", "/settings/accounts/", "/flower/", "/admin/")
OPERATOR_LINKS = ("/risk/", "/risk/incidents/", "/risk/audit/", "/settings/accounts/", "/flower/")
# Every page in the navigation that a new user is shown in docs/USER_GUIDE.md.
MAIN_PAGES = {
    "dashboard": "/",
    "signals": "/signals/",
    "orders": "/orders/",
    "trades": "/trades/",
    "positions": "/positions/",
    "news": "/news/",
    "backtests": "/backtests/",
    "models": "/models/",
    "settings": "/settings/",
    "tokens": "/settings/tokens/",
    "system": "/system/",
    "risk": "/risk/",
    "incidents": "/risk/incidents/",
}


def _real_passwords(settings, *users) -> None:  # type: ignore[no-untyped-def]
    # Daphne checks passwords with the default hashers, not the tests' fast one.
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]
    for user in users:
        user.set_password(PASSWORD)
        user.save()


def _login(page: Any, base: str, username: str, next_url: str, secret: str | None = None) -> None:
    """Sign in through the real forms; with `secret`, pass the TOTP stage like a phone app."""
    page.goto(f"{base}/accounts/login/?next={next_url}")
    page.fill("input[name=login]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    if secret is not None:
        page.wait_for_selector("input[name=code]")
        assert "/2fa/" in page.url, "an operator with TOTP is asked for a code"
        page.fill("input[name=code]", totp_code(secret))
        page.click("button:has-text('Sign In')")
    page.wait_for_url(f"{base}{next_url}")


def _count_socket_messages(page: Any) -> None:
    page.evaluate(
        """() => { window.__wsMessages = 0;
        document.body.addEventListener('htmx:wsAfterMessage', () => window.__wsMessages++); }"""
    )


def test_an_operator_passes_totp_engages_the_kill_switch_and_releases_it(  # type: ignore[no-untyped-def]
    daphne, browser, alice, settings, shots
) -> None:
    from quantum.models import UserPreference
    from risk.models import TradingState

    _real_passwords(settings, alice)
    secret = totp_activate(alice)
    page = browser(viewport={"width": 1440, "height": 1000})
    _login(page, daphne, "alice", "/risk/", secret)
    page.wait_for_function("() => window.__qtSocketOpen === true")
    assert page.locator("#trading-state").inner_text().startswith("ACTIVE")
    assert page.locator("[ws-connect]").count() == 1, "one socket per page"

    _count_socket_messages(page)
    page.select_option("#killswitch_switch", "on")
    page.fill("#killswitch_reason", "exchange outage drill")
    page.click("#risk-controls button.danger")
    page.wait_for_selector("#risk-states .state.halted")
    # (The answer's note may already be replaced by the controls' pushed refresh.)
    assert "exchange outage drill" in page.locator("#risk-states").inner_text()
    # The header badge is a push (every open page gets it), as is the operator's risk toast.
    page.wait_for_selector("#trading-state.halted")
    assert "kill switch" in page.locator("#trading-state").inner_text()
    toast = page.locator("#toasts .toast[data-kind=risk]", has_text="Kill switch engaged")
    toast.wait_for()
    page.wait_for_function("() => window.__wsMessages >= 3")
    # One socket: each push is handled once (two sockets showed every toast twice).
    assert page.locator("#toasts .toast[data-kind=risk]").count() == 1
    state = TradingState.objects.get(account__isnull=True)
    assert (state.state, state.kill_switch, state.reason) == (
        "HALTED",
        True,
        "exchange outage drill",
    )
    page.screenshot(path=str(shots / "risk-halted.png"))

    # Risk toasts turned off in the settings: the release still shows, its toast does not.
    page.goto(f"{daphne}/settings/")
    page.uncheck("input[name=notify_risk]")
    page.click("#preferences button[type=submit]")
    page.wait_for_selector("#toasts .toast.success:has-text('Preferences saved.')")
    assert UserPreference.objects.get(user=alice).notify_risk is False
    page.goto(f"{daphne}/risk/")
    page.wait_for_function("() => window.__qtSocketOpen === true")
    assert page.get_attribute("body", "data-notify-muted") == "risk"
    _count_socket_messages(page)
    page.select_option("#killswitch_switch", "off")
    page.fill("#killswitch_reason", "drill over")
    page.click("#risk-controls button.danger")
    page.wait_for_selector("#trading-state.active")
    # incident (with its toast), state badge, controls cue: all three have been handled.
    page.wait_for_function("() => window.__wsMessages >= 3")
    page.wait_for_selector("#risk-states .state.active")
    assert page.locator("#risk-states .state.halted").count() == 0
    assert page.locator("#toasts .toast[data-kind=risk]").count() == 0
    state.refresh_from_db()
    assert (state.state, state.kill_switch) == ("ACTIVE", False)


def test_a_viewer_sees_no_operator_controls_and_is_refused_operator_urls(  # type: ignore[no-untyped-def]
    daphne, browser, carol, settings, shots
) -> None:
    _real_passwords(settings, carol)
    page = browser(viewport={"width": 1280, "height": 900})
    _login(page, daphne, "carol", "/")
    nav = page.locator("#nav")
    assert nav.locator("a[href='/signals/']").count() == 1
    for href in (*OPERATOR_LINKS, "/admin/"):
        assert nav.locator(f"a[href='{href}']").count() == 0, href
    page.goto(f"{daphne}/models/")
    assert page.locator("text=Promote").count() == 0
    assert page.locator("form[action='/models/retrain/']").count() == 0
    page.goto(f"{daphne}/settings/")
    assert page.locator("a[href='/settings/accounts/']").count() == 0
    assert page.locator("input[name=notify_email]").count() == 0
    for url in OPERATOR_URLS:
        response = page.goto(f"{daphne}{url}")
        assert response.status == 403, f"{url} answered {response.status}"
    assert page.locator("#killswitch_switch").count() == 0


def test_the_main_pages_are_photographed_for_ci_and_the_guide(  # type: ignore[no-untyped-def]
    daphne, browser, terminal, alice, settings, shots
) -> None:
    _real_passwords(settings, alice)
    secret = totp_activate(alice)
    page = browser(viewport={"width": 1440, "height": 1000})
    _login(page, daphne, "alice", "/", secret)
    for name, url in MAIN_PAGES.items():
        response = page.goto(f"{daphne}{url}")
        assert response.status == 200, f"{url} answered {response.status}"
        page.wait_for_load_state("networkidle")
        if name == "dashboard":
            page.wait_for_selector("#chart[data-loaded]")
        # Each page is reachable from the navigation (operators see every link).
        if url != "/":
            assert page.locator(f"#nav a[href='{url}']").count() == 1, url
        page.screenshot(path=str(shots / f"page-{name}.png"), full_page=False)
    assert all((shots / f"page-{name}.png").stat().st_size > 5000 for name in MAIN_PAGES)


def test_an_operator_sees_a_reconciliation_mismatch_on_the_accounts_card(  # type: ignore[no-untyped-def]
    daphne, browser, alice, settings, shots
) -> None:
    from marketdata.services.sync import market_register
    from risk.services.incidents import incident_open
    from trading.models import ExchangeAccount

    _real_passwords(settings, alice)
    secret = totp_activate(alice)
    account = ExchangeAccount.objects.create(
        name="main-bybit",
        exchange=market_register(exchange_code="bybit", symbol="BTC/USDT").exchange,
        mode=ExchangeAccount.Mode.TESTNET,
        cash=Decimal("59595.00000000"),
        starting_cash=Decimal("60000"),
        needs_reconcile=True,
    )
    detail = (
        "BTC/USDT: we hold 0.01, the exchange 0.02 (it holds more by 0.01); USDT: our cash "
        "59,595.00, the exchange 59,190.00 (it holds less by 405.00)"
    )
    incident_open(
        severity="critical",
        code="RECONCILIATION_FAILED",
        title="Account main-bybit: RECONCILIATION_FAILED → HALTED",
        detail=f"reconciliation failed: {detail}",
        account=account,
    )
    page = browser(viewport={"width": 1440, "height": 1000})
    _login(page, daphne, "alice", "/settings/accounts/", secret)

    card = page.locator(f"#account-{account.pk}")
    assert "it holds more by 0.01" in card.locator("tr.reconcile-problem").inner_text()
    assert "account_adopt_holdings" in card.inner_text()
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the accounts page scrolls sideways by {overflow}px"
    page.screenshot(path=str(shots / "accounts-mismatch.png"), full_page=False)
