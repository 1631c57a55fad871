"""First start (and every start): everything a new platform needs, idempotently."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command

from marketdata.models import Exchange, Market
from marketdata.services.sync import market_backfill, markets_configured
from marketdata.sources import source_for
from models_registry.models import ModelVersion
from models_registry.selectors import market_group_for
from models_registry.services.training import model_train
from quantum.roles import ROLES
from risk.models import RiskLimits, TradingState
from trading.models import ExchangeAccount

logger = logging.getLogger(__name__)
Say = Callable[[str], None]


# Operators run the admin: every permission on the platform's own apps.
OPERATOR_APPS = ("marketdata", "models_registry", "trading", "risk", "django_celery_beat")


def roles_ensure() -> None:
    from django.contrib.auth.models import Permission

    for name in ROLES:
        Group.objects.get_or_create(name=name)
    operator = Group.objects.get(name="operator")
    operator.permissions.set(Permission.objects.filter(content_type__app_label__in=OPERATOR_APPS))


def admin_ensure(say: Say) -> None:
    """The admin user from QT_ADMIN_USER/QT_ADMIN_PASSWORD, or a generated password, once."""
    import os

    User = get_user_model()
    username = os.environ.get("QT_ADMIN_USER", "admin")
    password = os.environ.get("QT_ADMIN_PASSWORD", "")
    if User.objects.filter(username=username).exists():
        return
    generated = not password
    password = password or secrets.token_urlsafe(12)
    user = User.objects.create_superuser(username=username, email="", password=password)
    user.groups.add(Group.objects.get(name="operator"))
    if generated:
        # Printed once to the terminal of the first start, never logged.
        say(f"Created admin user {username!r} with password: {password}")
    else:
        say(f"Created admin user {username!r} (password from QT_ADMIN_PASSWORD)")


def trading_defaults_ensure() -> ExchangeAccount:
    """The paper account, global trading state and default limits. Never live."""
    exchange, _ = Exchange.objects.get_or_create(
        code=settings.QT_EXCHANGE, defaults={"name": settings.QT_EXCHANGE.title()}
    )
    cash = Decimal(settings.QT_PAPER_CASH)
    account, _ = ExchangeAccount.objects.get_or_create(
        name="paper",
        defaults={
            "exchange": exchange,
            "mode": ExchangeAccount.Mode.PAPER,
            "starting_cash": cash,
            "cash": cash,
            "fee_bps": Decimal(settings.QT_FEE_BPS),
            "slippage_bps": Decimal(settings.QT_SLIPPAGE_BPS),
        },
    )
    if not TradingState.objects.filter(account__isnull=True).exists():
        TradingState.objects.create(account=None)
    RiskLimits.objects.get_or_create(account=None)
    return account


def data_and_model_ensure(say: Say) -> list[Market]:
    """Backfill history and make sure an active model exists; failures are reported, not fatal.

    Without network access (ccxt) or data files (replay) the platform still starts: /ready
    names what is missing, ingestion keeps retrying, and the model is trained by the
    periodic `ensure-model` job once there is enough data.
    """
    markets = markets_configured()
    timeframe = settings.QT_TIMEFRAME
    try:
        source = source_for()
    except Exception as exc:
        say(f"Market data source unavailable: {exc}")
        return markets
    for market in markets:
        try:
            report = market_backfill(
                market=market, timeframe=timeframe, source=source, days=settings.QT_HISTORY_DAYS
            )
        except Exception as exc:
            say(f"History {market.symbol} {timeframe} ({source.name}) failed: {exc}")
            logger.exception("backfill failed for %s", market.symbol)
            continue
        say(f"History {market.symbol} {timeframe} ({source.name}): {report.summary()}")
    model_ensure(markets=markets, timeframe=timeframe, say=say)
    return markets


def model_ensure(*, markets: list[Market], timeframe: str, say: Say = logger.info) -> None:
    """Train and activate a model for the group unless one for this feature set is active."""
    from marketdata.lib.features import FEATURE_SET_HASH

    group = market_group_for(markets)
    active = ModelVersion.objects.filter(
        market_group=group,
        timeframe=timeframe,
        is_active=True,
        feature_set_hash=FEATURE_SET_HASH,
    ).first()
    if active is not None:
        say(f"Active model v{active.version} for {group} {timeframe}; no retraining needed")
        return
    say(f"Training the first model for {group} {timeframe} ...")
    try:
        mv = model_train(markets=markets, timeframe=timeframe, tag="bootstrap")
    except ValueError as exc:
        say(f"Not training yet: {exc}")
        return
    metrics = mv.metrics_json
    backtest = metrics["backtest"]
    failed = [name for name, gate in mv.gates_json.items() if not gate["passed"]]
    # A first model that fails its gates still runs, ungated, on paper (models_registry
    # services/registry.py): testnet and live accounts refuse it until one passes.
    state = "UNGATED, paper only" if mv.ungated else ("active" if mv.is_active else "candidate")
    say(
        f"Model v{mv.version} {mv.status} ({state}): accuracy {metrics['accuracy']:.3f} "
        f"(majority baseline {metrics['baseline_accuracy']:.3f}), "
        f"log loss {metrics['log_loss']:.3f}; out-of-sample Sharpe {backtest['sharpe']:.2f} "
        f"(buy and hold {backtest['buy_and_hold']['sharpe']:.2f}), "
        f"max drawdown {backtest['max_drawdown']:.1%}, {backtest['trades']} trades; "
        + ("gates passed" if not failed else "gates failed: " + ", ".join(failed))
    )


def platform_bootstrap(*, say: Say = print, data: bool = True) -> None:
    call_command("migrate", interactive=False, verbosity=0)
    roles_ensure()
    admin_ensure(say)
    account = trading_defaults_ensure()
    say(f"Paper account {account.name!r}: cash {account.cash} {account.quote_currency}")
    from trading.services.reconcile import accounts_mark_unreconciled, accounts_reconcile

    # Exchange-backed accounts trade only after they match their exchange again.
    accounts_mark_unreconciled()
    for report in accounts_reconcile():
        status = "reconciled" if report.ok else "HALTED: " + "; ".join(report.mismatches)
        say(f"Account {report.account!r}: {status}")
    if data:
        data_and_model_ensure(say)
