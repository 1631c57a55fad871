from __future__ import annotations

from django.http import HttpRequest

from quantum.roles import user_role


def roles(request: HttpRequest) -> dict[str, object]:
    role = user_role(request.user)
    from risk.models import TradingState

    state = TradingState.objects.filter(account__isnull=True).first() if role else None
    return {
        "trading_state": state,
        "role": role,
        "is_trader": role in ("trader", "operator"),
        "is_operator": role == "operator",
    }
