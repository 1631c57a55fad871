"""The chaos command end to end: real Celery workers (SIGKILLed at random), the database and
the loopback exchange with random faults. Nothing may be duplicated, lost or mismatched."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from trading.models import ExchangeAccount, Order

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_chaos_leaves_no_duplicate_no_lost_order_and_no_mismatch(settings, capsys) -> None:
    settings.QT_NOT_FOUND_GRACE_S = 4
    settings.QT_EXCHANGE_TIMEOUT_MS = 1500

    call_command("exchange_chaos", orders=40, seed=11, json=True)

    report = json.loads(capsys.readouterr().out)
    assert (report["duplicates"], report["lost"], report["position_mismatches"]) == (0, 0, 0)
    assert report["orders"] == 40
    assert sum(report["faults_injected"].values()) > 0, "the run must actually inject faults"
    assert report["worker_kills"] > 0, "and kill workers"
    account = ExchangeAccount.objects.get(name__startswith="chaos-11-")
    orders = Order.objects.filter(account=account)
    assert orders.count() == 40
    assert report["exchange_orders"] == orders.filter(status=Order.Status.FILLED).count()
    settled = [Order.Status.FILLED, Order.Status.REJECTED, Order.Status.CANCELED]
    assert not orders.exclude(status__in=settled).exists()
