from __future__ import annotations

from typing import Any

from django.db import models


def money(**kwargs: Any) -> models.DecimalField:
    """Prices, quantities, fees and cash: Decimal with 8 places (quantized per market later)."""
    return models.DecimalField(max_digits=28, decimal_places=8, **kwargs)
