from __future__ import annotations

from django.db import models

from quantum.fields import money


class ModelVersion(models.Model):
    """A trained model: its artifact, how it was made, how it did, and where it runs.

    `status` is the lifecycle: candidate (registered, not evaluated) → approved (passed its
    gates) or rejected (failed one) → active (drives accounts) → retired. `is_active` says
    whether it serves signals; a model that is active without having passed its gates is
    *ungated*: it may drive paper accounts only, for observation (see `ungated`).
    """

    class Status(models.TextChoices):
        CANDIDATE = "candidate"
        APPROVED = "approved"
        ACTIVE = "active"
        RETIRED = "retired"
        REJECTED = "rejected"

    class Drift(models.TextChoices):
        UNKNOWN = "unknown"
        OK = "ok"
        WARNING = "warning"
        CRITICAL = "critical"

    version = models.PositiveIntegerField()
    tag = models.CharField(max_length=64, blank=True)
    # Which markets the model serves, e.g. "binance:BTC/USDT,ETH/USDT".
    market_group = models.CharField(max_length=200)
    timeframe = models.CharField(max_length=4)
    path = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64)
    params_json = models.JSONField(default=dict)
    metrics_json = models.JSONField(default=dict)
    # {gate name: {"value", "threshold", "passed"}}, as evaluated at registration.
    gates_json = models.JSONField(default=dict, blank=True)
    feature_set = models.CharField(max_length=64)
    feature_set_hash = models.CharField(max_length=64)
    data_start = models.DateTimeField(null=True, blank=True)
    data_end = models.DateTimeField(null=True, blank=True)
    trained_at = models.DateTimeField()
    is_active = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CANDIDATE)
    activated_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    # The model this one replaced when it was activated: where a rollback goes back to.
    previous = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Per-feature bin edges and proportions of the training rows, for drift (PSI).
    drift_reference = models.JSONField(default=dict, blank=True)
    drift_json = models.JSONField(default=dict, blank=True)  # latest PSI per feature
    drift_status = models.CharField(max_length=8, choices=Drift.choices, default=Drift.UNKNOWN)
    drift_checked_at = models.DateTimeField(null=True, blank=True)
    # Set by the drift fallback: the model keeps its place but every call is HOLD.
    forced_hold = models.BooleanField(default=False)
    # Shadow: predicts on live bars without orders, from `shadow_since` on.
    shadow = models.BooleanField(default=False)
    shadow_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["market_group", "timeframe"],
                condition=models.Q(is_active=True),
                name="one_active_model_per_group",
            ),
            models.UniqueConstraint(
                fields=["market_group", "timeframe", "version"], name="uniq_model_version"
            ),
        ]
        ordering = ["-trained_at"]

    def __str__(self) -> str:
        marks = " UNGATED paper only" if self.ungated else ""
        marks += " HOLD" if self.forced_hold else ""
        return f"v{self.version} {self.market_group} {self.timeframe} ({self.status}){marks}"

    @property
    def gates_passed(self) -> bool:
        """Whether the recorded gates all passed (models registered before gates: by status)."""
        if self.gates_json:
            return all(bool(g.get("passed")) for g in self.gates_json.values())
        return self.status in (self.Status.APPROVED, self.Status.ACTIVE)

    @property
    def ungated(self) -> bool:
        """Active without having passed its gates: paper accounts only, for observation."""
        return self.is_active and not self.gates_passed

    @property
    def family(self) -> str:
        return f"{self.market_group}|{self.timeframe}"


class TrainingRun(models.Model):
    """One (re)training of a model family, with its progress for the UI and the CLI."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        SKIPPED = "skipped"  # another training of the same family held the lock

    market_group = models.CharField(max_length=200)
    timeframe = models.CharField(max_length=4)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)  # percent
    message = models.CharField(max_length=300, blank=True)
    requested_by = models.CharField(max_length=150)
    config_json = models.JSONField(default=dict, blank=True)
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"training #{self.pk} {self.market_group} {self.timeframe} ({self.status})"

    @property
    def done(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED, self.Status.SKIPPED)


class ShadowSignal(models.Model):
    """What a shadow model would have said on a live bar; it never becomes an order."""

    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="shadow_signals"
    )
    market = models.ForeignKey(
        "marketdata.Market", on_delete=models.CASCADE, related_name="shadow_signals"
    )
    timeframe = models.CharField(max_length=4)
    candle_time = models.DateTimeField()
    action = models.CharField(max_length=4)
    prob_buy = models.FloatField()
    prob_hold = models.FloatField()
    prob_sell = models.FloatField()
    price = money()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["model_version", "market", "timeframe", "candle_time"],
                name="uniq_shadow_signal",
            )
        ]
        ordering = ["-candle_time", "-id"]

    def __str__(self) -> str:
        return f"shadow v{self.model_version_id} {self.action} {self.candle_time:%Y-%m-%d %H:%M}"
