"""Each exchange profile trading through the real adapter and real ccxt against a loopback
venue speaking that exchange's protocol: Bybit spot and linear perpetuals, Binance USDⓈ-M
futures. Binance spot has its own tests (test_exchange_execution, test_loopback_exchange).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
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
from venues.binance_futures import BinanceFuturesLoopback
from venues.bybit import BybitLoopback

S = Order.Status
KEY = "qt-venue-key-5c0d"
SECRET = "qt-venue-secret-never-logged-77e1"


@dataclass(frozen=True)
class Venue:
    """How one exchange profile looks from the outside: its server and its words."""

    code: str
    market_type: str
    server: Callable[..., Any]
    server_options: dict[str, Any]
    create: tuple[str, str]  # method and path of the order-create endpoint
    client_id_param: str
    step: Decimal  # the market's amount precision at the venue
    # "always": a client id is never taken twice (Bybit create-order.mdx: "always unique");
    # "open": only while its order is open (Binance futures New Order: "A unique id among
    # open orders").
    ids_unique: str = "always"

    def orders(self, server: Any) -> list[Order]:
        book = server.spot if self.code == "bybit" and self.market_type == "spot" else None
        if book is None:
            book = server.linear if self.code == "bybit" else server.book
        with book.lock:
            return list(book.orders.values())

    def position(self, server: Any) -> Any:
        book = server.linear if self.code == "bybit" else server.book
        return book.position("BTCUSDT")


VENUES = {
    "bybit-spot": Venue(
        "bybit",
        "spot",
        BybitLoopback,
        # One unified wallet: 60000 USDT in spot plus 40000 USDT of margin.
        {"balances": {"USDT": "60000"}, "margin": "40000"},
        ("POST", "/v5/order/create"),
        "orderLinkId",
        Decimal("0.000001"),
    ),
    "bybit-futures": Venue(
        "bybit",
        "futures",
        BybitLoopback,
        # One unified wallet: 60000 USDT in spot plus 40000 USDT of margin.
        {"balances": {"USDT": "60000"}, "margin": "40000"},
        ("POST", "/v5/order/create"),
        "orderLinkId",
        Decimal("0.001"),
    ),
    "binance-futures": Venue(
        "binance",
        "futures",
        BinanceFuturesLoopback,
        {"margin": "100000"},
        ("POST", "/fapi/v1/order"),
        "newClientOrderId",
        Decimal("0.001"),
        ids_unique="open",
    ),
}
FUTURES = [name for name, venue in VENUES.items() if venue.market_type == "futures"]


@pytest.fixture(params=list(VENUES))
def venue(request: pytest.FixtureRequest) -> Venue:
    return VENUES[request.param]


@pytest.fixture
def server(venue: Venue) -> Iterator[Any]:
    with venue.server(api_key=KEY, api_secret=SECRET, **venue.server_options) as ex:
        ex.set_price("BTCUSDT", "40000")
        yield ex


def make_account(
    venue: Venue, server: Any, *, name: str = "venue", secret: str = SECRET, **fields: Any
) -> ExchangeAccount:
    account = ExchangeAccount.objects.create(
        name=name,
        exchange=market_register(exchange_code=venue.code, symbol="BTC/USDT").exchange,
        mode=ExchangeAccount.Mode.TESTNET,
        market_type=venue.market_type,
        cash=Decimal("100000"),
        starting_cash=Decimal("100000"),
        api_url_override=server.url,
        **fields,
    )
    account_keys_set(account=account, api_key=KEY, api_secret=secret, actor="alice")
    return account


@pytest.fixture
def account(db, venue: Venue, server: Any, settings) -> Iterator[ExchangeAccount]:
    yield from reconciled_account(
        lambda: make_account(venue, server, leverage=Decimal("3"), margin_mode="isolated"), settings
    )


@pytest.fixture
def venue_market(account: ExchangeAccount) -> Market:
    return finest_market(account, "BTC/USDT")


def creates(venue: Venue, server: Any) -> list[dict[str, Any]]:
    method, path = venue.create
    return [params for verb, _, params in server.requests(path) if verb == method]


def test_an_order_goes_out_under_the_venues_client_id_rounded_and_resolves_filled(
    venue, server, account, venue_market
) -> None:
    order = buy(account, venue_market, "0.0123456789", "qtvenue0001")

    assert order is not None and order.status in (S.ACCEPTED, S.FILLED)
    sent = creates(venue, server)
    assert [p[venue.client_id_param] for p in sent] == ["qtvenue0001"]
    rounded = Decimal("0.0123456789").quantize(venue.step, rounding="ROUND_DOWN")
    assert order.quantity == rounded
    assert Decimal(str(sent[0].get("qty") or sent[0].get("quantity"))) == rounded

    order = order_resolve(order=order)

    assert order.status == S.FILLED
    (at_venue,) = venue.orders(server)
    assert at_venue.client_order_id == "qtvenue0001"
    assert order.exchange_order_id == str(at_venue.order_id)
    fill = Fill.objects.get(order=order)
    assert fill.quantity == rounded and fill.price == Decimal("40000")


def test_an_order_below_the_venues_minimum_notional_is_refused_before_sending(
    venue, server, account, venue_market
) -> None:
    # 0.001 BTC (a whole step everywhere) at 4000 is 4 USDT; every venue here wants 5.
    assert buy(account, venue_market, "0.001", "qtvenue0002", price="4000") is None

    denial = RiskDecision.objects.get(account=account)
    assert denial.code == "EXCHANGE_RULES" and "below the exchange minimum" in denial.detail
    assert creates(venue, server) == []
    assert not Order.objects.exists()


def test_an_order_that_left_new_is_never_sent_again(venue, server, account, venue_market) -> None:
    order = buy(account, venue_market, "0.01", "qtvenue0013")
    assert order is not None

    # A redelivered task (or a second worker) runs the same submit again.
    again = order_submit(order=order, reference_price=Decimal("40000"))

    assert again.pk == order.pk
    assert len(creates(venue, server)) == 1 and len(venue.orders(server)) == 1


@pytest.mark.parametrize(
    "venue", [n for n, v in VENUES.items() if v.ids_unique == "open"], indirect=True
)
def test_a_venue_that_frees_a_filled_orders_id_takes_a_resend_as_a_new_order(
    venue, server, account, venue_market
) -> None:
    # Why the engine itself must never resend: the venue's duplicate rule does not cover
    # a filled order everywhere.
    order = buy(account, venue_market, "0.01", "qtvenue0023")
    assert order is not None and order_resolve(order=order).status == S.FILLED

    adapter_for(account).submit(order, reference_price=Decimal("40000"), at=order.created_at)

    assert len(venue.orders(server)) == 2


@pytest.mark.parametrize(
    "venue", [n for n, v in VENUES.items() if v.ids_unique == "always"], indirect=True
)
def test_a_resend_under_the_same_client_id_is_not_a_second_order(
    venue, server, account, venue_market
) -> None:
    order = order_intent_create(
        account_id=account.pk,
        market_id=venue_market.pk,
        signal_id=None,
        side="BUY",
        quantity=Decimal("0.01"),
        client_order_id="qtvenue0003",
        strategy="test",
        reason="test",
    )
    # A worker sent it and died before recording anything; the redelivered task sends it
    # again under the same id, and the venue refuses the duplicate.
    adapter_for(account).submit(order, reference_price=Decimal("40000"), at=order.created_at)

    order = order_submit(order=order, reference_price=Decimal("40000"))

    assert order.status == S.SUBMITTED, "a refused duplicate leaves the order in flight"
    assert len(creates(venue, server)) == 2 and len(venue.orders(server)) == 1
    order = order_resolve(order=order)
    assert order.status == S.FILLED
    assert Fill.objects.filter(order=order).count() == 1


def test_canceling_a_resting_limit_order_cancels_it_at_the_venue(
    venue, server, account, venue_market
) -> None:
    order = Order.objects.create(
        account=account,
        market=venue_market,
        client_order_id="qtvenue0004",
        side="BUY",
        order_type="limit",
        quantity=Decimal("0.01"),
        price=Decimal("30000"),
    )
    order = order_submit(order=order, reference_price=Decimal("40000"))
    assert order.status == S.ACCEPTED

    order = order_cancel(order=order, cause="operator")

    assert order.status == S.CANCELED
    assert [o.status for o in venue.orders(server)] == ["CANCELED"]


def test_a_wrong_secret_is_refused_by_the_venue(venue, server, account) -> None:
    intruder = make_account(venue, server, name="intruder", secret="not-the-secret")

    with pytest.raises(OrderRejected, match="authentication failed"):
        adapter_for(intruder).balances()


@pytest.mark.parametrize("venue", FUTURES, indirect=True)
def test_futures_margin_mode_and_leverage_are_set_before_the_first_order(
    venue, server, account, venue_market
) -> None:
    assert buy(account, venue_market, "0.01", "qtvenue0005") is not None

    position = venue.position(server)
    assert (position.leverage, position.margin_mode) == (3, "isolated")
    paths = [path for _, path, _ in server.requests()]
    settings_at = max(i for i, p in enumerate(paths) if "everage" in p or "argin" in p)
    assert settings_at < paths.index(venue.create[1])

    # A restarted worker sets them again; the venue's "already so" is not an error.
    _clients.clear()
    assert buy(account, venue_market, "0.01", "qtvenue0006") is not None
    assert len(venue.orders(server)) == 2
    assert position.qty == Decimal("0.02")


@pytest.mark.parametrize(
    ("code", "market_type", "api", "sandbox", "production"),
    [
        ("binance", "spot", "private", "testnet.binance.vision", "api.binance.com"),
        ("binance", "futures", "fapiPrivate", "testnet.binancefuture.com", "fapi.binance.com"),
        ("bybit", "spot", "private", "api-testnet.", "api."),
        ("bybit", "futures", "private", "api-testnet.", "api."),
    ],
)
def test_a_testnet_account_talks_to_the_sandbox_and_a_live_one_to_production(
    db, code, market_type, api, sandbox, production
) -> None:
    _clients.clear()
    exchange = market_register(exchange_code=code, symbol="BTC/USDT").exchange
    common = {"exchange": exchange, "market_type": market_type}
    testnet = ExchangeAccount.objects.create(name="t", mode="testnet", **common)
    live = ExchangeAccount.objects.create(name="l", mode="live", **common)
    override = ExchangeAccount.objects.create(
        name="o", mode="testnet", api_url_override="http://127.0.0.1:9", **common
    )

    def url(account: ExchangeAccount) -> str:
        return str(ccxt_for_account(account).urls["api"][api])

    assert url(testnet).startswith(f"https://{sandbox}")
    assert url(live).startswith(f"https://{production}")
    # The override keeps the sandbox's paths and sends them to the loopback host.
    sandbox_path = url(testnet).split("/", 3)[3:]
    assert url(override) == "/".join(["http://127.0.0.1:9", *sandbox_path])
    _clients.clear()


@pytest.mark.parametrize("code", ["kucoin", "coinbase"])
def test_a_testnet_account_on_an_exchange_without_a_sandbox_needs_an_explicit_url(db, code) -> None:
    _clients.clear()
    exchange = market_register(exchange_code=code, symbol="BTC/USDT").exchange
    account = ExchangeAccount.objects.create(name="t", mode="testnet", exchange=exchange)

    with pytest.raises(OrderRejected, match="no sandbox"):
        ccxt_for_account(account)

    account.api_url_override = "http://127.0.0.1:9"
    urls = ccxt_for_account(account).urls["api"]
    assert all(str(url).startswith("http://127.0.0.1:9") for url in urls.values())
    _clients.clear()
