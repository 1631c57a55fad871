from __future__ import annotations

from django.apps import AppConfig


class QuantumConfig(AppConfig):
    name = "quantum"

    def ready(self) -> None:
        from quantum import signals  # noqa: F401
        from quantum.accounts import mfa_signals_connect

        mfa_signals_connect()
