"""An order that filled at the venue ends filled here, even when the venue's first look-up
forgets it exactly as its documentation allows; only an answer that covers the order's
whole lifetime may call an order rejected.

- Bybit (docs/v5/order/open-order.mdx): order/realtime keeps open orders and "a maximum of
  recent 500 closed status records"; after a restart closed orders "should only be queried
  through order history" (docs/v5/order/order-list.mdx).
- KuCoin classic (kucoin-api-docs "Get Single Active Order by clientOid"): "the order does
  not exists if the order does not exist or has been settled".
- Binance USDⓈ-M futures ("Query Order"): orders older than 90 days "will not be found"
  (nor by All Orders); their fills are still in userTrades.
- Binance spot (rest-api.md "Query order"): a filled order is never archived (errors.md
  -2026 archives only CANCELED/EXPIRED orders with no executed quantity).
- Coinbase (Advanced Trade "Get Order"): looks up by Coinbase's own order id only; an order
  whose answer was lost has none, and List Orders since the intent finds it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from marketdata.models import Market
from marketdata.services.sync import market_register
from trading.adapters import adapter_for
from trading.models import ExchangeAccount, Fill, Order, Position
from trading.services.accounts import account_keys_set
from trading.services.orders import order_intent_create
from trading.services.submission import order_resolve
from trading.tests.venues import buy, finest_market, reconciled_account
from venues.binance import LoopbackExchange
from venues.binance_futures import BinanceFuturesLoopback
from venues.bybit import BybitLoopback
from venues.coinbase import CoinbaseLoopback, cdp_secret, order_uuid
from venues.kucoin import KucoinLoopback
from venues.orders import NewOrder

S = Order.Status
KEY = "qt-lookup-key-5c0d"
SECRET = "qt-lookup-secret-never-logged-77e1"
PASSPHRASE = "qt-lookup-passphrase-3a9f"


CB_KEY = "organizations/qt-org-7f3e/apiKeys/qt-lookup-key-91b2"
CB_SECRET = cdp_secret()  # a CDP key's PEM EC secret, made for this run


@dataclass(frozen=True)
class Venue:
    code: str
    market_type: str
    server: Callable[..., Any]
    options: dict[str, Any]
    quote: str = "USDT"
    key: str = KEY
    secret: str = SECRET

    @property
    def symbol(self) -> str:
        return f"BTC/{self.quote}"


KUCOIN = {"balances": {"USDT": "100000"}, "api_passphrase": PASSPHRASE}
VENUES = {
    "binance-spot": Venue("binance", "spot", LoopbackExchange, {"symbols": ["BTCUSDT"]}),
    "binance-futures": Venue("binance", "futures", BinanceFuturesLoopback, {}),
    "bybit-spot": Venue(
        "bybit", "spot", BybitLoopback, {"balances": {"USDT": "60000"}, "margin": "40000"}
    ),
    "bybit-futures": Venue(
        "bybit", "futures", BybitLoopback, {"balances": {"USDT": "60000"}, "margin": "40000"}
    ),
    "kucoin-hf": Venue("kucoin", "spot", KucoinLoopback, {"hf": True, **KUCOIN}),
    "kucoin-classic": Venue("kucoin", "spot", KucoinLoopback, {"hf": False, **KUCOIN}),
    "coinbase": Venue(
        "coinbase",
        "spot",
        CoinbaseLoopback,
        {"balances": {"USD": "100000"}},
        quote="USD",
        key=CB_KEY,
        secret=CB_SECRET,
    ),
}


@pytest.fixture
def venue(request: pytest.FixtureRequest) -> Venue:
    return VENUES[request.param]


@pytest.fixture
def server(venue: Venue) -> Iterator[Any]:
    with venue.server(api_key=venue.key, api_secret=venue.secret, **venue.options) as ex:
        dash = venue.code in ("kucoin", "coinbase")
        ex.set_price(f"BTC-{venue.quote}" if dash else f"BTC{venue.quote}", "40000")
        yield ex


@pytest.fixture
def account(db, venue: Venue, server: Any, settings) -> Iterator[ExchangeAccount]:
    def make() -> ExchangeAccount:
        account = ExchangeAccount.objects.create(
            name=f"lookups-{venue.code}",
            exchange=market_register(exchange_code=venue.code, symbol=venue.symbol).exchange,
            mode=ExchangeAccount.Mode.TESTNET,
            market_type=venue.market_type,
            quote_currency=venue.quote,
            cash=Decimal("100000"),
            starting_cash=Decimal("100000"),
            api_url_override=server.url,
        )
        account_keys_set(
            account=account,
            api_key=venue.key,
            api_secret=venue.secret,
            api_password=PASSPHRASE if venue.code == "kucoin" else "",
            actor="alice",
        )
        return account

    yield from reconciled_account(make, settings)


@pytest.fixture
def market(account: ExchangeAccount, venue: Venue) -> Market:
    return finest_market(account, venue.symbol)


def every(*names: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("venue", list(names), indirect=True)


def intent(account: ExchangeAccount, market: Market, coid: str, quantity: str = "0.01") -> Order:
    """A BUY persisted as an intent (NEW), as the engine makes it before any network call."""
    return order_intent_create(
        account_id=account.pk,
        market_id=market.pk,
        signal_id=None,
        side="BUY",
        quantity=Decimal(quantity),
        client_order_id=coid,
        strategy="test",
        reason="test",
    )


def in_flight_since_minutes(order: Order) -> Order:
    """As if sent five minutes ago and never answered (past any not-found grace)."""
    Order.objects.filter(pk=order.pk).update(
        status=S.SUBMITTED, submitted_at=timezone.now() - timedelta(minutes=5)
    )
    order.refresh_from_db()
    return order


def answer_lost(account: ExchangeAccount, market: Market, coid: str) -> Order:
    """An order the venue took and filled whose answer never came back: in flight, no
    exchange id, submitted long enough ago that the not-found grace has passed."""
    order = intent(account, market, coid)
    adapter_for(account).submit(order, reference_price=Decimal("40000"), at=order.created_at)
    Order.objects.filter(pk=order.pk).update(
        status=S.SUBMITTED, submitted_at=timezone.now() - timedelta(minutes=5)
    )
    order.refresh_from_db()
    return order


def assert_filled_with_its_position(order: Order, quantity: str = "0.01") -> None:
    order.refresh_from_db()
    assert order.status == S.FILLED, order.events.values_list("cause", flat=True)
    fills = list(Fill.objects.filter(order=order))
    assert sum(f.quantity for f in fills) == Decimal(quantity)
    assert all(f.filled_at.year >= 2026 for f in fills), "fill time is the venue's, not 1970"
    position = Position.objects.get(account=order.account, market=order.market)
    assert position.quantity == Decimal(quantity)


def venue_book(venue: Venue, server: Any) -> Any:
    if venue.code == "binance" and venue.market_type == "futures":
        return server.book
    if venue.code == "bybit" and venue.market_type == "futures":
        return server.linear
    return server.ledger if venue.code == "binance" else server.spot


def venue_orders(venue: Venue, server: Any) -> list[Any]:
    book = venue_book(venue, server)
    with book.lock:
        return list(book.orders.values())


def forget_at_the_venue(venue: Venue, server: Any) -> None:
    """Make the venue's first look-up forget every closed order, as its docs allow."""
    if venue.code == "bybit":
        server.restart()
    elif venue.code == "binance" and venue.market_type == "futures":
        server.advance(91 * 86_400)
    # KuCoin classic forgets settled orders on its by-clientOid route by itself; Binance
    # spot never forgets a filled order.


# Binance futures forgets a filled order only past 90 days, and then by client id nothing
# at all can find it: with no exchange id there is no look-up left (the next test covers
# the case with one).
@every(*(name for name in VENUES if name != "binance-futures"))
def test_a_filled_order_whose_answer_was_lost_ends_filled_after_the_venue_forgets_it(
    venue, server, account, market, settings
) -> None:
    settings.QT_NOT_FOUND_GRACE_S = 0
    order = answer_lost(account, market, "qtlookup0001")
    forget_at_the_venue(venue, server)

    order = order_resolve(order=order)

    assert_filled_with_its_position(order)


@every(*VENUES)
def test_a_filled_order_ends_filled_after_the_venues_first_look_up_forgets_it(
    venue, server, account, market, settings
) -> None:
    settings.QT_NOT_FOUND_GRACE_S = 0
    # Acknowledged with its exchange id, fills not heard yet (an ACK-type answer, a stream
    # that was down): the look-up by exchange id is what settles it.
    order = answer_lost(account, market, "qtlookup0002")
    (placed,) = [
        o for o in venue_orders(venue, server) if o.client_order_id == order.client_order_id
    ]
    exchange_id = order_uuid(placed.order_id) if venue.code == "coinbase" else placed.order_id
    Order.objects.filter(pk=order.pk).update(status=S.ACCEPTED, exchange_order_id=str(exchange_id))
    order.refresh_from_db()
    forget_at_the_venue(venue, server)

    order = order_resolve(order=order)

    assert_filled_with_its_position(order)


@every("bybit-spot")
def test_bybit_realtime_forgets_a_filled_order_past_500_newer_closed_ones_and_history_finds_it(
    venue, server, account, market, settings
) -> None:
    settings.QT_NOT_FOUND_GRACE_S = 0
    order = answer_lost(account, market, "qtlookup0003")
    for _ in range(500):  # placed by someone else on the same account, straight on the book
        server.spot.place(NewOrder("BTCUSDT", "BUY", "MARKET", quantity=Decimal("0.0002")))
    rows = server._realtime({"category": "spot", "orderLinkId": "qtlookup0003"})["list"]
    assert rows == [], "the realtime index keeps only the last 500 closed orders"

    order = order_resolve(order=order)

    assert_filled_with_its_position(order)
    assert server.requests("/v5/order/history"), "found through order history"


@every("bybit-spot", "kucoin-classic", "binance-spot")
def test_an_order_the_venue_never_took_is_rejected_once_every_index_says_so(
    venue, server, account, market, settings
) -> None:
    settings.QT_NOT_FOUND_GRACE_S = 0
    order = in_flight_since_minutes(intent(account, market, "qtlookup0004"))

    order = order_resolve(order=order)

    assert order.status == S.REJECTED
    assert "not found at the exchange" in order.events.last().cause


@every("bybit-spot")
def test_an_order_not_yet_visible_stays_in_flight_within_the_grace(
    venue, server, account, market, settings
) -> None:
    # docs/v5/order/create-order.mdx: "This request is asynchronous".
    settings.QT_NOT_FOUND_GRACE_S = 60
    server.visibility_lag_s = 30
    order = buy(account, market, "0.01", "qtlookup0005")
    assert order is not None

    order = order_resolve(order=order)

    assert order.status in (S.SUBMITTED, S.ACCEPTED)
    assert not Fill.objects.filter(order=order).exists()


# --- two-sided, fail-closed reconciliation ----------------------------------------------


@every("binance-spot", "bybit-spot", "kucoin-classic", "coinbase")
def test_a_venue_that_holds_more_than_our_position_halts_the_account_with_an_incident(
    venue, server, account, market, client_as, alice
) -> None:
    from risk.models import Incident, TradingState
    from trading.services.reconcile import account_reconcile

    # Bought at the venue, never recorded here (the fill the old resolver dropped).
    adapter_for(account).submit(
        intent(account, market, "qtlookup0100"),
        reference_price=Decimal("40000"),
        at=timezone.now(),
    )
    Order.objects.filter(client_order_id="qtlookup0100").delete()

    report = account_reconcile(account=account)

    assert not report.ok
    assert any("we hold 0, the exchange 0.01" in m and "holds more" in m for m in report.mismatches)
    assert any(m.startswith(f"{venue.quote}: our cash 100,000.00") for m in report.mismatches)
    assert TradingState.objects.get(account=account).state == TradingState.State.HALTED
    incident = Incident.objects.get(code="RECONCILIATION_FAILED", account=account)
    assert "holds more by 0.01" in incident.detail
    account.refresh_from_db()
    assert account.needs_reconcile and account.cash == Decimal("100000"), "nothing adopted"
    page = client_as(alice).get("/settings/accounts/").content.decode()
    assert "holds more by 0.01" in page and "account_adopt_holdings" in page


@every("binance-spot")
def test_an_operator_adopts_the_venues_holdings_and_the_account_reconciles(
    venue, server, account, market
) -> None:
    from django.core.management import call_command

    from risk.models import AuditEvent
    from trading.services.reconcile import account_reconcile

    ours = buy(account, market, "0.01", "qtlookup0101")
    assert ours is not None and ours.status == S.FILLED
    # A second buy at the venue (by hand, another program) that we never recorded.
    server.ledger.place(NewOrder("BTCUSDT", "BUY", "MARKET", quantity=Decimal("0.02")))
    assert not account_reconcile(account=account).ok

    call_command("account_adopt_holdings", account.name, reason="bought by hand at the venue")

    account.refresh_from_db()
    position = Position.objects.get(account=account, market=market)
    assert position.quantity == Decimal("0.03")
    assert not account.needs_reconcile and account_reconcile(account=account).ok
    adopted = AuditEvent.objects.get(action="account.holdings_adopted")
    assert adopted.payload["reason"] == "bought by hand at the venue"


@every("binance-spot")
def test_one_order_the_venue_cannot_look_up_does_not_stop_the_resolver_batch(
    venue, server, account, market, settings, caplog
) -> None:
    from trading.services.submission import orders_resolve_in_flight

    settings.QT_NOT_FOUND_GRACE_S = 0
    delisted = market_register(exchange_code="binance", symbol="ETH/USDT")  # not at the venue
    stuck = in_flight_since_minutes(intent(account, delisted, "qtlookup0200", quantity="0.1"))
    settled = answer_lost(account, market, "qtlookup0201")

    orders_resolve_in_flight(older_than=timedelta(0), account=account)

    stuck.refresh_from_db()
    assert stuck.status == S.SUBMITTED, "a refused look-up is no answer: still in flight"
    assert "cannot resolve qtlookup0200" in caplog.text
    assert_filled_with_its_position(settled)


@every("binance-spot", "kucoin-classic")
def test_the_resolver_reads_the_history_past_a_full_page_to_the_order(
    venue, server, account, market, settings
) -> None:
    settings.QT_NOT_FOUND_GRACE_S = 0
    symbol = "BTC-USDT" if venue.code == "kucoin" else "BTCUSDT"
    book = venue_book(venue, server)
    first = intent(account, market, "qtlookup0300")
    for _ in range(500):  # another program on the same account, after our intent
        book.place(NewOrder(symbol, "BUY", "MARKET", quantity=Decimal("0.0002")))
    order = answer_lost(account, market, "qtlookup0301")  # the 501st since the intent
    never_sent = in_flight_since_minutes(first)

    assert_filled_with_its_position(order_resolve(order=order))
    assert order_resolve(order=never_sent).status == S.REJECTED, "the pages reached the present"
