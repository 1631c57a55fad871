"""The API lists that trading/tests/test_api.py does not walk also cost a bounded number of
queries: 50 rows take no more than 1 row (no N+1 through a serializer's related field)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from models_registry.models import TrainingRun
from quantum.tests.auth_helpers import bearer_client
from risk.models import RiskDecision
from trading.models import BacktestRun, ExchangeAccount


def _decisions(market, account, n: int) -> None:  # type: ignore[no-untyped-def]
    RiskDecision.objects.bulk_create(
        RiskDecision(
            account=account,
            market=market,
            side="BUY",
            quantity=Decimal("1"),
            notional=Decimal("100"),
            approved=bool(i % 2),
            code="" if i % 2 else "MAX_NOTIONAL",
        )
        for i in range(n)
    )


def _backtests(market, account, n: int) -> None:  # type: ignore[no-untyped-def]
    BacktestRun.objects.bulk_create(
        BacktestRun(config={"n": i}, config_hash=f"h{i}", data_source="db", code_version="t")
        for i in range(n)
    )


def _accounts(market, account, n: int) -> None:  # type: ignore[no-untyped-def]
    start = ExchangeAccount.objects.count()
    ExchangeAccount.objects.bulk_create(
        ExchangeAccount(name=f"paper-{start + i}", exchange=account.exchange) for i in range(n)
    )


def _runs(market, account, n: int) -> None:  # type: ignore[no-untyped-def]
    TrainingRun.objects.bulk_create(
        TrainingRun(market_group="binance:BTC/USDT", timeframe="1h", requested_by="t")
        for _ in range(n)
    )


LISTS: dict[str, tuple[Callable, str]] = {
    "/api/v1/risk/decisions/": (_decisions, "results"),
    "/api/v1/backtests/": (_backtests, "results"),
    "/api/v1/accounts/": (_accounts, "results"),
    "/api/v1/models/runs/": (_runs, "results"),
}


@pytest.mark.parametrize("url", LISTS)
def test_an_api_list_costs_the_same_queries_for_50_rows_as_for_1(  # type: ignore[no-untyped-def]
    url: str, carol, market, paper_account, django_assert_max_num_queries
) -> None:
    make, key = LISTS[url]
    client = bearer_client(carol, "read")
    ExchangeAccount.objects.exclude(pk=paper_account.pk).delete()
    if url != "/api/v1/accounts/":
        make(market, paper_account, 1)
    with CaptureQueriesContext(connection) as one:
        assert len(client.get(url).json()[key]) == 1
    make(market, paper_account, 49)
    with django_assert_max_num_queries(len(one)):
        rows = client.get(url).json()[key]
    assert len(rows) == (10 if "runs" in url else 50)  # runs: the latest 10; others: a page


def test_the_trading_states_cost_the_same_queries_for_many_accounts(  # type: ignore[no-untyped-def]
    alice, market, paper_account, django_assert_max_num_queries
) -> None:
    from risk.services.state import kill_switch_set

    client = bearer_client(alice, "operate")
    kill_switch_set(on=True, reason="q", actor="t", account=paper_account)
    with CaptureQueriesContext(connection) as few:
        before = len(client.get("/api/v1/risk/killswitch/").json())
    _accounts(market, paper_account, 10)
    for account in ExchangeAccount.objects.exclude(pk=paper_account.pk):
        kill_switch_set(on=True, reason="q", actor="t", account=account)
    with django_assert_max_num_queries(len(few)):
        assert len(client.get("/api/v1/risk/killswitch/").json()) == before + 10
