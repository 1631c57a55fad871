from __future__ import annotations

from decimal import Decimal

import pytest

from trading.lib.sizing import atr_risk_quantity, fixed_fraction_quantity


def size(
    *,
    equity: str = "10000",
    fraction: str = "0.2",
    price: str = "40000",
    qty_precision: int = 5,
    max_notional: str = "5000",
) -> Decimal:
    return fixed_fraction_quantity(
        equity=Decimal(equity),
        fraction=Decimal(fraction),
        price=Decimal(price),
        qty_precision=qty_precision,
        max_notional=Decimal(max_notional),
    )


def test_it_sizes_a_fraction_of_equity_at_the_price() -> None:
    # 10000 × 0.2 = 2000; 2000 / 40000 = 0.05
    assert size() == Decimal("0.05000")


def test_it_rounds_the_quantity_down_to_the_market_precision() -> None:
    # 2000 / 43210.55 = 0.046285... → 0.04628 (never more than the budget)
    quantity = size(price="43210.55")
    assert quantity == Decimal("0.04628")
    assert quantity * Decimal("43210.55") <= Decimal("2000")
    assert (quantity + Decimal("0.00001")) * Decimal("43210.55") > Decimal("2000")


def test_it_caps_the_notional_at_the_maximum() -> None:
    # 100000 × 0.2 = 20000, capped at 5000; 5000 / 40000 = 0.125
    assert size(equity="100000") == Decimal("0.12500")


@pytest.mark.parametrize(
    ("equity", "price"), [("10000", "0"), ("10000", "-1"), ("0", "40000"), ("-50", "40000")]
)
def test_it_sizes_nothing_without_a_positive_price_and_equity(equity: str, price: str) -> None:
    assert size(equity=equity, price=price) == Decimal("0")


def test_it_sizes_zero_when_the_budget_is_below_one_lot() -> None:
    # 1 × 0.2 = 0.2; 0.2 / 40000 = 0.000005 → 0.00000 at 5 places
    assert size(equity="1") == Decimal("0")


def test_atr_sizing_risks_the_fraction_of_equity_over_the_atr_stop() -> None:
    # 10000 × 0.01 = 100 at risk; stop 2 × 250 = 500 away → 0.2 units; 0.2 × 20000 = 4000
    quantity = atr_risk_quantity(
        equity=Decimal("10000"),
        risk_fraction=Decimal("0.01"),
        atr=Decimal("250"),
        atr_multiple=Decimal("2"),
        price=Decimal("20000"),
        qty_precision=5,
        max_notional=Decimal("50000"),
    )
    assert quantity == Decimal("0.2")


def test_atr_sizing_is_capped_by_leverage_and_notional() -> None:
    # A tiny ATR asks for 1000 units (20,000,000 notional): capped at equity × 1 = 10000.
    common = {
        "equity": Decimal("10000"),
        "risk_fraction": Decimal("0.01"),
        "atr": Decimal("0.05"),
        "atr_multiple": Decimal("2"),
        "price": Decimal("20000"),
        "qty_precision": 5,
    }
    assert atr_risk_quantity(max_notional=Decimal("50000"), **common) == Decimal("0.5")
    assert atr_risk_quantity(
        max_notional=Decimal("50000"), max_leverage=Decimal("3"), **common
    ) == Decimal("1.5")
    assert atr_risk_quantity(max_notional=Decimal("2000"), **common) == Decimal("0.1")


def test_sizing_with_no_volatility_or_no_equity_is_zero() -> None:
    common = {
        "risk_fraction": Decimal("0.01"),
        "atr_multiple": Decimal("2"),
        "price": Decimal("100"),
        "qty_precision": 3,
        "max_notional": Decimal("1000"),
    }
    assert atr_risk_quantity(equity=Decimal("1000"), atr=Decimal("0"), **common) == 0
    assert atr_risk_quantity(equity=Decimal("0"), atr=Decimal("1"), **common) == 0


def test_fixed_fraction_never_exceeds_equity_times_leverage() -> None:
    quantity = fixed_fraction_quantity(
        equity=Decimal("1000"),
        fraction=Decimal("5"),
        price=Decimal("10"),
        qty_precision=2,
        max_notional=Decimal("100000"),
        max_leverage=Decimal("2"),
    )
    assert quantity == Decimal("200")
