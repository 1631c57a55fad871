"""A loopback news server: CryptoPanic's posts endpoint and an RSS feed, from recorded files.

The real client code (requests, feedparser) talks HTTP to it. `{base}` in a recorded file
is replaced by the server's own URL, so CryptoPanic's `next` links lead back to it.
"""

from __future__ import annotations

import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

RECORDED = Path(__file__).parent / "recorded"


class NewsLoopback:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.failing: set[str] = set()  # paths that answer 500
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> NewsLoopback:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
        self._server.server_close()

    def _body(self, name: str) -> bytes:
        return (RECORDED / name).read_text().replace("{base}", f"{self.url}/api/v1").encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        loopback = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                loopback.requests.append((parts.path, query))
                if parts.path in loopback.failing:
                    return self._send(HTTPStatus.INTERNAL_SERVER_ERROR, b"oops", "text/plain")
                if parts.path == "/api/v1/posts/":
                    if query.get("auth_token") != "test-token":
                        body = b'{"status": "Incomplete", "info": "Token not found"}'
                        return self._send(HTTPStatus.UNAUTHORIZED, body, "application/json")
                    page = "2" if query.get("page") == "2" else "1"
                    body = loopback._body(f"cryptopanic_posts_page{page}.json")
                    return self._send(HTTPStatus.OK, body, "application/json")
                if parts.path == "/rss":
                    body = loopback._body("cointelegraph_rss.xml")
                    return self._send(HTTPStatus.OK, body, "application/rss+xml; charset=utf-8")
                self._send(HTTPStatus.NOT_FOUND, b"Not Found", "text/plain")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler
