"""Personal API tokens: the secret is shown once; only its sha256 is stored."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from marketdata.models import TIMEFRAMES


class ApiToken(models.Model):
    class Scope(models.TextChoices):
        # Each scope includes the ones before it (operate ⊃ trade ⊃ read), like the roles.
        READ = "read"
        TRADE = "trade"
        OPERATE = "operate"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=64)
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.READ)
    # "qt_" and the first characters of the secret: enough to recognise a token in a list.
    prefix = models.CharField(max_length=16)
    # sha256 hex of the whole secret; a database dump does not authenticate anyone.
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.prefix}… {self.name} ({self.scope})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class UserPreference(models.Model):
    """A user's own defaults and which notifications reach them (quantum/preferences.py)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preference"
    )
    default_exchange = models.ForeignKey(
        "marketdata.Exchange", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The first chosen market (lowest through-row id) is the dashboard's default.
    markets = models.ManyToManyField("marketdata.Market", blank=True, related_name="+")
    timeframe = models.CharField(max_length=4, choices=[(k, k) for k in TIMEFRAMES], default="1h")
    # Live toasts in the browser; the data itself (rows, positions) is always pushed.
    notify_fills = models.BooleanField(default=True)
    notify_signals = models.BooleanField(default=True)
    notify_risk = models.BooleanField(default=True)
    # Risk incidents by email, for operators (off by default: opt in).
    notify_email = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"preferences of {self.user}"
