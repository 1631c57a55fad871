"""Headline sentiment (VADER) and which assets a headline is about. Pure functions."""

from __future__ import annotations

import functools
import re

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

SENTIMENT_MODEL = "vader-3.3"

# Asset code -> words that name it in a headline. Tickers that are also English words
# (SOL, DOT, ...) only count in upper case, so "sol" in a sentence is not Solana.
ALIASES: dict[str, tuple[str, ...]] = {
    "BTC": ("bitcoin", "bitcoins", "btc", "xbt"),
    "ETH": ("ethereum", "ether", "eth"),
    "SOL": ("solana",),
    "BNB": ("bnb", "binance coin", "bnb chain"),
    "XRP": ("xrp", "ripple"),
    "ADA": ("cardano", "ada"),
    "DOGE": ("dogecoin", "doge"),
    "AVAX": ("avalanche", "avax"),
    "DOT": ("polkadot",),
    "LTC": ("litecoin", "ltc"),
    "MATIC": ("polygon", "matic"),
}
UPPER_CASE_TICKERS: dict[str, str] = {"SOL": "SOL", "DOT": "DOT", "LINK": "LINK"}
# The source dataset's `subject` column names a topic; two of them are assets.
SUBJECTS: dict[str, str] = {"bitcoin": "BTC", "ethereum": "ETH"}

_PATTERNS = {
    code: re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)
    for code, words in ALIASES.items()
}
_TICKER = re.compile(r"\b(" + "|".join(UPPER_CASE_TICKERS) + r")\b")


@functools.lru_cache(maxsize=1)
def _analyzer() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


def sentiment_score(text: str) -> float:
    """VADER's compound score of `text`, from -1 (most negative) to 1 (most positive)."""
    return float(_analyzer().polarity_scores(text)["compound"])


def assets_mentioned(text: str, *, subject: str = "", codes: tuple[str, ...] = ()) -> list[str]:
    """Sorted asset codes a headline is about: its words, its subject and tagged codes."""
    found = {code for code, pattern in _PATTERNS.items() if pattern.search(text)}
    found |= {UPPER_CASE_TICKERS[m] for m in _TICKER.findall(text)}
    if subject.strip().lower() in SUBJECTS:
        found.add(SUBJECTS[subject.strip().lower()])
    found |= {c.strip().upper() for c in codes if c and c.strip()}
    return sorted(found)
