"""Bars for the engines: validated rows in, numpy columns (plus exact Decimals) out."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

import numpy as np

from marketdata.lib.candles import Bar, validate_bar

COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")


class BarsError(ValueError):
    """Bad input data; the message names the row and the problem."""


@dataclass(frozen=True)
class Bars:
    """Columns of one market's bars. Floats for the numerics, Decimals for money."""

    times: np.ndarray  # int64 epoch seconds of each bar's open
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    step: int  # seconds per bar

    def __len__(self) -> int:
        return len(self.close)

    def time(self, i: int) -> datetime:
        return datetime.fromtimestamp(int(self.times[i]), UTC)

    def dec(self, column: str, i: int) -> Decimal:
        # repr of a float parsed from a decimal string gives that string back (<= 15 digits).
        return Decimal(repr(float(getattr(self, column)[i])))

    def slice(self, start: int, stop: int) -> Bars:
        s = slice(start, stop)
        return Bars(
            self.times[s], self.open[s], self.high[s], self.low[s], self.close[s],
            self.volume[s], self.step,
        )  # fmt: skip

    @classmethod
    def from_bars(cls, bars: list[Bar], step: int) -> Bars:
        return cls(
            times=np.array([int(b.open_time.timestamp()) for b in bars], dtype=np.int64),
            open=np.array([float(b.open) for b in bars]),
            high=np.array([float(b.high) for b in bars]),
            low=np.array([float(b.low) for b in bars]),
            close=np.array([float(b.close) for b in bars]),
            volume=np.array([float(b.volume) for b in bars]),
            step=step,
        )


def infer_step(rows: Sequence[Mapping[str, object]]) -> int:
    """The smallest positive spacing between the first rows' timestamps, in seconds."""
    from marketdata.lib.candles import parse_time

    times = []
    for index, row in enumerate(rows[:50], start=2):
        try:
            times.append(parse_time(row.get("timestamp")))
        except (ValueError, TypeError, OverflowError) as exc:
            raise BarsError(
                f"row {index}: unparsable timestamp {row.get('timestamp')!r} ({exc})"
            ) from None
    spacings = [int((b - a).total_seconds()) for a, b in pairwise(times)]
    positive = [s for s in spacings if s > 0]
    if not positive:
        raise BarsError("need at least two bars with distinct timestamps")
    return min(positive)


def validate_rows(rows: Iterable[Mapping[str, object]], step: int, *, first_row: int = 2) -> Bars:
    """Every row valid and strictly after the previous one, or BarsError naming the row.

    Rows are numbered as a person sees them in the file (the header is row 1).
    """
    bars: list[Bar] = []
    delta = timedelta(seconds=step)
    for index, raw in enumerate(rows, start=first_row):
        try:
            bar = validate_bar(raw, delta)
        except (ValueError, TypeError, OverflowError) as exc:
            raise BarsError(f"row {index} ({raw.get('timestamp', '')}): {exc}") from None
        if bars and bar.open_time == bars[-1].open_time:
            raise BarsError(f"row {index} ({raw.get('timestamp')}): duplicate timestamp")
        if bars and bar.open_time < bars[-1].open_time:
            raise BarsError(f"row {index} ({raw.get('timestamp')}): timestamp out of order")
        bars.append(bar)
    if len(bars) < 2:
        raise BarsError("need at least two bars")
    return Bars.from_bars(bars, step)


def load_csv(path: str | Path) -> Bars:
    """A `timestamp,open,high,low,close,volume` CSV (timestamp = bar open, UTC)."""
    path = Path(path)
    try:
        handle = path.open(newline="")
    except OSError as exc:
        raise BarsError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise BarsError(
                f"row 1 (header): missing column(s) {', '.join(missing)}; "
                f"expected {','.join(COLUMNS)}"
            )
        rows = [{k.strip(): v for k, v in row.items() if k is not None} for row in reader]
    return validate_rows(rows, infer_step(rows))
