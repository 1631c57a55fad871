"""The loopback venues' one server stack: aiohttp (HTTP and websockets) on 127.0.0.1.

A `LoopServer` binds its port when it is made (so `url` is known before `start`) and
serves from an event loop in a thread of its own. Each HTTP request becomes a `Request`
handed to the venue's synchronous `answer` on a worker thread (the ledgers take thread
locks; a venue may sleep to be slow); it returns a `Reply`, or an `Outcome` that delays
the reply or drops the connection without one. Websockets go to the `Endpoint`s mounted
on the server, by path: every connection has one queue and one writer task, so a socket
gets its messages in the order the venue made them, replies to its own requests
included. An endpoint models the venue's connection rules (its pings and how long it
waits for the pong, the most a connection may live) and two faults: `drop_all` closes
every socket from the server side, `refuse` answers every upgrade with 503.

`command_line` runs a venue as a local sandbox: ``python -m venues.<venue> --port 9100``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from venues.binance_api import Reply

logger = logging.getLogger(__name__)

Json = dict[str, Any]
T = TypeVar("T")
WAIT_S = 30.0  # for the loop thread to start, answer or stop: generous on a loaded machine
CLOSE_WAIT_S = 2.0  # for a client to answer a server-side close frame


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str  # raw, as signed
    body: str  # raw, as signed
    headers: Mapping[str, str]  # lower-case names
    remote: str = "127.0.0.1"

    @property
    def target(self) -> str:
        """The request target as sent: the raw path and query."""
        return f"{self.path}?{self.query}" if self.query else self.path

    @property
    def params(self) -> dict[str, Any]:
        """Query-string parameters, then a JSON (or form) body's on top."""
        params: dict[str, Any] = dict(parse_qsl(self.query, keep_blank_values=True))
        if self.body.strip().startswith("{"):
            params.update(json.loads(self.body))
        elif self.body:
            params.update(parse_qsl(self.body, keep_blank_values=True))
        return params


@dataclass
class Outcome:
    """What the server does: send `reply` (after `delay_s`), or drop the socket (None)."""

    reply: Reply | None
    delay_s: float = 0.0


class LoopServer:
    """One loopback server; subclasses answer HTTP in `answer` and mount websocket endpoints."""

    server_version = "loopback/1"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._sock = socket.create_server((host, port))
        self._port = int(self._sock.getsockname()[1])  # still known after close
        self._endpoints: list[Endpoint] = []
        self._life_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._stopped = threading.Event()

    # Life cycle.

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self._host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Self:
        """Serve from a background thread (idempotent)."""
        with self._life_lock:
            if self._loop is None and not self._stopped.is_set():
                name = f"{type(self).__name__}:{self.port}"
                loop = asyncio.new_event_loop()
                self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix=name)
                loop.set_default_executor(self._pool)
                thread = threading.Thread(target=loop.run_forever, name=name, daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
                asyncio.run_coroutine_threadsafe(self._listen(), loop).result(WAIT_S)
        return self

    def serve_forever(self) -> None:
        """Serve until close() or an exception in this thread (Ctrl-C, SIGTERM) stops it."""
        self.start()
        while not self._stopped.wait(0.5):
            pass

    def close(self) -> None:
        with self._life_lock:  # idempotent: a second close finds nothing to stop
            self._stopped.set()
            loop, thread, pool = self._loop, self._thread, self._pool
            self._loop = self._pool = None
        if loop is not None and thread is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(WAIT_S)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=WAIT_S)
            loop.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self._sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def _listen(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._route_request)
        # A delayed answer (accept_then_timeout) must not hold up close().
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()

    async def _shutdown(self) -> None:
        await asyncio.gather(*(e._drop(1001, "going away") for e in self._endpoints))
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    # Helpers for endpoints and subclasses.

    def mount(self, endpoint: Endpoint) -> None:
        self._endpoints.append(endpoint)

    def call_soon(self, callback: Callable[..., object], *args: object) -> None:
        """Run `callback` on the loop thread, in call order; a no-op before start or after close."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # closing
                loop.call_soon_threadsafe(callback, *args)

    def run(self, coro: Coroutine[Any, Any, T], default: T) -> T:
        """Run `coro` on the loop thread and wait for it; `default` when not serving."""
        loop = self._loop
        if loop is None or loop.is_closed() or not self.running:
            coro.close()
            return default
        return asyncio.run_coroutine_threadsafe(coro, loop).result(WAIT_S)

    def spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        """A background task on the loop (loop thread only), cancelled on close."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def in_thread(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # HTTP.

    def answer(self, request: Request) -> Reply | Outcome:
        """Serve one HTTP request (on a worker thread)."""
        raise NotImplementedError

    async def _route_request(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            for endpoint in self._endpoints:
                if endpoint.accepts(request.path.rstrip("/")):
                    return await endpoint.socket(request)
            return web.Response(status=404, text="no websocket endpoint here")
        forwarded = Request(
            request.method,
            request.rel_url.raw_path,
            request.rel_url.raw_query_string,
            await request.text(),
            {k.lower(): v for k, v in request.headers.items()},
            request.remote or "127.0.0.1",
        )
        answer = await self.in_thread(self.answer, forwarded)
        outcome = answer if isinstance(answer, Outcome) else Outcome(answer)
        if outcome.delay_s:
            await asyncio.sleep(outcome.delay_s)
        reply = outcome.reply
        if reply is None or request.transport is None:
            # Close the socket without a byte of answer (the client sees the peer hang up).
            if request.transport is not None:
                request.transport.close()
            return web.Response()
        headers = {"Server": self.server_version, "Content-Type": reply.content_type}
        return web.Response(status=reply.status, body=reply.body, headers=headers | reply.headers)


# --- Websockets -------------------------------------------------------------------------------


_CLOSE = object()  # queued by `Connection.close`: the writer closes the socket there


class Connection:
    """One websocket client: what it subscribed to and, once it has shown its keys, `authed`."""

    _ids = itertools.count(1)

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, now: float) -> None:
        self.ws = ws
        self.path = request.path.rstrip("/")
        self.transport = request.transport
        self.id = f"loopback-conn-{next(self._ids)}"
        self.kind = ""  # what the endpoint made of the path
        self.authed = False
        self.topics: set[str] = set()
        self.subscriptions: set[int] = set()  # ids handed out on this connection
        self.next_subscription = 0
        self.last_pong = now
        self.queue: asyncio.Queue[object] = asyncio.Queue()

    def send(self, payload: Json) -> None:
        """Queue a message (loop thread only); the writer sends them in order."""
        self.queue.put_nowait(payload)

    def close(self) -> None:
        """Close the socket once what is queued before has gone."""
        self.queue.put_nowait(_CLOSE)


class Endpoint:
    """A websocket side mounted on a LoopServer; subclasses say which paths are theirs and
    speak the protocol in `opened` / `received`.

    ping_interval_s: the server pings that often and closes a connection whose last pong
    is older than pong_timeout_s (None: no pings). max_lifetime_s: a connection is closed
    from the server side that long after it opened (None: never).
    """

    paths: tuple[str, ...] = ()

    def __init__(
        self,
        host: LoopServer,
        *,
        ping_interval_s: float | None = None,
        pong_timeout_s: float = 60.0,
        max_lifetime_s: float | None = None,
    ) -> None:
        self.host = host
        self.ping_interval_s = ping_interval_s
        self.pong_timeout_s = pong_timeout_s
        self.max_lifetime_s = max_lifetime_s
        self.refuse = False
        self.counters = {"connections": 0, "refused": 0, "dropped": 0, "events": 0, "expired": 0}
        self.received_log: list[Json] = []  # every client message, for the tests
        self._connections: set[Connection] = set()
        self._lock = threading.Lock()  # the set is changed on the loop, read from anywhere
        host.mount(self)

    @property
    def url(self) -> str:
        return self.host.url

    def start(self) -> Self:
        self.host.start()
        return self

    def close(self) -> None:
        self.drop_all()

    def connections(self) -> list[Connection]:
        with self._lock:
            return list(self._connections)

    def count(self, wants: Callable[[Connection], bool]) -> int:
        return sum(1 for conn in self.connections() if wants(conn))

    # Faults.

    def drop_all(self, code: int = 1001, reason: str = "going away") -> int:
        """Close every websocket from the server side (as a venue does on maintenance)."""
        return self.host.run(self._drop(code, reason), 0)

    async def _drop(self, code: int, reason: str) -> int:
        connections = self.connections()
        await asyncio.gather(*(self._close(c, code, reason) for c in connections))
        self.counters["dropped"] += len(connections)
        return len(connections)

    @staticmethod
    async def _close(conn: Connection, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(conn.ws.close(code=code, message=reason.encode()), CLOSE_WAIT_S)
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        finally:
            if conn.transport is not None:
                conn.transport.close()

    # Pushing from other threads.

    def push(self, wants: Callable[[Connection], bool], payload: Json) -> None:
        """Send `payload` to every connection `wants` picks; a no-op before `start`."""
        self.deliver(lambda conn: [payload] if wants(conn) else [])

    def deliver(self, messages: Callable[[Connection], list[Json]]) -> None:
        """Send each connection the messages `messages` makes for it (thread-safe)."""
        if self._connections:  # nobody listening: nothing queues up
            self.host.call_soon(self._fanout, messages)

    def _fanout(self, messages: Callable[[Connection], list[Json]]) -> None:
        for conn in self.connections():
            for payload in messages(conn):
                conn.send(payload)
                self.counters["events"] += 1

    # One websocket.

    def accepts(self, path: str) -> bool:
        return path in self.paths

    async def socket(self, request: web.Request) -> web.StreamResponse:
        if self.refuse:
            self.counters["refused"] += 1
            return web.Response(status=503, text="websocket connections refused (fault)")
        # Pings and pongs are the endpoint's own (autoping off): its pong timeout is the venue's.
        ws = web.WebSocketResponse(autoping=False, timeout=CLOSE_WAIT_S)
        await ws.prepare(request)
        loop = asyncio.get_running_loop()
        conn = Connection(ws, request, loop.time())
        with self._lock:
            self._connections.add(conn)
            self.counters["connections"] += 1
        helpers = [loop.create_task(self._write(conn))]
        if self.ping_interval_s:
            helpers.append(loop.create_task(self._heartbeat(conn, self.ping_interval_s)))
        if self.max_lifetime_s:
            helpers.append(loop.create_task(self._expire(conn, self.max_lifetime_s)))
        try:
            if await self.opened(conn, request):
                async for message in ws:
                    if message.type == WSMsgType.PING:
                        await ws.pong(message.data)
                    elif message.type == WSMsgType.PONG:
                        conn.last_pong = loop.time()
                    elif message.type == WSMsgType.TEXT:
                        self._text(conn, message.data)
        finally:
            with self._lock:
                self._connections.discard(conn)
            conn.queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(helpers[0], CLOSE_WAIT_S)
            for task in helpers:
                task.cancel()
            self.closed(conn)
        return ws

    def _text(self, conn: Connection, text: str) -> None:
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            self.received_log.append(data)
            self.received(conn, data)
        else:
            self.malformed(conn)

    async def _write(self, conn: Connection) -> None:
        while (payload := await conn.queue.get()) is not None:
            if payload is _CLOSE:
                await self._close(conn, 1000, "")
                return
            try:
                await conn.ws.send_str(json.dumps(payload))
            except (ConnectionError, RuntimeError):
                return

    async def _heartbeat(self, conn: Connection, every_s: float) -> None:
        loop = asyncio.get_running_loop()
        while not conn.ws.closed:
            await asyncio.sleep(every_s)
            if loop.time() - conn.last_pong > self.pong_timeout_s:
                await self._close(conn, 1008, "pong timeout")
                return
            with contextlib.suppress(ConnectionError, RuntimeError):
                await conn.ws.ping()

    async def _expire(self, conn: Connection, after_s: float) -> None:
        await asyncio.sleep(after_s)
        self.counters["expired"] += 1
        await self._close(conn, 1001, "connection lifetime reached")

    # The protocol (loop thread).

    async def opened(self, conn: Connection, request: web.Request) -> bool:
        """Greet the new connection; False closes it."""
        return True

    def received(self, conn: Connection, message: Json) -> None:
        raise NotImplementedError

    def malformed(self, conn: Connection) -> None:
        """A text message that is not a JSON object."""

    def closed(self, conn: Connection) -> None:
        """The connection has gone."""


class TopicEndpoint(Endpoint):
    def subscribers(self, topic: str) -> int:
        """How many connections are subscribed to `topic` now."""
        return self.count(lambda conn: topic in conn.topics)


# --- The command line ------------------------------------------------------------------------


def command_line(
    make: Callable[[argparse.Namespace], LoopServer],
    *,
    prog: str,
    description: str,
    options: Callable[[argparse.ArgumentParser], None] = lambda parser: None,
    argv: Sequence[str] | None = None,
) -> int:
    """Serve one venue on 127.0.0.1:--port until Ctrl-C or SIGTERM; prints its URL first."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    options(parser)
    args = parser.parse_args(argv)
    server = make(args)
    signal.signal(signal.SIGTERM, _stop)
    print(f"{prog.split()[-1]} listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


def sandbox(venue: Callable[..., LoopServer]) -> int:
    """`python -m venues.<venue> --port N`: the venue with its defaults, as a local sandbox."""
    main = sys.modules["__main__"]
    module = main.__spec__.name if main.__spec__ else venue.__module__
    doc = (main.__doc__ or "").strip()
    return command_line(
        lambda args: venue(port=args.port),
        prog=f"python -m {module}",
        description=doc.split("\n")[0],
    )


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
