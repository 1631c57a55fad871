"""Soak test: the whole platform in replay mode at high speed for M minutes.

    python -m benchmarks.soak --minutes 30 [--interval 0.5] [--json]

Creates a fresh PostgreSQL database (qt_soak_<pid>, on the server of DATABASE_URL or
postgres://postgres@127.0.0.1:5432) and uses a dedicated Redis database (REDIS_URL, default
redis://127.0.0.1:6379/2, flushed first), starts the real platform (`manage.py runplatform`:
Daphne, Celery worker, beat and Flower) replaying BTC/USDT and ETH/USDT 1h bars from
QT_DATA_DIR with one bar per market every `--interval` seconds on the paper account, and
then, for M minutes after /ready first turns 200, samples:

- resident memory of every process of the platform (growth: median of the last 10% of the
  samples against the median of the samples just after the warm-up, the first 20%);
- restarts (a process name whose pid changes, or the supervisor exiting);
- errors: ERROR/CRITICAL JSON log lines and tracebacks in the captured output of all processes.

At the end: bars replayed, signals, orders, fills; lost work (orders not in a final state,
approved decisions without an order, signals the long/flat strategy had to act on with
neither an order nor a risk decision, replayed bars without a signal — each older than a
grace period); duplicates (orders per decision, fills per trade id, overfilled orders,
signals and candles per bar); the audit chain (audit_verify) and /ready. Then it stops the
platform with SIGTERM, checks that no process is left and drops the database.
Exit status 1 when the run was not clean.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

BASE_DIR = Path(__file__).resolve().parent.parent
# Orders, decisions and bars younger than this at the end may still be in flight.
GRACE_S = 15.0
MEMORY_LIMIT_PCT = 10.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http_status(url: str) -> int:
    try:
        # Our own platform on loopback, http:// only.
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310  # nosec B310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return 0


# --- the database ---------------------------------------------------------------------------


def _server_url(database_url: str | None) -> str:
    """The PostgreSQL server to create the soak database on (its maintenance database)."""
    url = database_url or "postgres://postgres@127.0.0.1:5432/postgres"
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        raise SystemExit(f"the soak runs on PostgreSQL: DATABASE_URL is {parts.scheme}://…")
    return urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))


def _with_database(server_url: str, name: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def _admin_sql(server_url: str, sql: str) -> None:
    import psycopg

    conninfo = server_url.replace("postgres://", "postgresql://", 1)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


# --- processes and memory -------------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, cmdline) for every process we can read."""
    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: ppid follows the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        table[int(entry.name)] = (ppid, cmdline)
    return table


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _role(cmdline: str) -> str:
    if "daphne" in cmdline:
        return "web"
    if " flower" in cmdline:
        return "flower"
    if " beat" in cmdline:
        return "beat"
    if " worker" in cmdline:
        return "worker"
    if "stream_accounts" in cmdline:
        return "streams"
    if "stream_markets" in cmdline:
        return "market-stream"
    return cmdline.split(" ")[0].rsplit("/", 1)[-1] or "?"


def platform_processes(root: int) -> dict[str, int]:
    """Named processes of the platform: supervisor, its children, the worker's pool."""
    table = _proc_table()
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _) in table.items():
        children[ppid].append(pid)
    found: dict[str, int] = {}
    if root in table:
        found["supervisor"] = root
    for pid in sorted(children[root]):
        role = _role(table[pid][1])
        name = role if role not in found else f"{role}-{pid}"
        found[name] = pid
        if role == "worker":
            # Prefork pool processes: numbered by age, so a replaced child shows up as a
            # new pid under the same name (a restart).
            for index, child in enumerate(sorted(children[pid]), start=1):
                found[f"worker-pool-{index}"] = child
    return found


def processes_with_marker(marker: str) -> list[str]:
    """Processes whose environment carries this run's marker (left running = a leak)."""
    left = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker.encode() in environ:
            left.append(f"{entry.name}: {cmdline.strip()}")
    return left


@dataclass
class Samples:
    memory: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    pids: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    ready: Counter[int] = field(default_factory=Counter)

    def take(self, elapsed: float, procs: dict[str, int]) -> None:
        for name, pid in procs.items():
            rss = _rss_mb(pid)
            if rss is None:
                continue
            self.memory[name].append((elapsed, rss))
            if not self.pids[name] or self.pids[name][-1] != pid:
                self.pids[name].append(pid)

    def restarts(self) -> dict[str, int]:
        return {name: len(pids) - 1 for name, pids in self.pids.items() if len(pids) > 1}

    def growth(self, duration: float, warmup: float) -> dict[str, dict[str, float]]:
        """Per process: median after the warm-up vs. median of the last 10% of the run."""
        out: dict[str, dict[str, float]] = {}
        for name, series in self.memory.items():
            start = [mb for t, mb in series if warmup <= t <= warmup + max(duration * 0.1, 5)]
            end = [mb for t, mb in series if t >= duration * 0.9]
            if not start or not end:
                continue
            first, last = statistics.median(start), statistics.median(end)
            out[name] = {
                "start_mb": round(first, 1),
                "end_mb": round(last, 1),
                "growth_pct": round((last - first) / first * 100, 1),
            }
        return out


# --- logs ------------------------------------------------------------------------------------

_TRACEBACK = re.compile(r"^Traceback \(most recent call last\)")


def log_errors(path: Path, start: int = 0, end: int | None = None) -> tuple[int, list[str]]:
    """ERROR/CRITICAL JSON lines and bare tracebacks in the captured output (a byte range)."""
    count = 0
    samples: list[str] = []
    with path.open("rb") as raw:
        raw.seek(start)
        data = raw.read() if end is None else raw.read(max(0, end - start))
    for line in data.decode(errors="replace").splitlines():
        text = line.strip()
        message = None
        if text.startswith("{"):
            try:
                record = json.loads(text)
            except ValueError:
                record = None
            if isinstance(record, dict) and record.get("level") in ("ERROR", "CRITICAL"):
                message = f"{record.get('level')} {record.get('logger')}: {record.get('msg')}"
                exc = str(record.get("exc") or "")
                if exc:
                    message += " | " + exc.strip().splitlines()[-1]
        elif _TRACEBACK.match(text) or re.match(r"^\[[^\]]*(ERROR|CRITICAL)", text):
            message = text
        if message is not None:
            count += 1
            if len(samples) < 5:
                samples.append(message[:400])
    return count, samples


# --- the database at the end ----------------------------------------------------------------


def _django_setup(env: dict[str, str]) -> None:
    """Django in this process, on the soak's database (after its bootstrap migrated it)."""
    for key in ("DATABASE_URL", "REDIS_URL", "QT_FERNET_KEY", "QT_DATA_DIR", "QT_ARTIFACT_DIR"):
        os.environ[key] = env[key]
    os.environ["DJANGO_SETTINGS_MODULE"] = "quantum.settings"
    import django

    django.setup()


def replay_limits() -> None:
    """Open the paper account's daily-loss and drawdown limits (audited, with a reason).

    The replay clock plays months of bars in one wall-clock day, so the model's losses over
    those months all count against one "day": the automatic kill switch would stop trading
    within minutes and the soak would measure a halted loop. Every other limit stays.
    """
    from decimal import Decimal

    from risk.services.limits import risk_limits_update
    from trading.models import ExchangeAccount

    risk_limits_update(
        limits=None,
        account=ExchangeAccount.objects.get(name="paper"),
        changes={"max_daily_loss": Decimal(10) ** 9, "max_drawdown": Decimal(1)},
        reason="soak test: the replay clock plays months of bars per wall-clock day",
        actor="system:soak",
    )


def ledger_check(*, replay_start: datetime, ended_at: datetime, interval: float) -> dict[str, Any]:
    """Counts, lost work and duplicates, read from the soak database after the run."""
    from django.db.models import Count, F, Sum

    from marketdata.models import Candle
    from risk.models import RiskDecision
    from risk.services.audit import audit_verify
    from trading.models import Fill, Order, Signal

    final = {Order.Status.FILLED, Order.Status.CANCELED, Order.Status.REJECTED}
    final.add(Order.Status.EXPIRED)
    settled = ended_at - timedelta(seconds=GRACE_S)
    problems: list[str] = []
    lost = 0

    stuck = Order.objects.exclude(status__in=final).filter(created_at__lt=settled)
    for order in stuck[:5]:
        problems.append(f"order {order.client_order_id} still {order.status}")
    lost += stuck.count()

    orphan = RiskDecision.objects.filter(
        approved=True, signal__isnull=False, created_at__lt=settled
    ).exclude(signal__orders__account_id=F("account_id"))
    for decision in orphan[:5]:
        problems.append(f"approved decision {decision.pk} (signal {decision.signal_id}) no order")
    lost += orphan.count()

    # The long/flat strategy replayed over the stored outcome: a BUY while flat or a SELL
    # while long must have left an order or a risk decision behind.
    acted = set(Order.objects.filter(signal__isnull=False).values_list("signal_id", flat=True))
    acted |= set(
        RiskDecision.objects.filter(signal__isnull=False).values_list("signal_id", flat=True)
    )
    filled_sides = dict(
        Order.objects.filter(signal__isnull=False, status=Order.Status.FILLED).values_list(
            "signal_id", "side"
        )
    )
    held: dict[int, bool] = defaultdict(bool)
    for sig in Signal.objects.filter(created_at__lt=settled).order_by("candle_time", "id"):
        should = (sig.action == "BUY" and not held[sig.market_id]) or (
            sig.action == "SELL" and held[sig.market_id]
        )
        if sig.pk in acted:
            side = filled_sides.get(sig.pk)
            if side is not None:
                held[sig.market_id] = side == "BUY"
        elif should:
            lost += 1
            problems.append(
                f"signal {sig.pk} {sig.action} {sig.candle_time:%Y-%m-%d %H:%M}: no order"
            )

    # Every replayed bar (but the newest few, still being processed) has its signal.
    recent = int(GRACE_S / interval) + 4
    unsignalled = 0
    # order_by(): Candle.Meta.ordering would put open_time into the DISTINCT.
    for market_id in Candle.objects.order_by().values_list("market_id", flat=True).distinct():
        times = list(
            Candle.objects.filter(market_id=market_id, open_time__gte=replay_start)
            .order_by("open_time")
            .values_list("open_time", flat=True)
        )[:-recent]
        if not times:
            continue
        have = set(
            Signal.objects.filter(market_id=market_id, candle_time__in=times).values_list(
                "candle_time", flat=True
            )
        )
        missing = [t for t in times if t not in have]
        unsignalled += len(missing)
        for t in missing[:3]:
            problems.append(f"bar {market_id} {t:%Y-%m-%d %H:%M}: no signal")
    lost += unsignalled

    duplicates = 0
    per_decision = (
        Order.objects.filter(signal__isnull=False)
        .values("signal_id", "account_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    duplicates += sum(row["n"] - 1 for row in per_decision)
    duplicates += sum(
        row["n"] - 1
        for row in Fill.objects.values("order_id", "trade_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    overfilled = Order.objects.annotate(q=Sum("fills__quantity")).filter(q__gt=F("quantity"))
    duplicates += overfilled.count()
    duplicates += sum(
        row["n"] - 1
        for row in Signal.objects.values(
            "market_id", "timeframe", "candle_time", "model_version_id"
        )
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    duplicates += sum(
        row["n"] - 1
        for row in Candle.objects.values("market_id", "timeframe", "open_time")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    ok, summary = audit_verify()
    return {
        "bars_processed": Candle.objects.filter(open_time__gte=replay_start).count(),
        "signals": Signal.objects.count(),
        "signals_by_action": dict(Counter(Signal.objects.values_list("action", flat=True))),
        "orders": Order.objects.count(),
        "orders_by_status": dict(Counter(Order.objects.values_list("status", flat=True))),
        "fills": Fill.objects.count(),
        "risk_decisions": RiskDecision.objects.count(),
        "risk_denials": dict(
            Counter(RiskDecision.objects.filter(approved=False).values_list("code", flat=True))
        ),
        "lost": lost,
        "duplicates": duplicates,
        "problems": problems[:20],
        "audit_chain": {"ok": ok, "detail": summary},
    }


# --- the run ---------------------------------------------------------------------------------


def soak(args: argparse.Namespace) -> dict[str, Any]:
    server = _server_url(args.database_url or os.environ.get("DATABASE_URL"))
    db_name = f"qt_soak_{os.getpid()}"
    redis_url = args.redis_url or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/2"
    workdir = Path(tempfile.mkdtemp(prefix="qt-soak-", dir=args.log_dir))
    log_path = workdir / "platform.log"
    port = _free_port()
    marker = f"qt-soak-{os.getpid()}-{secrets.token_hex(4)}"
    data_dir = os.environ.get("QT_DATA_DIR", str(BASE_DIR.parent / "shared" / "data"))
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if not k.startswith(("QT_", "DJANGO_"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "quantum.settings",
            "DATABASE_URL": _with_database(server, db_name),
            "REDIS_URL": redis_url,
            "QT_FERNET_KEY": Fernet.generate_key().decode(),
            "QT_MARKET_SOURCE": "replay",
            "QT_DATA_DIR": str(Path(data_dir).resolve()),
            "QT_MARKETS": "BTC/USDT,ETH/USDT",
            "QT_TIMEFRAME": "1h",
            "QT_REPLAY_START": args.replay_start,
            "QT_REPLAY_INTERVAL": str(args.interval),
            "QT_HISTORY_DAYS": str(args.history_days),
            "QT_PORT": str(port),
            "QT_FLOWER_PORT": str(_free_port()),
            "QT_ARTIFACT_DIR": str(workdir / "artifacts"),
            "QT_ADMIN_USER": "admin",
            "QT_ADMIN_PASSWORD": secrets.token_urlsafe(16),
            "QT_AUDIT_CHECK_INTERVAL": "60",
            # Scheduled retraining stays off: the soak measures the live loop.
            "QT_RETRAIN_INTERVAL": "0",
            "QT_SOAK_MARKER": marker,
            # Flower's task memory is bounded (FLOWER_MAX_TASKS, 10,000 under runplatform);
            # at the soak's ~7 tasks/s a bound of 2,000 is reached within the warm-up, so
            # what is measured is that Flower stays at its bound, not that it fills it.
            "FLOWER_MAX_TASKS": os.environ.get("FLOWER_MAX_TASKS", "2000"),
        }
    )
    _check_replay_long_enough(Path(env["QT_DATA_DIR"]), args)
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    _admin_sql(server, f'CREATE DATABASE "{db_name}"')
    base = f"http://127.0.0.1:{port}"
    samples = Samples()
    result: dict[str, Any] = {"minutes": args.minutes, "interval_s": args.interval}
    proc: subprocess.Popen | None = None
    died = False
    ready_offset = 0
    loads: list[float] = []
    started = time.monotonic()
    try:
        with log_path.open("w") as log:
            # Bootstrap first (migrate, history, the first model), so the limits below are
            # in place before the loop places its first order.
            subprocess.run(
                [sys.executable, "manage.py", "bootstrap"],
                cwd=BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=args.startup_timeout,
            )
            _django_setup(env)
            replay_limits()
            proc = subprocess.Popen(
                [sys.executable, "manage.py", "runplatform", "--no-bootstrap"],
                cwd=BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        while time.monotonic() - started < args.startup_timeout and proc.poll() is None:
            if _http_status(f"{base}/ready") == 200:
                break
            time.sleep(1)
        result["startup_s"] = round(time.monotonic() - started, 1)
        if _http_status(f"{base}/ready") != 200:
            raise RuntimeError(f"/ready never turned 200 in {args.startup_timeout}s")
        # Bootstrap and the 503s of /ready before it turned 200 are reported, not counted.
        ready_offset = log_path.stat().st_size
        duration = args.minutes * 60
        every = min(max(duration / 200, 1.0), 10.0)
        t0 = time.monotonic()
        next_ready = 0.0
        try:
            while (elapsed := time.monotonic() - t0) < duration:
                if proc.poll() is not None:
                    died = True
                    break
                samples.take(elapsed, platform_processes(proc.pid))
                loads.append(os.getloadavg()[0])
                if elapsed >= next_ready:
                    samples.ready[_http_status(f"{base}/ready")] += 1
                    next_ready = elapsed + 15
                time.sleep(every)
        except KeyboardInterrupt:
            # Stopped early (Ctrl-C, SIGTERM): report what was measured, as not clean.
            result["interrupted"] = True
            duration = time.monotonic() - t0
        result["ready_at_end"] = _http_status(f"{base}/ready")
        result["ready_checks"] = {str(k): v for k, v in samples.ready.items()}
        ended_at = datetime.now(UTC)
        memory = samples.growth(duration, duration * 0.2)
        result["memory"] = memory
        result["max_memory_growth_pct"] = max(
            (m["growth_pct"] for m in memory.values()), default=0.0
        )
    finally:
        left: list[str] = []
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            result["exit_code"] = proc.returncode
            time.sleep(1)
            left = processes_with_marker(marker)
            for line in left:
                # Our own leftovers only: the marker is this run's.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)
        result["left_running"] = left
        if log_path.exists():
            result["errors"], result["error_samples"] = log_errors(log_path, ready_offset)
            result["startup_errors"], result["startup_error_samples"] = log_errors(
                log_path, 0, ready_offset
            )
        else:
            result["errors"], result["error_samples"] = 0, []
        if loads:
            result["load_1m"] = {
                "mean": round(statistics.mean(loads), 2),
                "max": round(max(loads), 2),
                "cpus": os.cpu_count(),
            }
        restarts = samples.restarts()
        result["restarts"] = sum(restarts.values()) + (1 if died else 0)
        result["restarts_by_process"] = restarts
        if "memory" in result:
            result.update(
                ledger_check(
                    replay_start=_parse(args.replay_start),
                    ended_at=ended_at,
                    interval=args.interval,
                )
            )
            from django.db import connections

            connections.close_all()
        if not args.keep_db:
            _admin_sql(server, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
            result["database"] = f"{db_name} (dropped)"
        else:
            result["database"] = db_name
        result["log"] = str(log_path)
    return result


def _check_replay_long_enough(data_dir: Path, args: argparse.Namespace) -> None:
    """The replay must not run out of bars before the soak ends (/ready would go stale)."""
    start = _parse(args.replay_start)
    needed = args.minutes * 60 / args.interval * 1.2 + 60
    for symbol in ("BTCUSDT", "ETHUSDT"):
        path = data_dir / f"binance_{symbol}_1h.csv"
        if not path.exists():
            raise SystemExit(f"no replay file {path} (QT_DATA_DIR)")
        last = _parse(path.read_text().rstrip().rsplit("\n", 1)[-1].split(",", 1)[0])
        available = (last - start) / timedelta(hours=1)
        if available < needed:
            raise SystemExit(
                f"{path.name} has {available:.0f} bars after --replay-start {args.replay_start}, "
                f"the soak needs ~{needed:.0f}: start the replay earlier or raise --interval"
            )


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def verdict(result: dict[str, Any]) -> bool:
    return bool(
        result.get("bars_processed", 0) > 0
        and result["errors"] == 0
        and result["restarts"] == 0
        and result.get("max_memory_growth_pct", 100.0) <= MEMORY_LIMIT_PCT
        and result.get("lost", 1) == 0
        and result.get("duplicates", 1) == 0
        and result.get("audit_chain", {}).get("ok")
        and result.get("ready_at_end") == 200
        and not result["left_running"]
        and result.get("exit_code") == 0
        and not result.get("interrupted")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between bars")
    parser.add_argument("--replay-start", default="2024-03-01T00:00:00Z")
    parser.add_argument("--history-days", type=int, default=120)
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    parser.add_argument("--database-url", help="PostgreSQL server (default: DATABASE_URL's)")
    parser.add_argument("--redis-url", help="a Redis database to spare (it is flushed)")
    parser.add_argument("--log-dir", default=None, help="where the captured output goes")
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    # SIGTERM (a CI timeout, `kill`) stops the platform and drops the database like Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.log_dir:
        Path(args.log_dir).mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    result = soak(args)
    result["ok"] = verdict(result)
    result["wall_s"] = round(time.monotonic() - started, 1)
    result["machine"] = f"{platform.machine()} {os.cpu_count()} cpu, load {os.getloadavg()}"
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
