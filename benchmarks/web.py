"""Page and API latency with 1,000,000 candles and 100,000 orders in PostgreSQL.

    DATABASE_URL=postgres://user@127.0.0.1:5432/anything python -m benchmarks.web [--json]

Creates its own database (`qt_bench_web` on DATABASE_URL's server; dropped first and at the
end unless --keep), migrates it, bulk-loads the candles (the real BTC/USDT 1m path from
QT_DATA_DIR, tiled forward in time and rescaled so it stays continuous) and the orders with
some fills through COPY, then requests the dashboard, its chart data, the orders page and
GET /api/v1/orders/ through Django's test client as a logged-in viewer: a warm-up, then N
timed requests each. Prints p50/p95 in milliseconds. Never touches any other database.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DB_NAME = "qt_bench_web"


def _admin_dsn(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/postgres"))


def _recreate(url: str, *, drop_only: bool = False) -> str:
    import psycopg

    with psycopg.connect(_admin_dsn(url), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        if not drop_only:
            conn.execute(f"CREATE DATABASE {DB_NAME}")
    return urlunsplit(urlsplit(url)._replace(path=f"/{DB_NAME}"))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _template_row(obj, fields, connection) -> list:  # type: ignore[no-untyped-def]
    """A model instance's column values as COPY wants them (JSON as text)."""
    row = []
    for f in fields:
        value = f.get_db_prep_save(getattr(obj, f.attname), connection)
        if hasattr(value, "obj"):  # psycopg Jsonb
            value = json.dumps(value.obj)
        row.append(value)
    return row


def _copy(model, rows, overrides: list[str], template) -> None:  # type: ignore[no-untyped-def]
    """COPY rows into the model's table: the template's values, `overrides` columns per row."""
    from django.db import connection

    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    base = _template_row(template, fields, connection)
    names = [f.column for f in fields]
    index = [names.index(c) for c in overrides]
    cols = ", ".join(f'"{c}"' for c in names)
    with connection.cursor() as cursor:
        raw = cursor.cursor  # the psycopg cursor
        with raw.copy(f'COPY "{model._meta.db_table}" ({cols}) FROM STDIN') as copy:
            for values in rows:
                row = list(base)
                for i, v in zip(index, values, strict=True):
                    row[i] = v
                copy.write_row(row)


def load(candles: int, orders: int, fills_every: int) -> dict:
    from django.conf import settings
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from django.db import connection

    from marketdata.models import Candle
    from marketdata.services.sync import market_register
    from marketdata.sources import read_candle_csv
    from quantum.bootstrap import roles_ensure, trading_defaults_ensure
    from trading.models import Fill, Order

    call_command("migrate", verbosity=0)
    roles_ensure()
    account = trading_defaults_ensure()
    market = market_register(exchange_code="binance", symbol="BTC/USDT")
    viewer = User.objects.create_user("vera", password="bench-only-password")
    viewer.groups.add(Group.objects.get(name="viewer"))

    source = read_candle_csv(Path(settings.QT_DATA_DIR) / "binance_BTCUSDT_1m.csv")
    closes = [Decimal(str(r["close"])) for r in source]
    t0 = datetime(2021, 1, 1, tzinfo=UTC)
    started = time.perf_counter()

    def candle_rows():  # type: ignore[no-untyped-def]
        scale = Decimal(1)
        prev = closes[0]
        for i in range(candles):
            j = i % len(closes)
            if j == 0 and i:
                scale = prev / closes[0]  # continue from where the last lap ended
            close = (closes[j] * scale).quantize(Decimal("0.01"))
            open_ = prev
            high, low = max(open_, close), min(open_, close)
            prev = close
            yield (t0 + timedelta(minutes=i), open_, high, low, close)

    template = Candle(
        market=market,
        timeframe="1m",
        open_time=t0,
        open=Decimal(1),
        high=Decimal(1),
        low=Decimal(1),
        close=Decimal(1),
        volume=Decimal("1.5"),
    )
    _copy(Candle, candle_rows(), ["open_time", "open", "high", "low", "close"], template)
    candles_s = time.perf_counter() - started

    started = time.perf_counter()
    order_t = Order(
        account=account,
        market=market,
        client_order_id="x",
        side="BUY",
        quantity=Decimal("0.01"),
        status=Order.Status.FILLED,
        strategy="model",
        filled_quantity=Decimal("0.01"),
        average_price=Decimal("20000"),
    )
    now = datetime.now(tz=UTC)

    def order_rows():  # type: ignore[no-untyped-def]
        for n in range(orders):
            at = now - timedelta(minutes=orders - n)
            side = "BUY" if n % 2 == 0 else "SELL"
            status = Order.Status.FILLED if n % 10 else Order.Status.CANCELED
            yield (f"qt-bench-{n}", side, status, at, at)

    _copy(
        Order,
        order_rows(),
        ["client_order_id", "side", "status", "created_at", "updated_at"],
        order_t,
    )
    ids = list(Order.objects.order_by("id").values_list("id", flat=True)[::fills_every])
    fill_t = Fill(
        order_id=ids[0],
        trade_id="t",
        price=Decimal("20000"),
        quantity=Decimal("0.01"),
        fee=Decimal("0.2"),
        fee_currency="USDT",
        filled_at=now,
    )
    _copy(
        Fill,
        ((pk, f"t{pk}", now - timedelta(minutes=len(ids) - k)) for k, pk in enumerate(ids)),
        ["order_id", "trade_id", "filled_at"],
        fill_t,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return {
        "market_id": market.pk,
        "viewer": viewer,
        "candles_load_s": round(candles_s, 1),
        "orders_load_s": round(time.perf_counter() - started, 1),
        "fills": len(ids),
    }


def measure(client, url: str, n: int, warmup: int) -> list[float]:  # type: ignore[no-untyped-def]
    for _ in range(warmup):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
    times = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--candles", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--fills-every", type=int, default=5, help="one fill per N orders")
    parser.add_argument("-n", type=int, default=50, help="timed requests per URL")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="leave the database behind")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("DATABASE_URL must point at a PostgreSQL server (a scratch DB is made)")
    os.environ["DATABASE_URL"] = _recreate(url)
    os.environ["QT_TIMEFRAME"] = "1m"  # the chart reads the 1m bars loaded here
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantum.settings")
    if not os.environ.get("QT_FERNET_KEY"):
        from cryptography.fernet import Fernet

        os.environ["QT_FERNET_KEY"] = Fernet.generate_key().decode()
    import django

    django.setup()
    from django.conf import settings
    from django.db import connections
    from django.test import Client

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    if settings.EMBEDDED_REDIS:
        from quantum.embedded import redis_start

        redis_start(settings.REDIS_SOCKET)
    try:
        loaded = load(args.candles, args.orders, args.fills_every)
        client = Client()
        client.force_login(loaded["viewer"])
        urls = {
            "dashboard": "/",
            "chart_json": f"/markets/{loaded['market_id']}/chart.json",
            "orders_list": "/orders/",
            "orders_list_last_page": "/orders/?page=2000",
            "api_orders": "/api/v1/orders/",
        }
        result: dict = {}
        for name, path in urls.items():
            times = measure(client, path, args.n, args.warmup)
            result[f"{name}_p50_ms"] = round(statistics.median(times), 1)
            result[f"{name}_p95_ms"] = round(_pct(times, 0.95), 1)
        result.update(
            candles=args.candles,
            orders=args.orders,
            fills=loaded["fills"],
            requests_per_url=args.n,
            candles_load_s=loaded["candles_load_s"],
            orders_load_s=loaded["orders_load_s"],
            cpus=os.cpu_count(),
            python=platform.python_version(),
        )
    finally:
        connections.close_all()
        if not args.keep:
            _recreate(url, drop_only=True)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>28}: {value}")


if __name__ == "__main__":
    main()
