from __future__ import annotations

from datetime import datetime

from celery import shared_task

from marketdata.models import Market
from trading.services.execution import signal_execute
from trading.services.signals import signal_generate


@shared_task(ignore_result=True)
def resolve_in_flight_orders() -> None:
    """Settle orders whose outcome was unclear, by client order id."""
    from trading.services.submission import orders_resolve_in_flight

    orders_resolve_in_flight()


@shared_task(ignore_result=True)
def catch_up_signals() -> None:
    """Re-drive a closed bar whose signal task was lost (see signals_catch_up)."""
    from trading.services.signals import signals_catch_up

    signals_catch_up()


@shared_task(ignore_result=True)
def reconcile_accounts() -> None:
    """Reconcile every exchange-backed account against its exchange."""
    from trading.services.reconcile import accounts_reconcile

    accounts_reconcile()


@shared_task(ignore_result=True, acks_late=True)
def process_closed_candle(market_id: int, timeframe: str, open_time: str) -> None:
    """Signal on a newly closed candle, then act on it (both idempotent on redelivery)."""
    market = Market.objects.select_related("exchange").get(pk=market_id)
    signal = signal_generate(
        market=market, timeframe=timeframe, candle_time=datetime.fromisoformat(open_time)
    )
    if signal is not None:
        signal_execute(signal=signal)


@shared_task(ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def execute_decision(
    account_id: int,
    market_id: int,
    side: str,
    quantity: str,
    decision: str,
    reference_price: str,
    strategy: str = "manual",
) -> None:
    """Execute one decision (idempotent: its client order id derives from `decision`)."""
    from decimal import Decimal

    from trading.models import ExchangeAccount
    from trading.services.execution import Intent, decision_execute
    from trading.services.ids import client_order_id

    account = ExchangeAccount.objects.select_related("exchange").get(pk=account_id)
    market = Market.objects.select_related("exchange").get(pk=market_id)
    decision_execute(
        account=account,
        market=market,
        intent=Intent(side, Decimal(quantity), f"{strategy} decision {decision}"),
        client_order_id=client_order_id(
            strategy=strategy, account_id=account_id, market_id=market_id, decision=decision
        ),
        reference_price=Decimal(reference_price),
        strategy=strategy,
    )


@shared_task(ignore_result=True, acks_late=True)
def flatten_positions(request_id: int) -> None:
    """Carry out an operator's flatten request (idempotent per request and position)."""
    from trading.services.execution import positions_flatten

    positions_flatten(request_id=request_id)


@shared_task(ignore_result=True, acks_late=True)
def run_backtest(run_id: int) -> None:
    """Run a stored backtest, recording its progress and results."""
    from trading.services.backtests import backtest_run

    backtest_run(run_id=run_id)
