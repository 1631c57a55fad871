from __future__ import annotations

from django.apps import AppConfig


class RiskConfig(AppConfig):
    name = "risk"

    def ready(self) -> None:
        from risk import signals  # noqa: F401
