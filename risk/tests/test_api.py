from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from marketdata.models import Market
from risk.models import AuditEvent, FlattenRequest, TradingState
from risk.services.checks import pretrade_check
from trading.models import ExchangeAccount

URL = "/api/v1/risk/killswitch/"


def api(user: User) -> APIClient:
    """A personal token of the highest scope the user's role allows (operators: with TOTP)."""
    from quantum.roles import SCOPE_FOR_ROLE, user_role
    from quantum.tests.auth_helpers import bearer_client

    client = APIClient()
    role = user_role(user)
    if role is None:  # no role, no token: a plain session
        client.force_login(user)
        return client
    header = bearer_client(user, SCOPE_FOR_ROLE[role]).defaults["HTTP_AUTHORIZATION"]
    client.credentials(HTTP_AUTHORIZATION=header)
    return client


def test_an_operator_engages_and_releases_the_kill_switch_through_the_api(
    alice: User, paper_account: ExchangeAccount, sent_tasks: list
) -> None:
    client = api(alice)

    on = client.post(URL, {"on": True, "reason": "exchange outage"}, format="json")
    off = client.post(URL, {"on": False, "reason": "exchange back"}, format="json")

    assert on.status_code == 200
    assert on.json()["state"] == "HALTED" and on.json()["kill_switch"] is True
    assert off.json() | {"changed_at": None} == {
        "scope": "global",
        "state": "ACTIVE",
        "kill_switch": False,
        "code": "KILL_SWITCH",
        "reason": "exchange back",
        "changed_at": None,
    }
    assert list(
        AuditEvent.objects.filter(action__startswith="killswitch").values_list("actor", flat=True)
    ) == ["alice", "alice"]


def test_the_api_halts_and_flattens_one_account(
    alice: User, paper_account: ExchangeAccount, sent_tasks: list
) -> None:
    response = api(alice).post(
        URL, {"on": True, "reason": "leak", "account": "paper", "flatten": True}, format="json"
    )

    assert response.json()["scope"] == "paper"
    assert TradingState.objects.get(account=paper_account).kill_switch is True
    assert FlattenRequest.objects.get().account == paper_account


@pytest.mark.parametrize(
    "body",
    [
        {"on": True},
        {"on": True, "reason": "   "},
        {"on": False, "reason": "x", "flatten": True},
        {"on": True, "reason": "x", "account": "nope"},
    ],
)
def test_the_api_refuses_bad_requests(alice: User, paper_account, body: dict) -> None:  # type: ignore[no-untyped-def]
    assert api(alice).post(URL, body, format="json").status_code == 400
    assert TradingState.objects.get(account=None).state == "ACTIVE"


@pytest.mark.parametrize("persona", ["bob", "carol", "charlie"])
def test_only_operators_may_use_the_kill_switch_api(request, paper_account, persona: str) -> None:  # type: ignore[no-untyped-def]
    client = api(request.getfixturevalue(persona))

    assert client.post(URL, {"on": True, "reason": "x"}, format="json").status_code == 403
    assert client.get(URL).status_code == 403
    assert TradingState.objects.get(account=None).state == "ACTIVE"


def test_anonymous_clients_are_refused(paper_account) -> None:  # type: ignore[no-untyped-def]
    assert APIClient().post(URL, {"on": True, "reason": "x"}, format="json").status_code in (
        401,
        403,
    )


def test_the_api_lists_denials_with_their_codes(
    carol: User, paper_account: ExchangeAccount, market: Market
) -> None:
    for quantity in ("1", "0.01"):
        pretrade_check(
            account=paper_account,
            market=market,
            side="BUY",
            quantity=Decimal(quantity),
            price=Decimal("40000"),
        )

    response = api(carol).get("/api/v1/risk/decisions/?approved=false")

    assert response.status_code == 200
    [row] = response.json()["results"]
    assert (row["code"], row["approved"], row["account"], row["market"]) == (
        "MAX_NOTIONAL",
        False,
        "paper",
        "BTC/USDT",
    )
    assert row["detail"] == "order notional 40000.00 > 5000"
    coded = api(carol).get("/api/v1/risk/decisions/?code=max_notional").json()
    assert coded["count"] == 1


def test_the_api_schema_includes_the_risk_endpoints(alice: User, db) -> None:  # type: ignore[no-untyped-def]
    schema = api(alice).get("/api/schema/").content.decode()
    assert "/api/v1/risk/killswitch/" in schema and "/api/v1/risk/decisions/" in schema
