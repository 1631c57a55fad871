"""A loopback news server: CryptoPanic's posts endpoint and an RSS feed, from recorded files.

The real client code (requests, feedparser) talks HTTP to it. `{base}` in a recorded file
is replaced by the server's own URL, so CryptoPanic's `next` links lead back to it. It runs
on the venues' server stack (venues.transport), though it is no venue.
"""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs

from venues.binance_api import Reply
from venues.transport import LoopServer, Request

RECORDED = Path(__file__).parent / "recorded"


class NewsLoopback(LoopServer):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.failing: set[str] = set()  # paths that answer 500

    def _body(self, name: str) -> bytes:
        return (RECORDED / name).read_text().replace("{base}", f"{self.url}/api/v1").encode()

    def answer(self, request: Request) -> Reply:
        query = {k: v[-1] for k, v in parse_qs(request.query).items()}
        self.requests.append((request.path, query))
        if request.path in self.failing:
            return Reply(HTTPStatus.INTERNAL_SERVER_ERROR, b"oops", "text/plain")
        if request.path == "/api/v1/posts/":
            if query.get("auth_token") != "test-token":
                body = b'{"status": "Incomplete", "info": "Token not found"}'
                return Reply(HTTPStatus.UNAUTHORIZED, body, "application/json")
            page = "2" if query.get("page") == "2" else "1"
            return Reply(HTTPStatus.OK, self._body(f"cryptopanic_posts_page{page}.json"))
        if request.path == "/rss":
            body = self._body("cointelegraph_rss.xml")
            return Reply(HTTPStatus.OK, body, "application/rss+xml; charset=utf-8")
        return Reply(HTTPStatus.NOT_FOUND, b"Not Found", "text/plain")
