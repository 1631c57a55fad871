"""The loopback venues' websocket sides on aiohttp: one event loop in a thread of its own.

The venue's REST server and its ledger run in standard-library threads; an order change
heard there is handed to this loop with `push` (thread-safe). Every connection has one
queue and one writer task, so a socket gets its messages in the order the ledger made
them, replies to its own requests included. Listens on 127.0.0.1 only, started on first
use (`start`, `url`), so a venue whose websocket side is never asked for costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

logger = logging.getLogger(__name__)

Json = dict[str, Any]


class Connection:
    """One websocket client: its subscriptions and, once it has shown its keys, `authed`."""

    _ids = itertools.count(1)

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.id = f"loopback-conn-{next(self._ids)}"
        self.authed = False
        self.topics: set[str] = set()
        self.queue: asyncio.Queue[Json | None] = asyncio.Queue()

    def send(self, payload: Json | None) -> None:
        """Queue a message (loop thread only); the writer sends them in order, None ends."""
        self.queue.put_nowait(payload)


class AioWsServer:
    """Subclasses give `routes()` and handle `opened` / `received` for their protocol."""

    name = "loopback-ws"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port = 0
        self.connections: set[Connection] = set()  # touched on the loop thread only
        self.received_log: list[Json] = []  # every client message, for the tests

    # Life cycle.

    @property
    def url(self) -> str:
        self.start()
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> AioWsServer:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self.name, daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
                self._port = asyncio.run_coroutine_threadsafe(self._serve(), loop).result(10)
        return self

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()

    async def _serve(self) -> int:
        app = web.Application()
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return int(self._runner.addresses[0][1])

    async def _shutdown(self) -> None:
        for conn in list(self.connections):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001, message=b"going away")
        if self._runner is not None:
            await self._runner.cleanup()

    # Pushing from other threads.

    def push(self, wants: Callable[[Connection], bool], payload: Json) -> None:
        """Send `payload` to every connection `wants` picks; a no-op before `start`."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # closing
                loop.call_soon_threadsafe(self._fanout, wants, payload)

    def _fanout(self, wants: Callable[[Connection], bool], payload: Json) -> None:
        for conn in self.connections:
            if wants(conn):
                conn.send(payload)

    def subscribers(self, topic: str) -> int:
        """How many connections are subscribed to `topic` now (thread-safe snapshot)."""
        loop = self._loop
        if loop is None:
            return 0

        async def count() -> int:
            return sum(1 for c in self.connections if topic in c.topics)

        return asyncio.run_coroutine_threadsafe(count(), loop).result(5)

    # One websocket.

    async def socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        conn = Connection(ws)
        writer = asyncio.create_task(self._write(conn))
        self.connections.add(conn)
        try:
            if await self.opened(conn, request):
                async for message in ws:
                    if message.type != WSMsgType.TEXT:
                        continue
                    try:
                        data = json.loads(message.data)
                    except ValueError:
                        data = None
                    if isinstance(data, dict):
                        self.received_log.append(data)
                        self.received(conn, data)
        finally:
            self.connections.discard(conn)
            conn.send(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, 2)
        return ws

    async def _write(self, conn: Connection) -> None:
        while (payload := await conn.queue.get()) is not None:
            if payload.get("_close"):
                await conn.ws.close()
                return
            try:
                await conn.ws.send_str(json.dumps(payload))
            except (ConnectionError, RuntimeError):
                return

    # The protocol.

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    async def opened(self, conn: Connection, request: web.Request) -> bool:
        """Greet the new connection; False closes it."""
        return True

    def received(self, conn: Connection, message: Json) -> None:
        raise NotImplementedError
