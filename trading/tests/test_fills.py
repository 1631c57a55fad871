from __future__ import annotations

from decimal import Decimal

import pytest

from trading.lib.fills import BarView, FillModel

MODEL = FillModel(fee_bps=Decimal("10"), slippage_bps=Decimal("5"))


def test_it_moves_a_buy_up_by_the_slippage() -> None:
    # 20000 × (1 + 5/10000) = 20010
    assert MODEL.price(Decimal("20000"), "BUY", 2) == Decimal("20010.00")


def test_it_moves_a_sell_down_by_the_slippage() -> None:
    # 20000 × (1 − 5/10000) = 19990
    assert MODEL.price(Decimal("20000"), "SELL", 2) == Decimal("19990.00")


@pytest.mark.parametrize(
    ("reference", "side", "precision", "expected"),
    [
        # 43210.55 × 1.0005 = 43232.155275 → 43232.16
        ("43210.55", "BUY", 2, "43232.16"),
        # 43210.55 × 0.9995 = 43188.944725 → 43188.94
        ("43210.55", "SELL", 2, "43188.94"),
        # 1.00 × 1.0005 = 1.0005 → 1.01: rounding never hands the slippage back
        ("1.00", "BUY", 2, "1.01"),
        # 0.123456 × 1.0005 = 0.123517728 → 0.1236 at 4 places (a buy rounds up)
        ("0.123456", "BUY", 4, "0.1236"),
        # 0.123456 × 0.9995 = 0.123394272 → 0.1233 at 4 places (a sell rounds down)
        ("0.123456", "SELL", 4, "0.1233"),
    ],
)
def test_it_rounds_the_slipped_price_to_the_market_precision(
    reference: str, side: str, precision: int, expected: str
) -> None:
    price = MODEL.price(Decimal(reference), side, precision)
    assert price == Decimal(expected)
    assert price.as_tuple().exponent == -precision


def test_it_charges_the_fee_in_bps_of_the_notional_exactly() -> None:
    # 20010.00 × 0.12345 = 2470.2345; × 10/10000 = 2.4702345
    fee = MODEL.fee(Decimal("20010.00"), Decimal("0.12345"))
    assert fee == Decimal("2.47023450")
    assert isinstance(fee, Decimal)
    assert fee.as_tuple().exponent == -8


def test_it_rounds_a_fee_with_more_than_eight_places_to_eight() -> None:
    # 123.45 × 0.333 = 41.10885; × 7.5/10000 = 0.0308316375 → 0.03083164
    model = FillModel(fee_bps=Decimal("7.5"), slippage_bps=Decimal("0"))
    assert model.fee(Decimal("123.45"), Decimal("0.333")) == Decimal("0.03083164")


def test_it_charges_no_fee_and_no_slippage_when_both_are_zero() -> None:
    model = FillModel(fee_bps=Decimal("0"), slippage_bps=Decimal("0"))
    assert model.price(Decimal("100.5"), "BUY", 2) == Decimal("100.50")
    assert model.fee(Decimal("100.50"), Decimal("3")) == Decimal("0")


BAR = BarView(
    open=Decimal("100"), high=Decimal("102"), low=Decimal("98"), close=Decimal("100"),
    volume=Decimal("4"),
)  # fmt: skip


def test_it_caps_a_fill_at_a_fraction_of_the_bar_volume_and_reports_the_rest() -> None:
    model = FillModel(fee_bps=Decimal("10"), slippage_bps=Decimal("0"), volume_cap=Decimal("0.25"))
    ex = model.execute(
        side="BUY", quantity=Decimal("3"), reference=Decimal("100"), bar=BAR,
        price_precision=2, qty_precision=3,
    )  # fmt: skip
    # 25 % of 4 = 1 fills; 2 are canceled.
    assert (ex.quantity, ex.unfilled, ex.fee) == (Decimal("1.000"), Decimal("2"), Decimal("0.1"))


def test_it_fills_nothing_below_the_minimum_notional() -> None:
    model = FillModel(fee_bps=Decimal("10"), slippage_bps=Decimal("0"), min_notional=Decimal("5"))
    ex = model.execute(
        side="BUY", quantity=Decimal("0.04"), reference=Decimal("100"), bar=None,
        price_precision=2, qty_precision=3,
    )  # fmt: skip
    assert ex.quantity == 0 and "minimum" in ex.reason


def test_it_adds_volatility_and_volume_impact_to_the_fixed_slippage() -> None:
    model = FillModel(
        fee_bps=Decimal("0"), slippage_bps=Decimal("5"), vol_slippage=Decimal("0.1"),
        impact_bps=Decimal("10"),
    )  # fmt: skip
    # range 4/100 = 400 bps × 0.1 = 40; impact 10 × sqrt(1/4) = 5; plus 5 fixed = 50 bps.
    assert model.slippage_for(Decimal("1"), BAR) == Decimal("50")
    ex = model.execute(
        side="SELL", quantity=Decimal("1"), reference=Decimal("100"), bar=BAR,
        price_precision=2, qty_precision=3,
    )  # fmt: skip
    assert ex.price == Decimal("99.50")


def test_it_charges_the_maker_fee_on_resting_orders_and_knows_exchange_fees() -> None:
    model = FillModel.for_exchange("okx")
    assert model.fee(Decimal("100"), Decimal("1")) == Decimal("0.1")  # taker 10 bps
    assert model.fee(Decimal("100"), Decimal("1"), maker=True) == Decimal("0.08")
    assert FillModel.for_exchange("kraken").fee_bps == Decimal("40")
