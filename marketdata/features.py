"""The feature matrix of any OHLCV CSV file, without the database.

    python -m marketdata.features --csv FILE --out OUT.csv [--news HEADLINES.csv --asset BTC]

FILE has `timestamp,open,high,low,close,volume` (timestamp = the bar's open time, ISO-8601).
OUT.csv has one row per input bar, with the same timestamps, and every feature of the
current feature set (marketdata/lib/features.py). With --news (the headlines file format:
`timestamp, source, subject, title, summary, url`), headlines about --asset are scored with
VADER and aggregated per bar exactly as the platform does; without it the sentiment
columns are 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from marketdata.lib.features import FEATURE_SET, FEATURE_SET_HASH, FEATURES, compute_features


def _news(path: Path, asset: str) -> pd.DataFrame:
    from marketdata.lib.news import records_from_csv
    from marketdata.lib.sentiment import assets_mentioned, sentiment_score

    rows = [
        (r.published_at, sentiment_score(r.title))
        for r in records_from_csv(path)
        if asset.upper()
        in assets_mentioned(f"{r.title} {r.summary}", subject=r.subject, codes=r.codes)
    ]
    return pd.DataFrame(rows, columns=["published_at", "sentiment"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m marketdata.features", description=__doc__)
    parser.add_argument("--csv", required=True, type=Path, help="OHLCV bars")
    parser.add_argument("--out", required=True, type=Path, help="where to write the features")
    parser.add_argument("--news", type=Path, help="headlines file for the sentiment features")
    parser.add_argument("--asset", default="BTC", help="asset the headlines must be about")
    parser.add_argument(
        "--bar-minutes", type=float, help="bar duration (default: inferred from the timestamps)"
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    bars = pd.read_csv(args.csv)
    missing = {"timestamp", "open", "high", "low", "close", "volume"} - set(bars.columns)
    if missing:
        parser.error(f"{args.csv} lacks the column(s) {sorted(missing)}")
    stamps = bars["timestamp"]
    bars.index = pd.DatetimeIndex(pd.to_datetime(stamps, utc=True))
    if not bars.index.is_monotonic_increasing or bars.index.has_duplicates:
        parser.error(f"{args.csv}: timestamps must be strictly increasing")
    news = _news(args.news, args.asset) if args.news else None
    step = pd.Timedelta(minutes=args.bar_minutes) if args.bar_minutes else None
    features = compute_features(bars, news, bar_duration=step)
    features.insert(0, "timestamp", stamps.to_numpy())
    features.to_csv(args.out, index=False, float_format="%.12g")
    print(
        f"{len(features)} rows x {len(FEATURES)} features ({FEATURE_SET} {FEATURE_SET_HASH[:12]}) "
        f"-> {args.out} in {time.perf_counter() - started:.2f}s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
