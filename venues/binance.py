"""A loopback Binance spot exchange: the real ccxt client trades against it on 127.0.0.1.

It speaks the part of Binance's spot REST API (developers.binance.com, "Spot API") that
ccxt's `binance` class uses for spot trading: time, exchangeInfo, klines (from the shared
CSV files), order (POST/GET/DELETE), openOrders, allOrders, myTrades, account, and the
sapi coin and margin-pair lists that ccxt's load_markets asks for when it has keys (no
margin pairs here). Signed endpoints check the X-MBX-APIKEY header, the HMAC-SHA256
signature and the timestamp as Binance does, and every error is Binance's JSON, so ccxt
raises its usual exceptions. Fills follow loopback_ledger's simple model.

Faults (see loopback_faults) and state are steered from Python or, for another process,
through JSON control endpoints (no auth; loopback only):

    GET  /_control/state         orders, trades, balances, prices, faults injected
    GET  /_control/faults        rules, counters, log      DELETE /_control/faults  clear
    POST /_control/faults        {"faults": [{"kind": "http_5xx", "count": 2, "execute": true}],
                                  "clear": false, "seed": 7}
    POST /_control/price         {"symbol": "BTCUSDT", "price": "50000"}  -> {"trades": [...]}
    POST /_control/balances      {"USDT": "1000", "BTC": "0"}
    POST /_control/config        {"fee_rate": "0.001", "slippage_bps": "5"}
    POST /_control/fill_pending  {"symbol": "BTCUSDT"}  (symbol optional) -> {"trades": [...]}
    GET  /_control/ws            websocket state          POST /_control/ws  {"drop": true,
                                  "refuse": false, "klines": {"symbol", "interval", "rows"}}

Websockets (user data stream, kline streams) are served on the same port: venues.ws. The
server is venues.transport's (aiohttp); importing it needs neither Django nor ccxt.

Run on its own: python -m venues.binance --port 8765 [--seed 1] [--data-dir D].
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from venues.binance_api import Reply, SpotApi, json_reply
from venues.binance_limits import SpotLimits
from venues.data import KlineStore, default_data_dir, spec_for
from venues.faults import REQUEST_KINDS, FaultPlan, FaultRule, make_rule
from venues.ledger import Ledger
from venues.orders import BinanceError, FillPlan, Json, NewOrder
from venues.transport import LoopServer, Outcome, Request, command_line
from venues.ws import MAX_LIFETIME_S, PING_INTERVAL_S, PONG_TIMEOUT_S, WsHub

logger = logging.getLogger(__name__)

# Defaults for a loopback-only exchange; they guard nothing.
API_KEY = "loopback-api-key"
API_SECRET = "loopback-api-secret"  # noqa: S105
DEFAULT_BALANCES = {"USDT": "100000"}


class LoopbackExchange(LoopServer):
    """A loopback server speaking Binance spot; use `with LoopbackExchange() as ex`.

    ws_ping_interval_s, ws_pong_timeout_s, ws_max_lifetime_s: the websockets' pings and
    24-hour cut-off (venues.ws), Binance's by default; a test makes them short.
    """

    server_version = "loopback-binance/1"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
        data_dir: Path | str | None = None,
        symbols: Sequence[str] | None = None,
        api_key: str = API_KEY,
        api_secret: str = API_SECRET,
        balances: Mapping[str, Decimal | str | int] | None = None,
        fee_rate: Decimal | str = "0.001",
        slippage_bps: Decimal | str = "0",
        rate_limits: SpotLimits | bool = True,
        client_ids_unique: str = "open",
        ws_ping_interval_s: float | None = PING_INTERVAL_S,
        ws_pong_timeout_s: float = PONG_TIMEOUT_S,
        ws_max_lifetime_s: float | None = MAX_LIFETIME_S,
    ) -> None:
        super().__init__(host=host, port=port)
        self.data = KlineStore(Path(data_dir) if data_dir else default_data_dir())
        names = symbols if symbols is not None else self.data.symbols()
        specs = {spec.symbol: spec for spec in map(spec_for, names)}
        start = DEFAULT_BALANCES if balances is None else balances
        self.ledger = Ledger(
            specs=specs,
            balances={asset: Decimal(str(amount)) for asset, amount in start.items()},
            fee_rate=Decimal(str(fee_rate)),
            slippage_bps=Decimal(str(slippage_bps)),
            client_ids_unique=client_ids_unique,
            default_price=self.data.last_close,
        )
        self.faults = FaultPlan(seed)
        # Binance's request weight and order-count limits (venues/binance_limits.py): on by
        # default with the real numbers; a SpotLimits with small windows for tests.
        if isinstance(rate_limits, SpotLimits):
            self.limits = rate_limits
        else:
            self.limits = SpotLimits(enabled=rate_limits)
        self.api = SpotApi(
            ledger=self.ledger,
            data=self.data,
            api_key=api_key,
            api_secret=api_secret,
            plan_for=self._fill_plan,
            rate_limits=self.limits.rate_limits_json,
        )
        # The websocket side, on the same port, hears every order change the ledger makes.
        self.ws = WsHub(
            self,
            api_key=api_key,
            api_secret=api_secret,
            settle=self.ledger.settle,
            ping_interval_s=ws_ping_interval_s,
            pong_timeout_s=ws_pong_timeout_s,
            max_lifetime_s=ws_max_lifetime_s,
        )
        self.ledger.listeners.append(self.ws.order_event)
        self._requests: deque[str] = deque(maxlen=100_000)
        self._requests_lock = threading.Lock()

    # Market and account (symbols as "BTCUSDT" or "BTC/USDT").

    def price(self, symbol: str) -> Decimal:
        return self.ledger.price(_symbol(symbol))

    def set_price(self, symbol: str, price: Decimal | str | float) -> list[Json]:
        """Move the reference price; returns the trades of the limit orders it crossed."""
        trades = self.ledger.set_price(_symbol(symbol), Decimal(str(price)))
        return [t.as_json() for t in trades]

    def set_balance(self, asset: str, free: Decimal | str | int) -> None:
        self.ledger.set_balance(asset.upper(), Decimal(str(free)))

    def balances(self) -> dict[str, dict[str, str]]:
        return self.ledger.balances()

    def configure(
        self, *, fee_rate: Decimal | str | None = None, slippage_bps: Decimal | str | None = None
    ) -> None:
        with self.ledger.lock:
            if fee_rate is not None:
                self.ledger.fee_rate = Decimal(str(fee_rate))
            if slippage_bps is not None:
                self.ledger.slippage_bps = Decimal(str(slippage_bps))

    def fill_pending(self, symbol: str | None = None) -> list[Json]:
        """Fill now what waits on a timer (delay_fill, partial_fill with an interval)."""
        trades = self.ledger.fill_pending(_symbol(symbol) if symbol else None)
        return [t.as_json() for t in trades]

    # The exchange-side ledger.

    def orders(self, symbol: str | None = None) -> list[Json]:
        """Every order as GET /api/v3/order shows it, oldest first."""
        orders: list[Json] = self.ledger.snapshot()["orders"]  # type: ignore[assignment]
        return [o for o in orders if symbol is None or o["symbol"] == _symbol(symbol)]

    def trades(self, symbol: str | None = None) -> list[Json]:
        """Every trade as GET /api/v3/myTrades shows it, oldest first."""
        trades: list[Json] = self.ledger.snapshot()["trades"]  # type: ignore[assignment]
        return [t for t in trades if symbol is None or t["symbol"] == _symbol(symbol)]

    def state(self) -> Json:
        """What GET /_control/state answers."""
        return {**self.ledger.snapshot(), "faults_injected": self.faults_injected}

    def requests(self) -> list[str]:
        """Exchange API requests received so far, as "METHOD /path"."""
        with self._requests_lock:
            return list(self._requests)

    # Faults.

    def inject(
        self,
        kind: str,
        *,
        endpoint: str | None = None,
        count: int | None = None,
        probability: float | None = None,
        **params: Any,
    ) -> FaultRule:
        """Add a fault rule (see loopback_faults for kinds, parameters and semantics)."""
        rule = make_rule(kind, endpoint=endpoint, count=count, probability=probability, **params)
        return self.faults.add(rule)

    def clear_faults(self) -> None:
        """Drop every rule and lift an IP ban; the counters keep their history."""
        self.faults.clear()

    @property
    def faults_injected(self) -> dict[str, int]:
        return dict(self.faults.injected)

    # Serving a request (called from the server's worker threads).

    def answer(self, request: Request) -> Outcome:
        api_key = request.headers.get("x-mbx-apikey")
        return self._serve(request.method, request.target, request.body, api_key, request.remote)

    def _serve(
        self,
        method: str,
        target: str,
        body: str,
        api_key: str | None,
        client_ip: str = "127.0.0.1",
    ) -> Outcome:
        parts = urlsplit(target)
        path = parts.path
        try:
            if path.startswith("/_control/"):
                return Outcome(self._control(method, path, body))
            return self._serve_api(method, path, parts.query, body, api_key, client_ip)
        except Exception:
            logger.exception("loopback exchange failed on %s %s", method, path)
            msg = "An unknown error occurred while processing the request."
            return Outcome(json_reply(500, {"code": -1000, "msg": msg}))

    def _serve_api(
        self,
        method: str,
        path: str,
        query: str,
        body: str,
        api_key: str | None,
        client_ip: str = "127.0.0.1",
    ) -> Outcome:
        with self._requests_lock:
            self._requests.append(f"{method} {path}")
        now = time.time()
        if self.faults.banned(method, path, now):
            return Outcome(self._banned_reply(now))
        params = dict(parse_qsl(body)) | dict(parse_qsl(query))
        admission = self.limits.admit(client_ip, api_key or "", method, path, params)
        if admission.reply is not None:
            return Outcome(admission.reply)
        outcome = self._serve_admitted(method, path, query, body, api_key, now)
        self.limits.settle(admission, outcome.reply, method, path)
        return outcome

    def _serve_admitted(
        self, method: str, path: str, query: str, body: str, api_key: str | None, now: float
    ) -> Outcome:
        rule = self.faults.draw(method, path, REQUEST_KINDS)
        kind = rule.kind if rule else None
        params = rule.params if rule else {}
        if kind == "rate_limit_429":
            msg = (
                "Too many requests; current limit of IP(127.0.0.1) is 6000 requests per minute."
                " Please use the websocket for live updates to avoid polling the API."
            )
            retry = {"Retry-After": str(max(1, math.ceil(float(params["retry_after"]))))}
            return Outcome(json_reply(429, {"code": -1003, "msg": msg}, retry))
        if kind == "ip_ban_418":
            self.faults.ban(now + float(params["retry_after"]))
            return Outcome(self._banned_reply(now))
        if kind == "drop_connection":
            return Outcome(None)
        if kind == "http_5xx" and not params["execute"]:
            return Outcome(_server_error(int(params["status"])))
        # /api/v3/userDataStream (listenKey) is gone since 2026-02-20: a 404 as any unknown path.
        reply = self.api.handle(method, path, query, body, api_key)
        if kind == "http_5xx":
            return Outcome(_server_error(int(params["status"])))
        if kind == "accept_then_timeout":
            if params["mode"] == "drop":
                return Outcome(None)
            return Outcome(reply, delay_s=float(params["delay_s"]))
        return Outcome(reply)

    def _banned_reply(self, now: float) -> Reply:
        until = self.faults.banned_until
        msg = (
            f"Way too many requests; IP(127.0.0.1) banned until {int(until * 1000)}."
            " Please use the websocket for live updates to avoid bans."
        )
        retry = {"Retry-After": str(max(1, math.ceil(until - now)))}
        return json_reply(418, {"code": -1003, "msg": msg}, retry)

    def _fill_plan(self, new: NewOrder) -> FillPlan:
        # Drawn only for orders the exchange accepts, so a rule is never spent on a reject.
        plan = FillPlan()
        if new.type == "MARKET":
            delay = self.faults.draw("POST", "/api/v3/order", frozenset({"delay_fill"}))
            if delay is not None:
                delay_s = delay.params["delay_s"]
                plan = FillPlan(delay_s=None if delay_s is None else float(delay_s))
        partial = self.faults.draw("POST", "/api/v3/order", frozenset({"partial_fill"}))
        if partial is not None:
            plan = FillPlan(
                parts=int(partial.params["parts"]),
                interval_s=float(partial.params["interval_s"]),
                delay_s=plan.delay_s,
            )
        return plan

    # Control endpoints.

    def _control(self, method: str, path: str, body: str) -> Reply:
        try:
            data = json.loads(body) if body.strip() else {}
            if not isinstance(data, dict):
                raise ValueError("the body must be a JSON object")
            answer = self._control_answer(method, path, data)
        except (ValueError, KeyError, TypeError, ArithmeticError, InvalidOperation) as exc:
            return json_reply(400, {"error": str(exc)})
        except BinanceError as exc:
            return json_reply(400, {"error": exc.msg, "code": exc.code})
        if answer is None:
            return json_reply(404, {"error": f"no control endpoint {method} {path}"})
        return json_reply(200, answer)

    def _control_answer(self, method: str, path: str, data: dict[str, Any]) -> object | None:
        if (method, path) == ("GET", "/_control/state"):
            return self.state()
        if path == "/_control/faults" and method in ("GET", "POST", "DELETE"):
            if method == "DELETE" or data.get("clear"):
                self.clear_faults()
            if "seed" in data:
                self.faults.reseed(data["seed"])
            specs = data.get("faults", [data] if "kind" in data else [])
            for spec in specs:
                options = {k: v for k, v in spec.items() if k != "params"}
                self.inject(**{**spec.get("params", {}), **options})
            return self.faults.snapshot()
        if (method, path) == ("POST", "/_control/price"):
            return {"trades": self.set_price(data["symbol"], str(data["price"]))}
        if (method, path) == ("POST", "/_control/balances"):
            for asset, amount in data.items():
                self.set_balance(asset, str(amount))
            return self.balances()
        if (method, path) == ("POST", "/_control/config"):
            self.configure(**data)
            return {
                "fee_rate": str(self.ledger.fee_rate),
                "slippage_bps": str(self.ledger.slippage_bps),
            }
        if path == "/_control/ws" and method in ("GET", "POST"):
            return self.ws.control(data)
        if (method, path) == ("POST", "/_control/fill_pending"):
            return {"trades": self.fill_pending(data.get("symbol"))}
        return None


def _server_error(status: int) -> Reply:
    # Binance's gateway answers 5xx with an HTML page, not error JSON: the outcome of the
    # request is unknown to the client (ccxt: ExchangeNotAvailable; 504: RequestTimeout).
    text = f"<html><body><h1>{status} Server Error</h1></body></html>"
    return Reply(status, text.encode(), "text/html")


def _symbol(symbol: str) -> str:
    return symbol.replace("/", "").upper()


def main(argv: Sequence[str] | None = None) -> int:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--seed", type=int, default=None, help="seed of the fault RNG")
        parser.add_argument(
            "--data-dir", type=Path, default=None, help="binance_<SYMBOL>_1h.csv files"
        )
        parser.add_argument("--api-key", default=API_KEY)
        parser.add_argument("--api-secret", default=API_SECRET)
        parser.add_argument(
            "--balance",
            action="append",
            default=[],
            metavar="ASSET=AMOUNT",
            help=f"starting balance (repeatable; default {DEFAULT_BALANCES})",
        )
        parser.add_argument("--fee-rate", default="0.001")
        parser.add_argument("--slippage-bps", default="0")

    def make(args: argparse.Namespace) -> LoopbackExchange:
        balances: dict[str, Decimal | str | int] | None = None
        if args.balance:
            try:
                pairs = (b.split("=", 1) for b in args.balance)
                balances = {a.upper(): Decimal(v) for a, v in pairs}
            except (ValueError, InvalidOperation):
                raise SystemExit("--balance takes ASSET=AMOUNT, e.g. USDT=100000") from None
        return LoopbackExchange(
            port=args.port,
            seed=args.seed,
            data_dir=args.data_dir,
            api_key=args.api_key,
            api_secret=args.api_secret,
            balances=balances,
            fee_rate=args.fee_rate,
            slippage_bps=args.slippage_bps,
        )

    return command_line(
        make,
        prog="python -m venues.binance",
        description=(__doc__ or "").split("\n")[0],
        options=options,
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
