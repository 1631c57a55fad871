"""The chaos run: many orders through the real engine, Celery and the database against the
loopback exchange, with randomized faults and worker kills; then a full accounting.

It answers one question: after timeouts, 5xx, 429s, dropped connections, partial and
delayed fills and SIGKILLed workers, does every decision end in exactly one exchange order
(or a recorded rejection), with our books equal to the exchange's?
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

KEY, SECRET = "chaos-api-key-0001", "chaos-api-secret-0001"
QUANTITY = Decimal("0.001")
PRICE = Decimal("40000")
# Fault mix on order placement (probability per request) and on order look-ups.
SUBMIT_FAULTS: list[tuple[str, float, dict]] = [
    ("accept_then_timeout", 0.04, {"mode": "drop"}),
    ("accept_then_timeout", 0.03, {"mode": "delay", "delay_s": 2.5}),
    ("http_5xx", 0.03, {"status": 503, "execute": False}),
    ("http_5xx", 0.03, {"status": 502, "execute": True}),
    ("rate_limit_429", 0.01, {}),
    ("drop_connection", 0.03, {}),
    ("partial_fill", 0.05, {"parts": 3}),
    ("delay_fill", 0.05, {"delay_s": 1.0}),
]
LOOKUP_FAULTS: list[tuple[str, float, dict]] = [("http_5xx", 0.05, {"status": 503})]


@dataclass
class ChaosReport:
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


def _account(exchange: LoopbackExchange, run: str) -> ExchangeAccount:
    market = market_register(exchange_code="binance", symbol="BTC/USDT")
    account = ExchangeAccount.objects.create(
        name=f"chaos-{run}",
        exchange=market.exchange,
        mode=ExchangeAccount.Mode.TESTNET,
        cash=Decimal("100000"),
        starting_cash=Decimal("100000"),
        api_url_override=exchange.url,
        strategy_enabled=False,
    )
    account_keys_set(account=account, api_key=KEY, api_secret=SECRET, actor="system:chaos")
    limits_wide_open(account)
    return account


def chaos_run(
    *,
    orders: int,
    seed: int,
    kills: bool = True,
    say: Callable[[str], None] = print,
    timeout_s: float = 900,
) -> ChaosReport:
    rng = random.Random(seed)
    run = f"{seed}-{uuid.uuid4().hex[:8]}"
    report = ChaosReport(orders=orders)
    started = time.monotonic()
    grace = settings.QT_NOT_FOUND_GRACE_S
    with LoopbackExchange(
        port=0,
        seed=seed,
        api_key=KEY,
        api_secret=SECRET,
        symbols=["BTCUSDT"],
        balances={"USDT": "100000"},
    ) as exchange:
        exchange.set_price("BTCUSDT", PRICE)
        _clients.clear()
        account = _account(exchange, run)
        first = account_reconcile(account=account)
        if not first.ok:
            raise RuntimeError(f"chaos account did not reconcile: {first.mismatches}")
        market = market_register(exchange_code="binance", symbol="BTC/USDT")
        for kind, p, params in SUBMIT_FAULTS:
            exchange.inject(kind, endpoint="POST /api/v3/order", probability=p, **params)
        for kind, p, params in LOOKUP_FAULTS:
            exchange.inject(kind, endpoint="GET /api/v3/order", probability=p, **params)

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
        coids = set(coid_of.values())
        say(f"chaos {run}: {orders} orders queued on {queue}")
        try:
            deadline = time.monotonic() + timeout_s
            # Kills follow progress (every 5–60 decisions; closer in short runs), not the
            # clock: on a slow machine a clock-driven kill hits workers still starting up.
            spacing = max(6, min(60, orders // 4))
            next_kill = rng.randint(5, spacing)
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
                orders_resolve_in_flight(older_than=timedelta(seconds=1), account=account)
                time.sleep(0.5)
        finally:
            worker.stop()
        # The outage ends; settle everything still in flight, then reconcile.
        exchange.clear_faults()
        exchange.fill_pending()
        settle_until = time.monotonic() + grace + 90  # outlasts any exchange back-off
        unsettled = (*OPEN, Order.Status.NEW)
        while Order.objects.filter(account=account, status__in=unsettled).exists():
            if time.monotonic() > settle_until:
                break
            exchange.fill_pending()
            orders_resolve_in_flight(older_than=timedelta(0), account=account)
            time.sleep(0.5)
        account.refresh_from_db()
        account_reconcile(account=account)
        _account_for(report, account, exchange, coids)
        report.faults_injected = dict(exchange.faults_injected)
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


def _account_for(
    report: ChaosReport, account: ExchangeAccount, exchange: LoopbackExchange, coids: set[str]
) -> None:
    ours = [o for o in exchange.orders("BTCUSDT") if str(o.get("clientOrderId")) in coids]
    report.exchange_orders = len(ours)
    per_coid: Counter[str] = Counter(str(o["clientOrderId"]) for o in ours)
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
    trades = exchange.trades("BTCUSDT")
    by_order: dict[str, Decimal] = {}
    for t in trades:
        key = str(t["orderId"])
        by_order[key] = by_order.get(key, Decimal(0)) + Decimal(str(t["qty"]))
    for coid, order in local.items():
        theirs = next((o for o in ours if o["clientOrderId"] == coid), None)
        exchange_qty = by_order.get(str(theirs["orderId"]), Decimal(0)) if theirs else Decimal(0)
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
