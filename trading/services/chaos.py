"""The chaos run: many orders through the real engine, Celery and the database against a
loopback venue, with randomized faults and worker kills; then a full accounting.

It answers one question: after timeouts, 5xx, 429s, dropped connections, partial and
delayed fills and SIGKILLed workers, does every decision end in exactly one exchange order
(or a recorded rejection), with our books equal to the venue's? Each venue runs with its
documented behaviours on (`VENUES`): Binance's duplicate-id rule and rate limits, Bybit's
asynchronous create and its restarts, KuCoin classic's active-only look-up by client id.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import DecimalField, IntegerField

from marketdata.services.sync import market_register
from quantum.processes import WorkerProcess, child_env
from risk.models import RiskDecision, RiskLimits
from trading.adapters.ccxt_adapter import _clients
from trading.models import ExchangeAccount, Fill, Order, Position
from trading.services.accounts import account_keys_set
from trading.services.ids import client_order_id
from trading.services.reconcile import account_reconcile
from trading.services.submission import OPEN, orders_resolve_in_flight
from venues.binance import LoopbackExchange
from venues.binance_futures import BinanceFuturesLoopback
from venues.bybit import BybitLimits, BybitLoopback
from venues.coinbase import API_KEY as COINBASE_KEY
from venues.coinbase import CoinbaseLoopback, cdp_secret
from venues.faults import make_rule
from venues.kucoin import KucoinLimits, KucoinLoopback

KEY, SECRET = "chaos-api-key-0001", "chaos-api-secret-0001"
PASSPHRASE = "chaos-api-passphrase-0001"  # noqa: S105
QUANTITY = Decimal("0.001")
PRICE = Decimal("40000")
# Fault mix on order placement (probability per request) and on order look-ups. The fill
# faults (partial, delayed) live in the Binance spot loopback's matching only.
SUBMIT_FAULTS: list[tuple[str, float, dict]] = [
    ("accept_then_timeout", 0.04, {"mode": "drop"}),
    ("accept_then_timeout", 0.03, {"mode": "delay", "delay_s": 2.5}),
    ("http_5xx", 0.03, {"status": 503, "execute": False}),
    ("http_5xx", 0.03, {"status": 502, "execute": True}),
    ("rate_limit_429", 0.01, {}),
    ("drop_connection", 0.03, {}),
]
FILL_FAULTS: list[tuple[str, float, dict]] = [
    ("partial_fill", 0.05, {"parts": 3}),
    ("delay_fill", 0.05, {"delay_s": 1.0}),
]
LOOKUP_FAULTS: list[tuple[str, float, dict]] = [("http_5xx", 0.05, {"status": 503})]
# Bybit restarts this often during a run (docs/v5/order/open-order.mdx: after one, closed
# orders "should only be queried through order history"); its create shows this late.
BYBIT_RESTART_S = 3.0
BYBIT_VISIBILITY_LAG_S = 0.3


@dataclass(frozen=True)
class ChaosVenue:
    """A venue the run drives: its loopback, the account that trades there, its endpoints."""

    code: str  # the exchange code of the account
    market_type: str
    quote: str
    price_symbol: str  # the loopback's own market id
    create: str  # "METHOD path" of order placement
    lookups: tuple[str, ...]  # "METHOD path" (templates allowed) of order look-ups
    history: tuple[str, ...]  # paths that look over an order's lifetime (order history)
    build: Callable[[str], Any]  # secret -> the loopback, not started
    book: Callable[[Any], Any]  # loopback -> its ledger or FuturesBook
    restart_s: float = 0.0  # how often the venue restarts (Bybit), 0: never
    key: str = KEY

    @property
    def symbol(self) -> str:
        return f"BTC/{self.quote}"


def _bybit(market_type: str) -> ChaosVenue:
    return ChaosVenue(
        "bybit",
        market_type,
        "USDT",
        "BTCUSDT",
        "POST /v5/order/create",
        ("GET /v5/order/realtime", "GET /v5/order/history", "GET /v5/execution/list"),
        ("/v5/order/history",),
        lambda secret: BybitLoopback(
            api_key=KEY,
            api_secret=secret,
            # One unified wallet: 60000 USDT in spot plus 40000 USDT of margin.
            balances={"USDT": "60000"},
            margin="40000",
            visibility_lag_s=BYBIT_VISIBILITY_LAG_S,
            rate_limits=BybitLimits(),
        ),
        (lambda ex: ex.spot) if market_type == "spot" else (lambda ex: ex.linear),
        restart_s=BYBIT_RESTART_S,
    )


def _kucoin(hf: bool) -> ChaosVenue:
    root = "/api/v1/hf/orders" if hf else "/api/v1/orders"
    by_client = f"{root}/client-order/{{clientOid}}" if hf else "/api/v1/order/client-order/{id}"
    return ChaosVenue(
        "kucoin",
        "spot",
        "USDT",
        "BTC-USDT",
        f"POST {root}",
        (f"GET {root}/{{orderId}}", f"GET {by_client}", f"GET {root}" + ("/done" if hf else "")),
        (f"{root}/done" if hf else root,),
        lambda secret: KucoinLoopback(
            api_key=KEY,
            api_secret=secret,
            api_passphrase=PASSPHRASE,
            balances={"USDT": "100000"},
            hf=hf,
            rate_limits=KucoinLimits(),
        ),
        lambda ex: ex.spot,
    )


VENUES: dict[str, ChaosVenue] = {
    # Binance spot: the duplicate rule ("unique among open orders") and the weight and
    # order-count limits are on as the loopback builds them.
    "binance": ChaosVenue(
        "binance",
        "spot",
        "USDT",
        "BTCUSDT",
        "POST /api/v3/order",
        ("GET /api/v3/order",),
        ("/api/v3/allOrders",),
        lambda secret: LoopbackExchange(
            api_key=KEY, api_secret=secret, symbols=["BTCUSDT"], balances={"USDT": "100000"}
        ),
        lambda ex: ex.ledger,
    ),
    "binance-futures": ChaosVenue(
        "binance",
        "futures",
        "USDT",
        "BTCUSDT",
        "POST /fapi/v1/order",
        ("GET /fapi/v1/order", "GET /fapi/v1/userTrades"),
        ("/fapi/v1/allOrders",),
        lambda secret: BinanceFuturesLoopback(api_key=KEY, api_secret=secret, margin="100000"),
        lambda ex: ex.book,
    ),
    "bybit": _bybit("spot"),
    "bybit-futures": _bybit("futures"),
    "kucoin": _kucoin(hf=True),
    "kucoin-classic": _kucoin(hf=False),
    "coinbase": ChaosVenue(
        "coinbase",
        "spot",
        "USD",
        "BTC-USD",
        "POST /api/v3/brokerage/orders",
        (
            "GET /api/v3/brokerage/orders/historical/batch",
            "GET /api/v3/brokerage/orders/historical/{order_id}",
            "GET /api/v3/brokerage/orders/historical/fills",
        ),
        ("/api/v3/brokerage/orders/historical/batch",),
        lambda secret: CoinbaseLoopback(
            api_key=COINBASE_KEY, api_secret=secret, balances={"USD": "100000"}
        ),
        lambda ex: ex.spot,
        key=COINBASE_KEY,
    ),
}


@dataclass
class ChaosReport:
    venue: str = "binance"
    orders: int = 0
    exchange_orders: int = 0
    duplicates: int = 0
    lost: int = 0
    position_mismatches: int = 0
    faults_injected: dict[str, int] = field(default_factory=dict)
    worker_kills: int = 0
    # Decisions sent again (same id) after their message was lost with a killed worker.
    resent: int = 0
    filled: int = 0
    rejected: int = 0
    expired: int = 0  # intents never sent: their worker died and they outlived QT_INTENT_TTL_S
    denied: int = 0
    seconds: float = 0.0
    # The venue's documented behaviours seen in the run: restarts, look-ups over the
    # order history (after the first look-up missed), and rate-limit refusals.
    behaviours: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return asdict(self)


def limits_wide_open(account: ExchangeAccount) -> RiskLimits:
    """Every limit of the account wide open: a run that measures execution, not risk."""
    limits = RiskLimits(account=account)
    for f in RiskLimits._meta.get_fields():
        if not f.name.startswith("max_"):
            continue
        if isinstance(f, DecimalField):
            setattr(limits, f.name, Decimal(10) ** (f.max_digits - f.decimal_places - 1))
        elif isinstance(f, IntegerField):
            setattr(limits, f.name, 1_000_000)
    limits.save()
    return limits


def _account(venue: ChaosVenue, url: str, secret: str, run: str) -> ExchangeAccount:
    market = market_register(exchange_code=venue.code, symbol=venue.symbol)
    account = ExchangeAccount.objects.create(
        name=f"chaos-{run}",
        exchange=market.exchange,
        mode=ExchangeAccount.Mode.TESTNET,
        market_type=venue.market_type,
        quote_currency=venue.quote,
        cash=Decimal("100000"),
        starting_cash=Decimal("100000"),
        api_url_override=url,
        strategy_enabled=False,
    )
    account_keys_set(
        account=account,
        api_key=venue.key,
        api_secret=secret,
        api_password=PASSPHRASE if venue.code == "kucoin" else "",
        actor="system:chaos",
    )
    limits_wide_open(account)
    return account


def _requests(server: Any) -> list[tuple[str, str]]:
    """(method, path) of every request the loopback has served so far."""
    if isinstance(server, LoopbackExchange):
        return [tuple(r.split(" ", 1)) for r in server.requests()]  # type: ignore[misc]
    return [(method, path) for method, path, _ in server.requests()]


def _behaviours(venue: ChaosVenue, server: Any, restarts: int) -> dict[str, Any]:
    served = _requests(server)
    seen: dict[str, Any] = {
        "history_lookups": sum(path in venue.history for _, path in served),
        "requests": len(served),
    }
    if venue.restart_s:
        seen |= {"restarts": restarts, "visibility_lag_s": server.visibility_lag_s}
    limits = getattr(server, "limits", None)
    refused = getattr(limits, "refused", None)
    if refused is not None:  # the venue's own rate limits (not the injected 429s)
        seen["rate_limit_refusals"] = refused if isinstance(refused, int) else dict(refused)
    return seen


def chaos_run(
    *,
    orders: int,
    seed: int,
    venue: str = "binance",
    kills: bool = True,
    say: Callable[[str], None] = print,
    timeout_s: float = 900,
) -> ChaosReport:
    """Place `orders` market buys on `venue` under faults and worker kills; account for all."""
    where = VENUES[venue]
    rng = random.Random(seed)
    run = f"{seed}-{uuid.uuid4().hex[:8]}"
    report = ChaosReport(venue=venue, orders=orders)
    started = time.monotonic()
    grace = settings.QT_NOT_FOUND_GRACE_S
    secret = cdp_secret() if where.code == "coinbase" else SECRET
    restarts = 0
    with where.build(secret) as exchange:
        exchange.faults.reseed(seed)
        exchange.set_price(where.price_symbol, PRICE)
        _clients.clear()
        account = _account(where, exchange.url, secret, run)
        first = account_reconcile(account=account)
        if not first.ok:
            raise RuntimeError(f"chaos account did not reconcile: {first.mismatches}")
        market = market_register(exchange_code=where.code, symbol=where.symbol)
        plan = [(where.create, f) for f in SUBMIT_FAULTS]
        if isinstance(exchange, LoopbackExchange):
            plan += [(where.create, f) for f in FILL_FAULTS]
        plan += [(lookup, f) for lookup in where.lookups for f in LOOKUP_FAULTS]
        for endpoint, (kind, p, params) in plan:
            exchange.faults.add(make_rule(kind, endpoint=endpoint, probability=p, **params))

        queue = f"chaos-{run}"
        env = child_env(
            QT_BROKER_VISIBILITY_TIMEOUT="5",
            QT_EXCHANGE_TIMEOUT_MS="1500",
            QT_NOT_FOUND_GRACE_S=str(grace),
        )
        worker = WorkerProcess(queue, env)
        worker.start()
        from trading.tasks import execute_decision

        decisions = [f"chaos:{run}:{i}" for i in range(orders)]

        def send(decision: str) -> None:
            execute_decision.apply_async(
                (account.pk, market.pk, "BUY", str(QUANTITY), decision, str(PRICE), "chaos"),
                queue=queue,
            )

        for decision in decisions:
            send(decision)
        coid_of = {
            d: client_order_id(
                strategy="chaos", account_id=account.pk, market_id=market.pk, decision=d
            )
            for d in decisions
        }
        say(f"chaos {run} on {venue}: {orders} orders queued on {queue}")
        try:
            deadline = time.monotonic() + timeout_s
            # Kills follow progress (every 5–60 decisions; closer in short runs), not the
            # clock: on a slow machine a clock-driven kill hits workers still starting up.
            spacing = max(6, min(60, orders // 4))
            next_kill = rng.randint(5, spacing)
            next_restart = time.monotonic() + where.restart_s
            progress, progress_at = -1, time.monotonic()
            while time.monotonic() < deadline:
                # An order still NEW has not been sent: its worker may have died after the
                # intent, and the redelivered task (or the intent's expiry) settles it.
                done = (
                    Order.objects.filter(account=account).exclude(status=Order.Status.NEW).count()
                    + RiskDecision.objects.filter(account=account, approved=False).count()
                )
                if done >= orders:
                    break
                if done != progress:
                    progress, progress_at = done, time.monotonic()
                elif time.monotonic() - progress_at > STALL_S:
                    # Nothing moved for a while: a decision's message died with a worker
                    # (the Redis transport records a fetched message as unacked only after
                    # the pop, so a SIGKILL in between loses it). The decider sends it again
                    # under the same id — at most one order, whatever happened before.
                    report.resent += _resend_orphans(account, decisions, coid_of, send)
                    progress_at = time.monotonic()
                if kills and done >= next_kill:
                    worker.kill()  # mid-whatever it was doing: submit, fill, commit
                    report.worker_kills += 1
                    worker.start()
                    next_kill = done + rng.randint(5, spacing)
                if where.restart_s and time.monotonic() >= next_restart:
                    exchange.restart()
                    restarts += 1
                    next_restart = time.monotonic() + where.restart_s
                orders_resolve_in_flight(older_than=timedelta(seconds=1), account=account)
                time.sleep(0.5)
        finally:
            worker.stop()
        # The outage ends; settle everything still in flight, then reconcile.
        exchange.faults.clear()
        book = where.book(exchange)
        settle_until = time.monotonic() + grace + 90  # outlasts any exchange back-off
        unsettled = (*OPEN, Order.Status.NEW)
        while True:
            if hasattr(book, "fill_pending"):
                book.fill_pending()
            if not Order.objects.filter(account=account, status__in=unsettled).exists():
                break
            if time.monotonic() > settle_until:
                break
            orders_resolve_in_flight(older_than=timedelta(0), account=account)
            time.sleep(0.5)
        account.refresh_from_db()
        account_reconcile(account=account)
        _account_for(report, account, book)
        report.faults_injected = dict(exchange.faults.injected)
        report.behaviours = _behaviours(where, exchange, restarts)
    report.seconds = round(time.monotonic() - started, 1)
    return report


# Longer than a redelivery takes: the visibility timeout the run's workers get (5 s) plus
# the workers' 10 s sweep for unacknowledged messages, with room for a restart.
STALL_S = 30.0


def _resend_orphans(
    account: ExchangeAccount,
    decisions: list[str],
    coid_of: dict[str, str],
    send: Callable[[str], None],
) -> int:
    """Send again each decision whose order is still an unsent intent, and each decision
    with no order at all. A denial has no order either and cannot be told apart here: those
    are sent again only when they outnumber the denials (then one surely was lost)."""
    status = dict(Order.objects.filter(account=account).values_list("client_order_id", "status"))
    unsent = [d for d in decisions if status.get(coid_of[d]) == Order.Status.NEW]
    orphans = [d for d in decisions if coid_of[d] not in status]
    denied = RiskDecision.objects.filter(account=account, approved=False).count()
    again = unsent + (orphans if len(orphans) > denied else [])
    for decision in again:
        send(decision)
    return len(again)


def _account_for(report: ChaosReport, account: ExchangeAccount, book: Any) -> None:
    """Compare every decision, order and fill with the venue's book (a spot `Ledger` or a
    `FuturesBook`: both keep loopback `Order`s by id and `Trade`s). The loopback is the
    run's own, so every order in it is ours, whatever client id it came under."""
    with book.lock:
        ours = [(o.client_order_id, o.order_id) for o in book.orders.values()]
        by_order: dict[int, Decimal] = {}
        for t in book.trades:
            by_order[t.order_id] = by_order.get(t.order_id, Decimal(0)) + t.qty
    report.exchange_orders = len(ours)
    per_coid: Counter[str] = Counter(coid for coid, _ in ours)
    venue_id = dict(ours)
    report.duplicates = sum(n - 1 for n in per_coid.values())
    local = {o.client_order_id: o for o in Order.objects.filter(account=account)}
    denied = RiskDecision.objects.filter(account=account, approved=False).count()
    report.denied = denied
    report.filled = sum(o.status == Order.Status.FILLED for o in local.values())
    report.rejected = sum(o.status == Order.Status.REJECTED for o in local.values())
    report.expired = sum(o.status == Order.Status.CANCELED for o in local.values())
    # Lost: a decision with no order and no denial; an order still open; an exchange order
    # we do not know; or an order we think is rejected that the exchange has.
    unprocessed = max(0, report.orders - len(local) - denied)
    if unprocessed:
        report.lost += unprocessed
        report.problems.append(
            f"{unprocessed} decisions not processed before the time limit (still queued)"
        )
    for coid, order in local.items():
        if order.status in OPEN or order.status == Order.Status.NEW:
            report.lost += 1
            report.problems.append(f"{coid} still {order.status}")
        if order.status in (Order.Status.REJECTED, Order.Status.CANCELED) and coid in per_coid:
            report.lost += 1
            report.problems.append(f"{coid} {order.status} here but exists at the exchange")
    for coid in per_coid:
        if coid not in local:
            report.lost += 1
            report.problems.append(f"{coid} at the exchange but not here")
    # Position: every order's filled quantity equals the exchange's, and the totals agree.
    for coid, order in local.items():
        exchange_qty = by_order.get(venue_id[coid], Decimal(0)) if coid in venue_id else Decimal(0)
        if order.filled_quantity != exchange_qty:
            report.position_mismatches += 1
            report.problems.append(
                f"{coid}: filled {order.filled_quantity} here, {exchange_qty} at the exchange"
            )
    position = Position.objects.filter(account=account).first()
    held = position.quantity if position else Decimal(0)
    exchange_total = sum(by_order.values(), Decimal(0))
    fills_total = sum(
        Fill.objects.filter(order__account=account).values_list("quantity", flat=True),
        Decimal(0),
    )
    if held != exchange_total or (fills_total or Decimal(0)) != exchange_total:
        report.position_mismatches += 1
        report.problems.append(f"position {held}, fills {fills_total}, exchange {exchange_total}")
