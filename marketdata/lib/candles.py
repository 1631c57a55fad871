"""Pure candle validation: no ORM here, rows in, accepted rows and rejections out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from itertools import pairwise

FIELDS = ("open", "high", "low", "close", "volume")
# What the Candle columns can hold (DecimalField, 28 digits, 8 of them decimals): a value
# outside them would fail the whole batch on PostgreSQL, and on SQLite be stored and then
# make every read of the table raise.
SMALLEST_PRICE = Decimal("0.00000001")
TOO_LARGE = Decimal(10) ** 20


@dataclass(frozen=True, slots=True)
class Bar:
    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True, slots=True)
class Rejection:
    row: int  # position in the input, 1-based
    open_time: str
    reason: str


def parse_time(value: object) -> datetime:
    """ISO-8601 string, epoch milliseconds, or datetime -> aware UTC datetime."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime (time must be UTC-aware)")
        return value.astimezone(UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)
    text = str(value).strip()
    if not text:
        raise ValueError("empty timestamp")
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        # The data files and exchanges speak UTC; a bare timestamp is read as UTC.
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _decimal(name: str, value: object) -> Decimal:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"{name} is missing")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{name} is not a number: {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"{name} is not finite: {value!r}")
    if abs(number) >= TOO_LARGE:
        raise ValueError(f"{name} is out of range: {value!r}")
    return number


def validate_bar(raw: Mapping[str, object], step: timedelta) -> Bar:
    """Turn one raw row into a Bar or raise ValueError saying what is wrong with it."""
    open_time = parse_time(raw.get("open_time", raw.get("timestamp")))
    o, h, low, c, v = (_decimal(name, raw.get(name)) for name in FIELDS)
    if min(o, h, low, c) <= 0:
        raise ValueError("non-positive price")
    if min(o, h, low, c) < SMALLEST_PRICE:
        raise ValueError(f"price below {SMALLEST_PRICE:f}")
    if v < 0:
        raise ValueError("negative volume")
    if h < low:
        raise ValueError("high below low")
    if h < max(o, c):
        raise ValueError("high below open/close")
    if low > min(o, c):
        raise ValueError("low above open/close")
    epoch_seconds = int(open_time.timestamp())
    if open_time.microsecond or epoch_seconds % int(step.total_seconds()):
        raise ValueError(f"open time not aligned to {int(step.total_seconds())}s bars")
    return Bar(open_time, o, h, low, c, v)


def validate_bars(
    rows: Iterable[Mapping[str, object]], step: timedelta
) -> tuple[list[Bar], list[Rejection]]:
    """Validate a batch: each row on its own, then strictly increasing open times."""
    accepted: list[Bar] = []
    rejected: list[Rejection] = []
    last: datetime | None = None
    for index, raw in enumerate(rows, start=1):
        label = str(raw.get("open_time", raw.get("timestamp", "")))
        try:
            bar = validate_bar(raw, step)
        except (ValueError, TypeError, OverflowError) as exc:
            rejected.append(Rejection(index, label, str(exc)))
            continue
        if last is not None and bar.open_time == last:
            rejected.append(Rejection(index, label, "duplicate timestamp in batch"))
            continue
        if last is not None and bar.open_time < last:
            rejected.append(Rejection(index, label, "out-of-order timestamp"))
            continue
        accepted.append(bar)
        last = bar.open_time
    return accepted, rejected


def find_gaps(times: list[datetime], step: timedelta) -> list[tuple[datetime, datetime, int]]:
    """(first missing, last missing, count) for each hole in a sorted list of open times."""
    gaps = []
    for prev, cur in pairwise(times):
        missing = int((cur - prev) / step) - 1
        if missing > 0:
            gaps.append((prev + step, cur - step, missing))
    return gaps
