from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from marketdata.models import TIMEFRAMES, Market
from marketdata.services.ingestion import candles_ingest
from models_registry.models import ModelVersion
from quantum.services import HEARTBEAT_KEY, heartbeat_record


def bar_open(at: datetime, timeframe: str) -> datetime:
    """The open time of the bar that contains `at`."""
    step = TIMEFRAMES[timeframe].total_seconds()
    return datetime.fromtimestamp(at.timestamp() // step * step, UTC)


def ingest_bar(market: Market, timeframe: str, at: datetime) -> None:
    row = {
        "open_time": at.isoformat(),
        "open": "100",
        "high": "110",
        "low": "90",
        "close": "105",
        "volume": "12.5",
    }
    report = candles_ingest(market=market, timeframe=timeframe, rows=[row], source="test")
    assert report.inserted == 1


def active_model(timeframe: str) -> ModelVersion:
    return ModelVersion.objects.create(
        version=1,
        market_group="binance:BTC/USDT",
        timeframe=timeframe,
        path="var/artifacts/v1.json",
        sha256="0" * 64,
        feature_set="test",
        feature_set_hash="f" * 64,
        trained_at=timezone.now(),
        is_active=True,
        status=ModelVersion.Status.ACTIVE,
    )


@pytest.fixture
def everything_up(market, settings):  # type: ignore[no-untyped-def]
    """Heartbeats, a bar of the current period and an active model for the one market."""
    settings.QT_MARKET_SOURCE = "ccxt"
    timeframe = settings.QT_TIMEFRAME
    heartbeat_record(component="worker")
    heartbeat_record(component="beat")
    ingest_bar(market, timeframe, bar_open(timezone.now(), timeframe))
    active_model(timeframe)
    return market


def test_it_says_the_process_is_alive() -> None:
    response = Client().get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_it_is_not_ready_before_the_first_start() -> None:
    response = Client().get("/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["failed"] == ["beat", "markets", "worker"]
    assert body["checks"]["worker"]["detail"] == "no worker heartbeat yet"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["redis"]["ok"] is True
    assert body["checks"]["broker"]["ok"] is True


def test_it_names_a_market_without_data_or_model(market, settings) -> None:  # type: ignore[no-untyped-def]
    settings.QT_MARKET_SOURCE = "ccxt"
    heartbeat_record(component="worker")
    heartbeat_record(component="beat")
    body = Client().get("/ready").json()
    assert body["failed"] == ["data:BTC/USDT", "model:BTC/USDT"]
    assert body["checks"]["data:BTC/USDT"]["detail"] == "no candles"
    assert body["checks"]["model:BTC/USDT"]["detail"] == "no active model"


def test_it_is_ready_when_every_part_is_up(everything_up) -> None:  # type: ignore[no-untyped-def]
    response = Client().get("/ready")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok"
    assert body["failed"] == []
    assert set(body["checks"]) == {
        "database",
        "redis",
        "broker",
        "worker",
        "beat",
        "data:BTC/USDT",
        "model:BTC/USDT",
    }
    assert body["checks"]["model:BTC/USDT"]["detail"] == "v1"


def test_it_is_not_ready_with_a_stale_heartbeat(everything_up, settings) -> None:  # type: ignore[no-untyped-def]
    old = timezone.now() - settings.QT_HEARTBEAT_MAX_AGE - timedelta(seconds=30)
    cache.set(HEARTBEAT_KEY.format(component="worker"), old.isoformat(), 3600)
    response = Client().get("/ready")
    assert response.status_code == 503
    assert response.json()["failed"] == ["worker"]


def test_it_is_not_ready_with_stale_candles(market, settings) -> None:  # type: ignore[no-untyped-def]
    settings.QT_MARKET_SOURCE = "ccxt"
    timeframe = settings.QT_TIMEFRAME
    heartbeat_record(component="worker")
    heartbeat_record(component="beat")
    active_model(timeframe)
    behind = (settings.QT_STALE_BARS + 2) * TIMEFRAMES[timeframe]
    ingest_bar(market, timeframe, bar_open(timezone.now() - behind, timeframe))
    response = Client().get("/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["data:BTC/USDT"]
    assert body["checks"]["data:BTC/USDT"]["detail"].startswith("newest bar opened")


def test_it_reads_replay_freshness_from_the_last_tick(market, settings) -> None:  # type: ignore[no-untyped-def]
    settings.QT_MARKET_SOURCE = "replay"
    timeframe = settings.QT_TIMEFRAME
    heartbeat_record(component="worker")
    heartbeat_record(component="beat")
    active_model(timeframe)
    # A replayed bar from 2024: old by the wall clock, fresh by the replay clock.
    ingest_bar(market, timeframe, datetime(2024, 1, 1, tzinfo=UTC))
    assert Client().get("/ready").status_code == 200
    Market.objects.filter(pk=market.pk).update(last_ingest_at=timezone.now() - timedelta(hours=1))
    response = Client().get("/ready")
    assert response.status_code == 503
    assert response.json()["failed"] == ["data:BTC/USDT"]


def test_it_exports_trading_metrics_after_an_ingest(market, settings) -> None:  # type: ignore[no-untyped-def]
    ingest_bar(market, settings.QT_TIMEFRAME, datetime(2024, 1, 1, tzinfo=UTC))
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert "# TYPE qt_candles_ingested_total counter" in text
    found = re.search(r'qt_candles_ingested_total\{market="BTC/USDT",source="test"\} (\S+)', text)
    assert found is not None
    assert float(found.group(1)) >= 1
    assert "django_http_requests_total_by_method_total" in text


def test_it_echoes_a_valid_request_id() -> None:
    response = Client().get("/health", HTTP_X_REQUEST_ID="edge-1234.abc_DEF")
    assert response["X-Request-ID"] == "edge-1234.abc_DEF"


@pytest.mark.parametrize("incoming", [None, "has spaces", "x" * 65, "<script>"])
def test_it_makes_a_request_id_otherwise(incoming: str | None) -> None:
    headers = {"HTTP_X_REQUEST_ID": incoming} if incoming is not None else {}
    response = Client().get("/health", **headers)
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


# --- Synthetic checks: exchange connectivity and the audit chain ------------------------


@pytest.fixture
def loopback_account(everything_up, settings):  # type: ignore[no-untyped-def]
    """A testnet account pointed at a loopback Binance (the real ccxt client talks to it)."""
    from trading.adapters.ccxt_adapter import _clients
    from trading.models import ExchangeAccount
    from venues.binance import LoopbackExchange

    settings.QT_EXCHANGE_TIMEOUT_MS = 1500
    _clients.clear()
    exchange = LoopbackExchange(port=0, seed=1, symbols=["BTCUSDT"]).start()
    account = ExchangeAccount.objects.create(
        name="loopback-testnet",
        exchange=everything_up.exchange,
        mode=ExchangeAccount.Mode.TESTNET,
        api_url_override=exchange.url,
    )
    yield account, exchange
    exchange.close()
    _clients.clear()


def test_it_is_not_ready_until_an_exchange_account_has_been_checked(loopback_account) -> None:  # type: ignore[no-untyped-def]
    body = Client().get("/ready").json()
    assert body["failed"] == ["exchange:loopback-testnet"]
    assert body["checks"]["exchange:loopback-testnet"]["detail"] == "no synthetic check yet"


def test_the_beat_ping_marks_a_reachable_exchange_ready_and_an_unreachable_one_not(
    loopback_account,
) -> None:  # type: ignore[no-untyped-def]
    from quantum.tasks import exchange_ping

    _account, exchange = loopback_account
    exchange_ping.apply()
    response = Client().get("/ready")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"]["exchange:loopback-testnet"]["detail"].startswith(
        "time answered in"
    )
    assert any("/api/v3/time" in line for line in exchange.requests())
    text = Client().get("/metrics").content.decode()
    assert (
        'qt_exchange_up{account="loopback-testnet",exchange="binance",mode="testnet"} 1.0' in text
    )

    exchange.close()
    exchange_ping.apply()
    body = Client().get("/ready").json()
    assert body["failed"] == ["exchange:loopback-testnet"]
    assert "Error" in body["checks"]["exchange:loopback-testnet"]["detail"]
    text = Client().get("/metrics").content.decode()
    assert (
        'qt_exchange_up{account="loopback-testnet",exchange="binance",mode="testnet"} 0.0' in text
    )


def test_a_broken_audit_chain_makes_the_platform_not_ready(everything_up) -> None:  # type: ignore[no-untyped-def]
    from quantum.tasks import audit_chain_check
    from risk.models import AuditEvent
    from risk.services.audit import audit_record

    for n in range(3):
        audit_record(actor="test", action="test.event", payload={"n": n})
    audit_chain_check.apply()
    response = Client().get("/ready")
    assert response.status_code == 200
    assert response.json()["checks"]["audit"]["detail"].endswith("chain intact")
    assert "qt_audit_chain_ok 1.0" in Client().get("/metrics").content.decode()

    # Tampering as a superuser would (bypassing the ORM's save and, on PostgreSQL, the trigger).
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE risk_auditevent DISABLE TRIGGER USER")
        cursor.execute("UPDATE risk_auditevent SET actor = %s WHERE seq = 2", ["mallory"])
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE risk_auditevent ENABLE TRIGGER USER")
    assert AuditEvent.objects.get(seq=2).actor == "mallory"
    audit_chain_check.apply()
    response = Client().get("/ready")
    assert response.status_code == 503
    assert response.json()["failed"] == ["audit"]
    assert "entry #2" in response.json()["checks"]["audit"]["detail"]
    assert "qt_audit_chain_ok 0.0" in Client().get("/metrics").content.decode()


@pytest.mark.django_db
def test_it_refuses_metrics_to_proxied_or_outside_callers(settings) -> None:  # type: ignore[no-untyped-def]
    assert Client().get("/metrics").status_code == 200  # loopback, direct
    assert Client().get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 403
    assert Client(REMOTE_ADDR="93.184.216.34").get("/metrics").status_code == 403


@pytest.mark.django_db
def test_with_a_token_metrics_need_the_bearer_token(settings) -> None:  # type: ignore[no-untyped-def]
    settings.QT_METRICS_TOKEN = "scrape-secret-1"
    assert Client().get("/metrics").status_code == 403
    wrong = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 403
    ok = Client(REMOTE_ADDR="93.184.216.34").get(
        "/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret-1"
    )
    assert ok.status_code == 200
    assert b"qt_celery_queue_length" in ok.content


def test_beat_schedules_the_synthetic_checks(settings) -> None:  # type: ignore[no-untyped-def]
    from quantum.celery import beat_schedule

    schedule = beat_schedule()
    assert schedule["exchange-ping"]["task"] == "quantum.tasks.exchange_ping"
    assert schedule["exchange-ping"]["schedule"] == settings.QT_EXCHANGE_PING_INTERVAL
    assert schedule["audit-chain-check"]["task"] == "quantum.tasks.audit_chain_check"
    assert schedule["audit-chain-check"]["schedule"] == settings.QT_AUDIT_CHECK_INTERVAL


# --- Websocket streams --------------------------------------------------------------------


@pytest.fixture
def streamed_account(everything_up):  # type: ignore[no-untyped-def]
    """A testnet account with keys: runplatform, compose and systemd run its user stream."""
    from quantum.synthetic import EXCHANGE_KEY
    from trading.models import ExchangeAccount
    from trading.services.accounts import account_keys_set
    from trading.services.streams import StreamHealth

    account = ExchangeAccount.objects.create(
        name="binance-testnet", exchange=everything_up.exchange, mode=ExchangeAccount.Mode.TESTNET
    )
    account_keys_set(account=account, api_key="k" * 16, api_secret="s" * 16, actor="test")
    # Its synthetic exchange check has passed; only the stream is under test here.
    cache.set(
        EXCHANGE_KEY.format(account_id=account.pk),
        {"ok": True, "detail": "time answered", "at": timezone.now().isoformat()},
        300,
    )
    return StreamHealth(account_id=account.pk, account=account.name)


def test_an_account_whose_stream_never_reported_is_not_ready(streamed_account) -> None:  # type: ignore[no-untyped-def]
    body = Client().get("/ready").json()
    assert body["failed"] == ["stream:binance-testnet"]
    assert body["checks"]["stream:binance-testnet"]["detail"] == "no stream process has reported"


@pytest.mark.parametrize(
    ("state", "error", "ok", "detail"),
    [
        ("connected", "", True, "connected, 0 events"),
        ("polling", "no websocket user stream", True, "polling: no websocket user stream"),
        ("backoff", "NetworkError: reset by peer", False, "backoff: NetworkError: reset by peer"),
        ("stopped", "", True, "polling only"),
    ],
)
def test_a_stream_is_ready_while_connected_or_polling_and_not_while_reconnecting(
    streamed_account, state: str, error: str, ok: bool, detail: str
) -> None:  # type: ignore[no-untyped-def]
    streamed_account.state, streamed_account.last_error = state, error
    streamed_account.save()
    response = Client().get("/ready")
    check = response.json()["checks"]["stream:binance-testnet"]
    assert check["ok"] is ok
    assert detail in check["detail"]
    assert response.status_code == (200 if ok else 503)


def test_a_stream_that_fell_silent_is_not_ready_and_fails_its_healthcheck(
    streamed_account, capsys
) -> None:  # type: ignore[no-untyped-def]
    from quantum.healthcheck import main
    from trading.services.streams import HEALTH_KEY

    streamed_account.state = "connected"
    streamed_account.save()
    assert main("streams") == 0
    # Killed without a word (SIGKILL, OOM): its last record ages past the limit.
    record = cache.get(HEALTH_KEY.format(account_id=streamed_account.account_id))
    record["updated_at"] = (timezone.now() - timedelta(seconds=300)).isoformat()
    cache.set(HEALTH_KEY.format(account_id=streamed_account.account_id), record, 3600)
    check = Client().get("/ready").json()["checks"]["stream:binance-testnet"]
    assert check["ok"] is False
    assert "silent for 300s" in check["detail"]
    assert main("streams") == 1
    assert "stream:binance-testnet: FAILED" in capsys.readouterr().out


def test_the_market_stream_shows_once_it_has_reported(everything_up, settings) -> None:  # type: ignore[no-untyped-def]
    from marketdata.services.streams import MarketStreamHealth

    assert not any(name.startswith("stream:") for name in Client().get("/ready").json()["checks"])
    MarketStreamHealth(exchange=settings.QT_EXCHANGE, state="connected").save()
    check = Client().get("/ready").json()["checks"][f"stream:market:{settings.QT_EXCHANGE}"]
    assert check == {"ok": True, "detail": "connected, 0 events"}
