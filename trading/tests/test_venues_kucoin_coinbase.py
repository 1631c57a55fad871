"""KuCoin and Coinbase spot trading through the real adapter and real ccxt against
loopback venues that check each exchange's own request signing and answer in its words:
KuCoin (venues.kucoin: passphrase-signed, high-frequency and classic
order routes) and Coinbase Advanced Trade (venues.coinbase: CDP keys
signing an ES256 JWT per request, or legacy HMAC keys).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import ROUND_DOWN, Decimal
from typing import Any

import pytest

from marketdata.models import Market
from marketdata.services.sync import market_register
from risk.models import RiskDecision
from trading.adapters import OrderRejected, adapter_for
from trading.adapters.ccxt_adapter import _clients, ccxt_for_account
from trading.models import ExchangeAccount, Fill, Order
from trading.services.accounts import account_keys_set
from trading.services.orders import order_intent_create
from trading.services.submission import order_cancel, order_resolve, order_submit
from trading.tests.venues import buy, finest_market, reconciled_account
from venues.coinbase import CoinbaseLoopback, cdp_secret, order_uuid
from venues.kucoin import KucoinLoopback
from venues.orders import Order as VenueOrder

S = Order.Status
KEY = "qt-kucoin-key-5c0d"
SECRET = "qt-kucoin-secret-never-logged-77e1"
PASSPHRASE = "qt-kucoin-passphrase-3a9f"
STEP = Decimal("0.00000001")  # KuCoin's BTC-USDT baseIncrement


# Accounts migrated to high-frequency trading (KuCoin's default now) use the /hf/ order
# routes; `classic` runs a test against an account that was never migrated.
classic_too = pytest.mark.parametrize("server", [True, False], ids=["hf", "classic"], indirect=True)


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[KucoinLoopback]:
    with KucoinLoopback(
        api_key=KEY,
        api_secret=SECRET,
        api_passphrase=PASSPHRASE,
        balances={"USDT": "100000"},
        hf=getattr(request, "param", True),
    ) as ex:
        ex.set_price("BTC-USDT", "40000")
        yield ex


def make_account(
    server: KucoinLoopback,
    *,
    name: str = "kucoin",
    secret: str = SECRET,
    passphrase: str = PASSPHRASE,
) -> ExchangeAccount:
    account = ExchangeAccount.objects.create(
        name=name,
        exchange=market_register(exchange_code="kucoin", symbol="BTC/USDT").exchange,
        mode=ExchangeAccount.Mode.TESTNET,
        market_type="spot",
        cash=Decimal("100000"),
        starting_cash=Decimal("100000"),
        api_url_override=server.url,
    )
    account_keys_set(
        account=account,
        api_key=KEY,
        api_secret=secret,
        api_password=passphrase,
        actor="alice",
    )
    return account


@pytest.fixture
def account(db, server: KucoinLoopback, settings) -> Iterator[ExchangeAccount]:
    yield from reconciled_account(lambda: make_account(server), settings)


@pytest.fixture
def venue_market(account: ExchangeAccount) -> Market:
    return finest_market(account, "BTC/USDT")


def creates(server: KucoinLoopback) -> list[dict[str, Any]]:
    path = "/api/v1/hf/orders" if server.hf else "/api/v1/orders"
    return [params for verb, _, params in server.requests(path) if verb == "POST"]


def venue_orders(server: KucoinLoopback) -> list[VenueOrder]:
    with server.spot.lock:
        return list(server.spot.orders.values())


@classic_too
def test_an_order_goes_out_under_clientoid_rounded_to_the_step_and_resolves_filled(
    server, account, venue_market
) -> None:
    order = buy(account, venue_market, "0.0123456789", "qtkucoin0001")

    assert order is not None and order.status in (S.ACCEPTED, S.FILLED)
    sent = creates(server)
    assert [p["clientOid"] for p in sent] == ["qtkucoin0001"]
    rounded = Decimal("0.0123456789").quantize(STEP, rounding=ROUND_DOWN)
    assert order.quantity == rounded == Decimal(sent[0]["size"])

    order = order_resolve(order=order)

    assert order.status == S.FILLED
    (at_venue,) = venue_orders(server)
    assert at_venue.client_order_id == "qtkucoin0001"
    assert order.exchange_order_id == str(at_venue.order_id)
    fill = Fill.objects.get(order=order)
    assert fill.quantity == rounded and fill.price == Decimal("40000")
    # Looked up by the exchange's id (classic's by-clientOid route answers active orders
    # only) on the account's own order routes.
    lookups = [p for _, p, _ in server.requests() if p.endswith(f"/orders/{at_venue.order_id}")]
    assert lookups and all(("/hf/" in p) == server.hf for p in lookups)


def test_an_order_below_kucoins_minimum_funds_is_refused_before_sending(
    server, account, venue_market
) -> None:
    # 0.00002 BTC (above baseMinSize 0.00001) at 4000 is 0.08 USDT; quoteMinSize is 0.1.
    assert buy(account, venue_market, "0.00002", "qtkucoin0002", price="4000") is None

    denial = RiskDecision.objects.get(account=account)
    assert denial.code == "EXCHANGE_RULES" and "below the exchange minimum" in denial.detail
    assert creates(server) == []
    assert not Order.objects.exists()


def test_a_resend_under_the_same_clientoid_is_not_a_second_order(
    server, account, venue_market
) -> None:
    order = order_intent_create(
        account_id=account.pk,
        market_id=venue_market.pk,
        signal_id=None,
        side="BUY",
        quantity=Decimal("0.01"),
        client_order_id="qtkucoin0003",
        strategy="test",
        reason="test",
    )
    # A worker sent it and died before recording anything; the redelivered task sends it
    # again under the same clientOid, and KuCoin refuses the duplicate.
    adapter_for(account).submit(order, reference_price=Decimal("40000"), at=order.created_at)

    order = order_submit(order=order, reference_price=Decimal("40000"))

    assert order.status == S.SUBMITTED, "a refused duplicate leaves the order in flight"
    assert len(creates(server)) == 2 and len(venue_orders(server)) == 1
    order = order_resolve(order=order)
    assert order.status == S.FILLED
    assert Fill.objects.filter(order=order).count() == 1


@classic_too
def test_canceling_a_resting_limit_order_cancels_it_at_kucoin(
    server, account, venue_market
) -> None:
    order = Order.objects.create(
        account=account,
        market=venue_market,
        client_order_id="qtkucoin0004",
        side="BUY",
        order_type="limit",
        quantity=Decimal("0.01"),
        price=Decimal("30000"),
    )
    order = order_submit(order=order, reference_price=Decimal("40000"))
    assert order.status == S.ACCEPTED

    order = order_cancel(order=order, cause="operator")

    assert order.status == S.CANCELED
    assert [o.status for o in venue_orders(server)] == ["CANCELED"]
    assert Decimal(server.spot.balances()["USDT"]["locked"]) == 0


@pytest.mark.parametrize(
    ("secret", "passphrase"),
    [("not-the-secret", PASSPHRASE), (SECRET, "not-the-passphrase")],
    ids=["secret", "passphrase"],
)
def test_a_wrong_secret_or_passphrase_is_refused_by_kucoin(
    server, account, secret, passphrase
) -> None:
    intruder = make_account(server, name="intruder", secret=secret, passphrase=passphrase)

    with pytest.raises(OrderRejected, match="authentication failed"):
        adapter_for(intruder).balances()
    assert adapter_for(account).balances()["USDT"] == Decimal("100000")


def test_a_kucoin_account_without_its_passphrase_is_refused_before_any_signed_request(
    db, server
) -> None:
    _clients.clear()
    account = make_account(server, passphrase="")

    with pytest.raises(OrderRejected, match="password"):
        adapter_for(account).balances()
    assert server.requests("/api/v1/accounts") == []
    _clients.clear()


@pytest.mark.parametrize("mode", ["testnet", "live"])
def test_kucoin_has_no_sandbox_so_testnet_needs_an_override_and_live_goes_to_production(
    db, mode
) -> None:
    _clients.clear()
    exchange = market_register(exchange_code="kucoin", symbol="BTC/USDT").exchange
    account = ExchangeAccount.objects.create(name="k", mode=mode, exchange=exchange)

    if mode == "testnet":
        with pytest.raises(OrderRejected, match="no sandbox"):
            ccxt_for_account(account)
    else:
        assert ccxt_for_account(account).urls["api"]["private"] == "https://api.kucoin.com"

    account.api_url_override = "http://127.0.0.1:9"
    account.save()
    _clients.clear()
    urls = ccxt_for_account(account).urls["api"]
    assert urls["private"] == urls["public"] == "http://127.0.0.1:9"
    _clients.clear()


# --- Coinbase Advanced Trade -----------------------------------------------------------

CB_KEY = "organizations/qt-org-7f3e/apiKeys/qt-coinbase-key-91b2"
CB_SECRET = cdp_secret()  # a CDP key's PEM EC secret, made for this run
CB_STEP = Decimal("0.00000001")  # Coinbase's BTC-USD base_increment


@pytest.fixture
def cb_server() -> Iterator[CoinbaseLoopback]:
    with CoinbaseLoopback(api_key=CB_KEY, api_secret=CB_SECRET, balances={"USD": "100000"}) as ex:
        ex.set_price("BTC-USD", "40000")
        yield ex


def make_cb_account(
    server: CoinbaseLoopback,
    *,
    name: str = "coinbase",
    key: str = CB_KEY,
    secret: str = CB_SECRET,
) -> ExchangeAccount:
    account = ExchangeAccount.objects.create(
        name=name,
        exchange=market_register(exchange_code="coinbase", symbol="BTC/USD").exchange,
        mode=ExchangeAccount.Mode.TESTNET,
        market_type="spot",
        quote_currency="USD",
        cash=Decimal("100000"),
        starting_cash=Decimal("100000"),
        api_url_override=server.url,
    )
    account_keys_set(account=account, api_key=key, api_secret=secret, actor="alice")
    return account


@pytest.fixture
def cb_account(db, cb_server: CoinbaseLoopback, settings) -> Iterator[ExchangeAccount]:
    yield from reconciled_account(lambda: make_cb_account(cb_server), settings)


@pytest.fixture
def cb_market(cb_account: ExchangeAccount) -> Market:
    return finest_market(cb_account, "BTC/USD")


def cb_creates(server: CoinbaseLoopback) -> list[dict[str, Any]]:
    return [p for verb, _, p in server.requests("/api/v3/brokerage/orders") if verb == "POST"]


def cb_venue_orders(server: CoinbaseLoopback) -> list[VenueOrder]:
    with server.spot.lock:
        return list(server.spot.orders.values())


def cb_intent(account: ExchangeAccount, market: Market, coid: str) -> Order:
    return order_intent_create(
        account_id=account.pk,
        market_id=market.pk,
        signal_id=None,
        side="BUY",
        quantity=Decimal("0.01"),
        client_order_id=coid,
        strategy="test",
        reason="test",
    )


def test_a_coinbase_order_goes_out_under_client_order_id_in_base_increments_and_fills(
    cb_server, cb_account, cb_market
) -> None:
    order = buy(cb_account, cb_market, "0.0123456789", "qtcoinbase0001")

    assert order is not None and order.status in (S.ACCEPTED, S.FILLED)
    (sent,) = cb_creates(cb_server)
    assert sent["client_order_id"] == "qtcoinbase0001" and sent["product_id"] == "BTC-USD"
    rounded = Decimal("0.0123456789").quantize(CB_STEP, rounding=ROUND_DOWN)
    # A base quantity, not ccxt's default quote amount for market buys.
    assert sent["order_configuration"] == {"market_market_ioc": {"base_size": f"{rounded}"}}
    assert order.quantity == rounded

    order = order_resolve(order=order)

    assert order.status == S.FILLED
    (at_venue,) = cb_venue_orders(cb_server)
    assert at_venue.client_order_id == "qtcoinbase0001"
    assert order.exchange_order_id == order_uuid(at_venue.order_id)
    fill = Fill.objects.get(order=order)
    assert fill.quantity == rounded and fill.price == Decimal("40000")
    assert fill.fee == (rounded * 40000 * Decimal("0.006")).quantize(Decimal("1e-8"))


def test_an_order_below_coinbases_quote_min_size_is_refused_before_sending(
    cb_server, cb_account, cb_market
) -> None:
    # 0.00002 BTC at 4000 is 0.08 USD; BTC-USD's quote_min_size is 1.
    assert buy(cb_account, cb_market, "0.00002", "qtcoinbase0002", price="4000") is None

    denial = RiskDecision.objects.get(account=cb_account)
    assert denial.code == "EXCHANGE_RULES" and "below the exchange minimum" in denial.detail
    assert cb_creates(cb_server) == []
    assert not Order.objects.exists()


def test_a_resend_under_the_same_client_order_id_gets_coinbases_original_order_back(
    cb_server, cb_account, cb_market
) -> None:
    order = cb_intent(cb_account, cb_market, "qtcoinbase0003")
    # A worker sent it and died before recording anything; the redelivered task sends it
    # again under the same client_order_id, and Coinbase answers with the original order.
    first = adapter_for(cb_account).submit(
        order, reference_price=Decimal("40000"), at=order.created_at
    )

    order = order_submit(order=order, reference_price=Decimal("40000"))

    assert len(cb_creates(cb_server)) == 2 and len(cb_venue_orders(cb_server)) == 1
    assert order.exchange_order_id == first.exchange_order_id
    order = order_resolve(order=order)
    assert order.status == S.FILLED
    assert Fill.objects.filter(order=order).count() == 1


def test_an_order_whose_answer_timed_out_is_found_at_coinbase_by_client_order_id(
    cb_server, cb_account, cb_market
) -> None:
    order = cb_intent(cb_account, cb_market, "qtcoinbase0004")
    ccxt_for_account(cb_account).timeout = 300  # ms; the venue answers after 0.6 s
    cb_server.answer_delay_s = 0.6

    order = order_submit(order=order, reference_price=Decimal("40000"))

    assert order.status == S.SUBMITTED and order.exchange_order_id == ""
    assert len(cb_venue_orders(cb_server)) == 1, "Coinbase has it; we do not know its id"
    order = order_resolve(order=order)
    assert order.status == S.FILLED
    (at_venue,) = cb_venue_orders(cb_server)
    assert order.exchange_order_id == order_uuid(at_venue.order_id)
    assert Fill.objects.filter(order=order).count() == 1
    # Found through List Orders for the product, never by asking for order "None".
    assert not [p for _, p, _ in cb_server.requests() if p.endswith("/None")]
    assert cb_server.requests("/api/v3/brokerage/orders/historical/batch")
    assert len(cb_creates(cb_server)) == 1


def test_an_order_coinbase_never_got_is_not_found_by_client_order_id(
    cb_server, cb_account, cb_market
) -> None:
    buy(cb_account, cb_market, "0.01", "qtcoinbase0005")  # another order in the list
    never_sent = cb_intent(cb_account, cb_market, "qtcoinbase0006")

    assert adapter_for(cb_account).fetch(never_sent) is None


def test_canceling_a_resting_limit_order_cancels_it_at_coinbase(
    cb_server, cb_account, cb_market
) -> None:
    order = Order.objects.create(
        account=cb_account,
        market=cb_market,
        client_order_id="qtcoinbase0007",
        side="BUY",
        order_type="limit",
        quantity=Decimal("0.01"),
        price=Decimal("30000"),
    )
    order = order_submit(order=order, reference_price=Decimal("40000"))
    assert order.status == S.ACCEPTED
    (sent,) = cb_creates(cb_server)
    assert sent["order_configuration"]["limit_limit_gtc"]["limit_price"] == "30000"

    order = order_cancel(order=order, cause="operator")

    assert order.status == S.CANCELED
    assert [o.status for o in cb_venue_orders(cb_server)] == ["CANCELED"]
    assert Decimal(cb_server.spot.balances()["USD"]["locked"]) == 0
    (cancel,) = cb_server.requests("/api/v3/brokerage/orders/batch_cancel")
    assert cancel[2]["order_ids"] == [order.exchange_order_id]


@pytest.mark.parametrize(
    ("key", "secret"),
    [(CB_KEY, cdp_secret()), ("organizations/qt-org-7f3e/apiKeys/someone-else", CB_SECRET)],
    ids=["other-private-key", "other-key-name"],
)
def test_a_jwt_from_another_cdp_key_is_refused_by_coinbase(
    cb_server, cb_account, key, secret
) -> None:
    intruder = make_cb_account(cb_server, name="intruder", key=key, secret=secret)

    with pytest.raises(OrderRejected, match="authentication failed"):
        adapter_for(intruder).balances()
    assert adapter_for(cb_account).balances()["USD"] == Decimal("100000")


def test_a_legacy_coinbase_key_signs_with_hmac_and_a_wrong_secret_is_refused(db) -> None:
    _clients.clear()
    with CoinbaseLoopback(api_key="qt-legacy-key", api_secret="qt-legacy-secret-4d1") as ex:
        ex.set_price("BTC-USD", "40000")
        good = make_cb_account(ex, key="qt-legacy-key", secret="qt-legacy-secret-4d1")
        bad = make_cb_account(ex, name="bad", key="qt-legacy-key", secret="not-the-secret")

        assert adapter_for(good).balances()["USD"] == Decimal("100000")
        with pytest.raises(OrderRejected, match="authentication failed"):
            adapter_for(bad).balances()
    _clients.clear()


@pytest.mark.parametrize("mode", ["testnet", "live"])
def test_coinbase_has_no_sandbox_so_testnet_needs_an_override_and_live_goes_to_production(
    db, mode
) -> None:
    _clients.clear()
    exchange = market_register(exchange_code="coinbase", symbol="BTC/USD").exchange
    account = ExchangeAccount.objects.create(name="c", mode=mode, exchange=exchange)

    if mode == "testnet":
        with pytest.raises(OrderRejected, match="no sandbox"):
            ccxt_for_account(account)
    else:
        assert ccxt_for_account(account).urls["api"]["rest"] == "https://api.coinbase.com"

    account.api_url_override = "http://127.0.0.1:9"
    account.save()
    _clients.clear()
    assert ccxt_for_account(account).urls["api"]["rest"] == "http://127.0.0.1:9"
    _clients.clear()
