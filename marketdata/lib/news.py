"""Headlines from each source's format as NewsRecords. Pure parsing: no HTTP, no ORM."""

from __future__ import annotations

import calendar
import csv
import hashlib
import html
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_TAGS = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class NewsRecord:
    title: str
    published_at: datetime
    source: str
    origin: str  # "cryptopanic" | "rss" | "file"
    url: str = ""
    summary: str = ""
    subject: str = ""
    external_id: str = ""
    codes: tuple[str, ...] = field(default=())  # assets the source itself tagged

    @property
    def key(self) -> str:
        """The identity of a headline: its URL, else its source, title and time."""
        basis = self.url or f"{self.source}|{self.title}|{self.published_at.isoformat()}"
        return hashlib.sha256(basis.encode()).hexdigest()


class NewsFormatError(ValueError):
    pass


def parse_time(value: str) -> datetime:
    """An ISO-8601 time as aware UTC; a time without a zone is taken as UTC."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def plain_text(value: str) -> str:
    """Feed summaries carry HTML: tags out, entities decoded, whitespace collapsed."""
    return " ".join(html.unescape(_TAGS.sub(" ", value or "")).split())


def records_from_csv(path: Path | str) -> Iterator[NewsRecord]:
    """Rows of the headlines file format (`timestamp, source, subject, title, summary, url`)."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        time_column = "timestamp" if "timestamp" in columns else "published_at"
        if not {time_column, "title"} <= columns:
            raise NewsFormatError(f"{path}: needs a timestamp (or published_at) and a title")
        for row in reader:
            yield from _csv_record(row, time_column, Path(path).name)


def _csv_record(row: Mapping[str, str], time_column: str, name: str) -> Iterator[NewsRecord]:
    title = (row.get("title") or "").strip()
    stamp = (row.get(time_column) or "").strip()
    if not title or not stamp:
        return
    try:
        published = parse_time(stamp)
    except ValueError:
        return
    yield NewsRecord(
        title=title,
        published_at=published,
        source=(row.get("source") or name).strip()[:64],
        origin="file",
        url=(row.get("url") or "").strip(),
        summary=plain_text(row.get("summary") or ""),
        subject=(row.get("subject") or "").strip()[:64],
    )


def records_from_cryptopanic(payload: Mapping[str, Any]) -> list[NewsRecord]:
    """One page of CryptoPanic's `posts` endpoint (API v1 `currencies` or v2 `instruments`)."""
    results = payload.get("results")
    if not isinstance(results, list):
        raise NewsFormatError("CryptoPanic answer has no 'results' list")
    records = []
    for post in results:
        if not isinstance(post, Mapping) or not post.get("title") or not post.get("published_at"):
            continue
        tags = post.get("currencies") or post.get("instruments") or []
        source = post.get("source") or {}
        records.append(
            NewsRecord(
                title=str(post["title"]).strip(),
                published_at=parse_time(str(post["published_at"])),
                source=str(source.get("title") or post.get("domain") or "CryptoPanic")[:64],
                origin="cryptopanic",
                url=str(post.get("original_url") or post.get("url") or ""),
                summary=plain_text(str(post.get("description") or "")),
                external_id=str(post.get("id") or ""),
                codes=tuple(
                    str(t["code"]) for t in tags if isinstance(t, Mapping) and t.get("code")
                ),
            )
        )
    return records


def records_from_feed(parsed: Mapping[str, Any], feed_url: str) -> list[NewsRecord]:
    """Entries of a feed parsed by feedparser (RSS 2.0, Atom)."""
    feed = parsed.get("feed") or {}
    source = str(feed.get("title") or feed_url)[:64]
    records = []
    for entry in parsed.get("entries") or []:
        stamp = entry.get("published_parsed") or entry.get("updated_parsed")
        title = plain_text(entry.get("title") or "")
        if not stamp or not title:
            continue  # a headline without a time cannot be placed before or after a bar
        tags: Iterable[Mapping[str, Any]] = entry.get("tags") or []
        records.append(
            NewsRecord(
                title=title,
                published_at=datetime.fromtimestamp(calendar.timegm(stamp), tz=UTC),
                source=source,
                origin="rss",
                url=str(entry.get("link") or ""),
                summary=plain_text(entry.get("summary") or ""),
                subject=str(next((t.get("term") for t in tags if t.get("term")), ""))[:64],
                external_id=str(entry.get("id") or "")[:64],
            )
        )
    return records
