"""Every ccxt exception class means one thing for an order (trading/adapters/errors.py), and
the classes ccxt picks are the ones it would pick at the venue's production URLs."""

from __future__ import annotations

import json
from decimal import Decimal

import ccxt
import pytest
from ccxt.base.errors import error_hierarchy

from marketdata.services.sync import market_register
from marketdata.sources import rebase_urls
from trading.adapters import NotSent, OrderRejected, UnclearOutcome
from trading.adapters.ccxt_adapter import CcxtAdapter, _clients
from trading.adapters.errors import TABLE, Kind, classify, classify_as_at
from trading.models import ExchangeAccount
from trading.services.accounts import account_keys_set


def ccxt_error_names(tree: dict = error_hierarchy) -> list[str]:
    names: list[str] = []
    for name, children in tree.items():
        names += [name, *ccxt_error_names(children)]
    return names


RAISED_AS = {
    Kind.FINAL: OrderRejected,
    Kind.NOT_FOUND: OrderRejected,
    Kind.UNCLEAR: UnclearOutcome,
    Kind.NOT_SENT: NotSent,
}


def test_every_exception_class_ccxt_defines_has_its_own_row() -> None:
    missing = [n for n in ccxt_error_names() if getattr(ccxt, n) not in TABLE]
    assert missing == []


def test_a_class_ccxt_adds_later_falls_back_to_its_parents_row() -> None:
    class NewKindOfTimeout(ccxt.RequestTimeout):
        pass

    class NewKindOfRefusal(ccxt.InvalidOrder):
        pass

    assert classify(NewKindOfTimeout()) is Kind.UNCLEAR
    assert classify(NewKindOfRefusal()) is Kind.FINAL
    assert classify(RuntimeError()) is Kind.UNCLEAR, "not ccxt's: we cannot say what happened"


@pytest.fixture
def adapter(db, settings) -> CcxtAdapter:
    _clients.clear()
    account = ExchangeAccount.objects.create(
        name="errors",
        exchange=market_register(exchange_code="binance", symbol="BTC/USDT").exchange,
        mode=ExchangeAccount.Mode.TESTNET,
        cash=Decimal("1000"),
        starting_cash=Decimal("1000"),
        api_url_override="http://127.0.0.1:9",
    )
    account_keys_set(account=account, api_key="k-errors", api_secret="s-errors", actor="alice")
    yield CcxtAdapter(account)
    _clients.clear()


@pytest.mark.parametrize("name", ccxt_error_names())
def test_each_ccxt_error_reaches_the_order_path_as_its_rows_outcome(adapter, name) -> None:
    cls = getattr(ccxt, name)

    def call(*args: object) -> None:
        raise cls("binance said so")

    adapter.client.qt_probe = call
    expected = RAISED_AS[TABLE[cls]]
    with pytest.raises(expected) as raised:
        adapter._call("qt_probe")
    assert isinstance(raised.value.__cause__, cls)


def _class_for(client: ccxt.Exchange, url: str, code: int) -> str:
    body = json.dumps({"code": code, "msg": "as the venue words it"})
    with pytest.raises(ccxt.BaseError) as raised:
        client.handle_errors(400, "Bad Request", url, "POST", {}, body, json.loads(body), {}, None)
    return type(raised.value).__name__


@pytest.mark.parametrize(
    ("ctor", "production", "path"),
    [
        (ccxt.binance, "https://api.binance.com", "/api/v3/order"),
        (ccxt.binanceusdm, "https://fapi.binance.com", "/fapi/v1/order"),
    ],
    ids=["binance-spot", "binance-futures"],
)
@pytest.mark.parametrize("code", [-1006, -1007, -1008, -1013, -1021, -2010, -2013, -2019])
def test_an_error_at_a_loopback_url_is_classified_as_at_the_production_url(
    ctor, production, path, code
) -> None:
    at_production = _class_for(ctor(), production + path, code)
    ours = ctor()
    urls = ours.urls["api"]
    ours.urls["api"] = rebase_urls(urls, "http://127.0.0.1:9")
    classify_as_at(ours, urls)

    assert _class_for(ours, "http://127.0.0.1:9" + path, code) == at_production


def test_without_the_production_mapping_ccxt_would_classify_differently_at_loopback() -> None:
    # Why classify_as_at exists: Binance -1008 ("server busy") is OperationFailed at
    # api.binance.com but a bare ExchangeError at any other host.
    plain = ccxt.binance()
    plain.urls["api"] = rebase_urls(plain.urls["api"], "http://127.0.0.1:9")
    assert _class_for(ccxt.binance(), "https://api.binance.com/api/v3/order", -1008) == (
        "OperationFailed"
    )
    assert _class_for(plain, "http://127.0.0.1:9/api/v3/order", -1008) == "ExchangeError"


def test_an_account_pointed_at_another_host_classifies_as_binance_production(adapter) -> None:
    url = adapter.client.urls["api"]["private"] + "/order"
    assert url.startswith("http://127.0.0.1:9")
    assert _class_for(adapter.client, url, -1008) == "OperationFailed"
