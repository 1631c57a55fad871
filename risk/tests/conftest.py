from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def sent_tasks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Celery tasks sent by name after commit, recorded instead of queued on the broker.

    Tests that run on-commit callbacks use it so that no stray task is left in the shared
    broker for a later test's worker to pick up.
    """
    from celery import current_app

    sent: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(
        current_app, "send_task", lambda name, kwargs=None, **kw: sent.append((name, kwargs))
    )
    return sent
