from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Value
from django.db.models.functions import Coalesce

from quantum.fields import money

POSITIVE = [MinValueValidator(Decimal("0.00000001"))]
NON_NEGATIVE = [MinValueValidator(Decimal("0"))]


class TradingState(models.Model):
    """Global (account null) or per exchange account trading state; the kill switch halts."""

    class State(models.TextChoices):
        ACTIVE = "ACTIVE"
        REDUCING = "REDUCING"
        HALTED = "HALTED"

    # How restrictive each state is: the circuit breaker only ever moves up this scale.
    SEVERITY = {State.ACTIVE: 0, State.REDUCING: 1, State.HALTED: 2}

    account = models.OneToOneField(
        "trading.ExchangeAccount",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="trading_state",
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.ACTIVE)
    kill_switch = models.BooleanField(default=False)
    reason = models.CharField(max_length=500, blank=True)
    # What moved it last: an operator, KILL_SWITCH, MAX_DAILY_LOSS, EXECUTION_ERRORS, ...
    code = models.CharField(max_length=32, blank=True)
    # The circuit breaker's count of execution errors in a row (reset by a success).
    consecutive_errors = models.PositiveIntegerField(default=0)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # NULLs are distinct in a unique index: COALESCE makes "no account" one value.
            models.UniqueConstraint(
                Coalesce("account", Value(0)), name="one_trading_state_per_scope"
            )
        ]

    def __str__(self) -> str:
        scope = self.account or "global"
        return f"{scope}: {self.state}{' (kill switch)' if self.kill_switch else ''}"


class RiskLimits(models.Model):
    """Limits per exchange account (or the global default when account is null).

    An account with its own row uses that row only; every other account uses the global row.
    Money is in the account's quote currency. Change them only through
    `risk.services.limits.risk_limits_update` (reason, audit, version bump).
    """

    account = models.OneToOneField(
        "trading.ExchangeAccount",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="risk_limits",
    )
    max_order_notional = money(default=5000, validators=POSITIVE)
    max_position_notional = money(default=5000, validators=POSITIVE)
    max_gross_exposure = money(default=10000, validators=POSITIVE)
    max_leverage = models.DecimalField(
        max_digits=6, decimal_places=2, default=Decimal("1"), validators=POSITIVE
    )
    max_open_positions = models.PositiveIntegerField(default=2)
    max_daily_loss = money(default=1000, validators=POSITIVE)
    # Fraction of peak equity (0.2 = 20 %).
    max_drawdown = models.DecimalField(
        max_digits=6, decimal_places=4, default=Decimal("0.2"), validators=POSITIVE
    )
    # The order-rate throttle: at most this many approved orders per window, per account.
    max_orders_per_window = models.PositiveIntegerField(default=100)
    throttle_window_seconds = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1)]
    )
    # Circuit breaker thresholds.
    max_consecutive_errors = models.PositiveIntegerField(
        default=3, validators=[MinValueValidator(1)]
    )
    max_slippage_bps = models.DecimalField(
        max_digits=8, decimal_places=2, default=Decimal("100"), validators=POSITIVE
    )
    stale_data_bars = models.PositiveIntegerField(default=3, validators=[MinValueValidator(1)])
    # Fraction of equity committed by one entry (position sizing).
    position_fraction = models.DecimalField(max_digits=6, decimal_places=4, default="0.2")
    # Bumped by every change; each RiskDecision records the version it was checked under.
    version = models.PositiveIntegerField(default=1)
    changed_by = models.CharField(max_length=150, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "risk limits"
        constraints = [
            models.UniqueConstraint(Coalesce("account", Value(0)), name="one_risk_limits_per_scope")
        ]

    def __str__(self) -> str:
        return f"limits for {self.account or 'global'}"


class MarketLimits(models.Model):
    """Instrument limits on order quantity (in base units) for one market, for every account."""

    market = models.OneToOneField(
        "marketdata.Market", on_delete=models.CASCADE, related_name="risk_limits"
    )
    min_quantity = money(default=0, validators=NON_NEGATIVE)
    max_quantity = money(null=True, blank=True, validators=POSITIVE)  # null: no maximum
    version = models.PositiveIntegerField(default=1)
    changed_by = models.CharField(max_length=150, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "market limits"

    def __str__(self) -> str:
        return f"quantity limits for {self.market}"


class RiskDecision(models.Model):
    """The outcome of the pre-trade checks for one order intent."""

    signal = models.ForeignKey(
        "trading.Signal",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="risk_decisions",
    )
    account = models.ForeignKey("trading.ExchangeAccount", on_delete=models.CASCADE)
    market = models.ForeignKey("marketdata.Market", on_delete=models.CASCADE)
    side = models.CharField(max_length=4)
    quantity = money()
    price = money(null=True, blank=True)
    notional = money()
    approved = models.BooleanField()
    code = models.CharField(max_length=32, blank=True)  # MAX_NOTIONAL, TRADING_HALTED, ...
    detail = models.CharField(max_length=500, blank=True)
    reduces = models.BooleanField(default=False)
    flatten = models.BooleanField(default=False)
    # The RiskLimits version the order was checked under (see docs/RISK.md, limit changes).
    limits_version = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["account", "approved", "created_at"])]

    def __str__(self) -> str:
        verdict = "approved" if self.approved else f"denied {self.code}"
        return f"{self.side} {self.quantity} {verdict}"


class Incident(models.Model):
    """Something an operator should see; acknowledged, then resolved, by an operator."""

    class Severity(models.TextChoices):
        INFO = "info"
        WARNING = "warning"
        CRITICAL = "critical"

    class Status(models.TextChoices):
        OPEN = "open"
        ACKNOWLEDGED = "acknowledged"
        RESOLVED = "resolved"

    severity = models.CharField(max_length=10, choices=Severity.choices)
    code = models.CharField(max_length=64)
    title = models.CharField(max_length=200)
    detail = models.TextField(blank=True)
    account = models.ForeignKey(
        "trading.ExchangeAccount",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="incidents",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    acknowledged_by = models.CharField(max_length=150, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"[{self.severity}] {self.title}"


class EquitySnapshot(models.Model):
    """An account's equity at a moment, with the running peak: daily loss and drawdown."""

    account = models.ForeignKey(
        "trading.ExchangeAccount", on_delete=models.CASCADE, related_name="equity_snapshots"
    )
    taken_at = models.DateTimeField()
    equity = money()
    peak = money()  # max(equity) over this and every earlier snapshot of the account

    class Meta:
        ordering = ["-taken_at", "-id"]
        indexes = [models.Index(fields=["account", "taken_at"])]

    def __str__(self) -> str:
        return f"{self.account_id} {self.taken_at:%Y-%m-%d %H:%M:%S} {self.equity}"


class FlattenRequest(models.Model):
    """An operator's request to close positions; trading.tasks.flatten_positions carries it out.

    While one is pending for an account, its reducing orders sent with `flatten=True` pass
    a halt (and only those).
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        DONE = "done"
        FAILED = "failed"

    account = models.ForeignKey(
        "trading.ExchangeAccount",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="flatten_requests",
        help_text="empty: every account",
    )
    requested_by = models.CharField(max_length=150)
    reason = models.CharField(max_length=500)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    detail = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"flatten {self.account or 'all accounts'} ({self.status})"


class AuditEvent(models.Model):
    """Append-only, hash-chained: hash = sha256(prev_hash + canonical JSON of this entry)."""

    seq = models.PositiveBigIntegerField(unique=True)
    created_at = models.DateTimeField()
    actor = models.CharField(max_length=150)  # user name, or system:<component>
    action = models.CharField(max_length=64, db_index=True)  # order.created, fill.recorded, ...
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    payload = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["seq"]
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.object_type}:{self.object_id}"
