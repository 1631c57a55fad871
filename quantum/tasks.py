from __future__ import annotations

from celery import shared_task

from quantum.services import heartbeat_record


@shared_task(ignore_result=True)
def heartbeat() -> None:
    """Record that a worker ran a task sent by beat (proves broker + worker)."""
    heartbeat_record(component="worker")


@shared_task(ignore_result=True)
def exchange_ping() -> None:
    """Synthetic check: every exchange account's API answers (read by /ready, /metrics)."""
    from quantum.synthetic import exchange_ping_all

    exchange_ping_all()


@shared_task(ignore_result=True)
def audit_chain_check() -> None:
    """Walk the audit chain and record whether it is intact (read by /ready, /metrics)."""
    from quantum.synthetic import audit_chain_check as check

    check()
