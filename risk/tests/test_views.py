from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from marketdata.models import Market
from risk.models import AuditEvent, Incident, RiskLimits, TradingState
from risk.services.audit import audit_record
from risk.services.checks import pretrade_check
from risk.services.incidents import incident_open
from risk.tests.test_audit import tampering
from trading.models import ExchangeAccount

PAGES = [
    "/risk/",
    "/risk/controls/",
    "/risk/decisions/",
    "/risk/incidents/",
    "/risk/audit/",
    "/risk/audit/chain/",
]
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.mark.parametrize("url", PAGES)
def test_operators_see_every_risk_page(client_as, alice: User, paper_account, url: str) -> None:  # type: ignore[no-untyped-def]
    assert client_as(alice).get(url).status_code == 200


@pytest.mark.parametrize("url", PAGES)
@pytest.mark.parametrize("persona", ["bob", "carol", "charlie"])
def test_everyone_else_gets_a_403(request, client_as, url: str, persona: str) -> None:  # type: ignore[no-untyped-def]
    user = request.getfixturevalue(persona)
    assert client_as(user).get(url).status_code == 403


def test_anonymous_visitors_are_sent_to_log_in(client, db) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/risk/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


@pytest.mark.parametrize(
    ("url", "data"),
    [
        ("/risk/killswitch/", {"switch": "on", "reason": "x"}),
        ("/risk/state/", {"state": "HALTED", "reason": "x"}),
        ("/risk/limits/1/", {"reason": "x"}),
        ("/risk/incidents/1/acknowledge/", {}),
        ("/risk/incidents/1/resolve/", {"resolution": "x"}),
    ],
)
def test_a_trader_cannot_change_anything(
    client_as, bob: User, paper_account, url: str, data: dict
) -> None:  # type: ignore[no-untyped-def]
    assert client_as(bob).post(url, data).status_code == 403
    assert TradingState.objects.get(account=None).state == "ACTIVE"
    assert not AuditEvent.objects.exclude(action__startswith="auth.").exists()


def test_the_nav_links_to_the_risk_pages_for_operators_only(client_as, alice, carol, db) -> None:  # type: ignore[no-untyped-def]
    assert b'href="/risk/"' in client_as(alice).get("/risk/").content
    assert b'href="/risk/"' not in client_as(carol).get("/").content


def test_the_page_shows_states_limits_accounts_and_denials(
    client_as, alice: User, paper_account: ExchangeAccount, market: Market
) -> None:  # type: ignore[no-untyped-def]
    pretrade_check(
        account=paper_account,
        market=market,
        side="BUY",
        quantity=Decimal("1"),
        price=Decimal("40000"),
    )

    page = client_as(alice).get("/risk/").content.decode()

    assert 'id="risk-controls"' in page and 'ws-connect="/ws/live/"' in page
    assert "global default" in page and "paper" in page
    assert "MAX_NOTIONAL" in page and "order notional 40000.00 &gt; 5000" in page


def test_an_operator_engages_the_kill_switch_from_the_page(
    client_as, alice: User, paper_account: ExchangeAccount, sent_tasks: list
) -> None:  # type: ignore[no-untyped-def]
    response = client_as(alice).post(
        "/risk/killswitch/", {"switch": "on", "reason": "exchange outage"}, **HTMX
    )

    assert response.status_code == 200
    assert b"Kill switch on: trading is HALTED." in response.content
    state = TradingState.objects.get(account=None)
    assert (state.state, state.kill_switch, state.changed_by) == ("HALTED", True, alice)
    assert AuditEvent.objects.get(action="killswitch.on").actor == "alice"


def test_the_kill_switch_form_needs_a_reason(client_as, alice: User, paper_account) -> None:  # type: ignore[no-untyped-def]
    response = client_as(alice).post("/risk/killswitch/", {"switch": "on", "reason": " "}, **HTMX)

    assert response.status_code == 400
    assert b"This field is required." in response.content
    assert TradingState.objects.get(account=None).state == "ACTIVE"


def test_an_operator_halts_one_account_and_flattens_it(
    client_as, alice: User, paper_account: ExchangeAccount, sent_tasks: list
) -> None:  # type: ignore[no-untyped-def]
    client_as(alice).post(
        "/risk/killswitch/",
        {"switch": "on", "account": "paper", "reason": "key leaked", "flatten": "on"},
    )

    assert TradingState.objects.get(account=paper_account).kill_switch is True
    assert TradingState.objects.get(account=None).state == "ACTIVE"
    assert paper_account.flatten_requests.get().requested_by == "alice"


def test_an_operator_sets_an_account_to_reducing(
    client_as, alice: User, paper_account: ExchangeAccount
) -> None:  # type: ignore[no-untyped-def]
    response = client_as(alice).post(
        "/risk/state/", {"state": "REDUCING", "account": "paper", "reason": "earnings"}, **HTMX
    )

    assert response.status_code == 200
    assert TradingState.objects.get(account=paper_account).state == "REDUCING"


def test_setting_active_under_the_kill_switch_is_refused_with_a_message(
    client_as, alice: User, paper_account: ExchangeAccount, sent_tasks: list
) -> None:  # type: ignore[no-untyped-def]
    client = client_as(alice)
    client.post("/risk/killswitch/", {"switch": "on", "reason": "outage"})

    response = client.post("/risk/state/", {"state": "ACTIVE", "reason": "go"}, **HTMX)

    assert response.status_code == 400
    assert b"release it first" in response.content


def test_an_operator_edits_a_limit_with_a_reason(
    client_as, alice: User, paper_account: ExchangeAccount
) -> None:  # type: ignore[no-untyped-def]
    limits = RiskLimits.objects.get(account=None)
    client = client_as(alice)
    form = client.get(f"/risk/limits/{limits.pk}/", **HTMX)
    assert form.status_code == 200 and b'name="reason"' in form.content
    data = {f: getattr(limits, f) for f in form.context["form"].fields if f != "reason"}

    refused = client.post(f"/risk/limits/{limits.pk}/", {**data, "reason": ""}, **HTMX)
    saved = client.post(
        f"/risk/limits/{limits.pk}/",
        {**data, "max_daily_loss": "750", "reason": "smaller days"},
        **HTMX,
    )

    assert refused.status_code == 400
    assert saved.status_code == 200 and b"saved" in saved.content
    limits.refresh_from_db()
    assert (limits.max_daily_loss, limits.version) == (Decimal("750"), 2)
    event = AuditEvent.objects.get(action="risk.limits_changed")
    assert event.payload["changes"] == {"max_daily_loss": ["1000.00000000", "750"]}


def test_the_decisions_page_says_why_each_order_was_denied(
    client_as, alice: User, paper_account: ExchangeAccount, market: Market
) -> None:  # type: ignore[no-untyped-def]
    for quantity in ("1", "0.0001", "0.01"):
        pretrade_check(
            account=paper_account,
            market=market,
            side="BUY",
            quantity=Decimal(quantity),
            price=Decimal("40000"),
        )

    page = client_as(alice).get("/risk/decisions/?verdict=denied").content.decode()

    assert "MAX_NOTIONAL" in page and "MIN_NOTIONAL" in page
    assert "notional 4.00 below 5" in page
    assert "2 row(s)" in page


def test_the_decisions_page_costs_the_same_queries_for_many_rows(
    client_as, alice: User, paper_account: ExchangeAccount, market: Market
) -> None:  # type: ignore[no-untyped-def]
    client = client_as(alice)

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get("/risk/decisions/", **HTMX).status_code == 200
        return len(ctx.captured_queries)

    pretrade_check(
        account=paper_account, market=market, side="BUY", quantity=Decimal("1"), price=Decimal("1")
    )
    few = queries()
    for _ in range(10):
        pretrade_check(
            account=paper_account,
            market=market,
            side="BUY",
            quantity=Decimal("1"),
            price=Decimal("1"),
        )
    assert queries() == few


def test_an_operator_acknowledges_and_resolves_an_incident(client_as, alice: User, db) -> None:  # type: ignore[no-untyped-def]
    incident = incident_open(severity="critical", code="EXECUTION_ERRORS", title="paper: errors")
    client = client_as(alice)
    listed = client.get("/risk/incidents/").content.decode()
    assert "paper: errors" in listed

    ack = client.post(f"/risk/incidents/{incident.pk}/acknowledge/", **HTMX)
    again = client.post(f"/risk/incidents/{incident.pk}/acknowledge/", **HTMX)
    empty = client.post(f"/risk/incidents/{incident.pk}/resolve/", {"resolution": ""}, **HTMX)
    done = client.post(
        f"/risk/incidents/{incident.pk}/resolve/", {"resolution": "exchange fixed"}, **HTMX
    )

    assert (ack.status_code, again.status_code, empty.status_code) == (200, 409, 400)
    assert done.status_code == 200 and b"exchange fixed" in done.content
    incident.refresh_from_db()
    assert (incident.status, incident.acknowledged_by, incident.resolved_by) == (
        Incident.Status.RESOLVED,
        "alice",
        "alice",
    )
    # Resolved incidents leave the default (unresolved) list.
    assert "paper: errors" not in client.get("/risk/incidents/").content.decode()
    assert "paper: errors" in client.get("/risk/incidents/?status=resolved").content.decode()


def test_the_audit_browser_filters_and_shows_the_chain_status(client_as, alice: User, db) -> None:  # type: ignore[no-untyped-def]
    audit_record(actor="system:risk", action="risk.denied", object_type="risk.x", object_id="7")
    audit_record(actor="bob", action="order.created", object_type="trading.order", object_id="9")
    client = client_as(alice)

    filtered = client.get("/risk/audit/?action=risk.&actor=system:risk", **HTMX).content.decode()
    by_object = client.get("/risk/audit/?object_type=trading.order&object_id=9", **HTMX)
    chain = client.get("/risk/audit/chain/").content.decode()

    assert "risk.denied" in filtered and "order.created" not in filtered
    assert b"order.created" in by_object.content and b"risk.denied" not in by_object.content
    assert "chain intact" in chain


def test_the_audit_browser_shows_a_broken_chain(client_as, alice: User, db) -> None:  # type: ignore[no-untyped-def]
    audit_record(actor="system:test", action="test.one")
    audit_record(actor="system:test", action="test.two")
    with tampering():
        AuditEvent.objects.filter(action="test.one").update(actor="mallory")

    chain = client_as(alice).get("/risk/audit/chain/").content.decode()

    assert "chain broken" in chain and "entry #1: hash mismatch" in chain


def test_the_audit_browser_costs_the_same_queries_for_a_full_page(
    client_as, alice: User, db
) -> None:  # type: ignore[no-untyped-def]
    client = client_as(alice)
    audit_record(actor="system:test", action="test.one")

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            client.get("/risk/audit/", **HTMX)
        return len(ctx.captured_queries)

    few = queries()
    for i in range(30):
        audit_record(actor="system:test", action="test.more", object_id=str(i))
    assert queries() == few
