from __future__ import annotations

from decimal import Decimal

from django.db import models

from quantum.fields import money


class ExchangeAccount(models.Model):
    class Mode(models.TextChoices):
        PAPER = "paper"
        TESTNET = "testnet"
        LIVE = "live"

    name = models.CharField(max_length=64, unique=True)
    exchange = models.ForeignKey("marketdata.Exchange", on_delete=models.PROTECT)

    class MarketType(models.TextChoices):
        SPOT = "spot"
        FUTURES = "futures"  # USDT-margined perpetuals

    class MarginMode(models.TextChoices):
        ISOLATED = "isolated"
        CROSS = "cross"

    # Live trading is never a default: an operator must switch an account to it.
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.PAPER)
    market_type = models.CharField(
        max_length=8, choices=MarketType.choices, default=MarketType.SPOT
    )
    leverage = models.DecimalField(max_digits=6, decimal_places=2, default=Decimal("1"))
    margin_mode = models.CharField(
        max_length=8, choices=MarginMode.choices, default=MarginMode.ISOLATED
    )
    # Fernet tokens (quantum.crypto); the plain key is never stored or shown, only its hint.
    api_key_enc = models.TextField(blank=True)
    api_secret_enc = models.TextField(blank=True)
    api_password_enc = models.TextField(blank=True)
    api_key_hint = models.CharField(max_length=8, blank=True)
    # Points the ccxt client at another host (a loopback exchange, a regional endpoint).
    api_url_override = models.URLField(blank=True)
    # Set at every start for exchange-backed accounts: no trading until reconciled.
    needs_reconcile = models.BooleanField(default=True)
    reconciled_at = models.DateTimeField(null=True, blank=True)
    live_enabled_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    live_enabled_at = models.DateTimeField(null=True, blank=True)
    quote_currency = models.CharField(max_length=16, default="USDT")
    starting_cash = money(default=Decimal("10000"))
    cash = money(default=Decimal("10000"))
    fee_bps = models.DecimalField(max_digits=8, decimal_places=4, default=Decimal("10"))
    slippage_bps = models.DecimalField(max_digits=8, decimal_places=4, default=Decimal("5"))
    strategy_enabled = models.BooleanField(default=True)

    class Sizing(models.TextChoices):
        FIXED_FRACTION = "fixed_fraction"  # position_fraction of equity (risk limits)
        ATR = "atr"  # risk_fraction of equity over atr_multiple ATRs

    sizing = models.CharField(max_length=16, choices=Sizing.choices, default=Sizing.FIXED_FRACTION)
    risk_fraction = models.DecimalField(max_digits=6, decimal_places=4, default=Decimal("0.01"))
    atr_multiple = models.DecimalField(max_digits=6, decimal_places=2, default=Decimal("2"))
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.mode})"

    @property
    def is_paper(self) -> bool:
        return self.mode == self.Mode.PAPER

    @property
    def api_key_masked(self) -> str:
        return f"…{self.api_key_hint}" if self.api_key_hint else ""


class Signal(models.Model):
    class Action(models.TextChoices):
        BUY = "BUY"
        SELL = "SELL"
        HOLD = "HOLD"

    market = models.ForeignKey(
        "marketdata.Market", on_delete=models.CASCADE, related_name="signals"
    )
    timeframe = models.CharField(max_length=4)
    candle_time = models.DateTimeField(help_text="open time of the closed bar it was made on")
    action = models.CharField(max_length=4, choices=Action.choices)
    prob_buy = models.FloatField()
    prob_hold = models.FloatField()
    prob_sell = models.FloatField()
    price = money()  # close of the bar
    model_version = models.ForeignKey(
        "models_registry.ModelVersion", on_delete=models.PROTECT, related_name="signals"
    )
    feature_set_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["market", "timeframe", "candle_time", "model_version"],
                name="uniq_signal_per_bar_and_model",
            )
        ]
        ordering = ["-candle_time", "-id"]

    def __str__(self) -> str:
        return f"{self.action} {self.market_id} {self.candle_time:%Y-%m-%d %H:%M}"


class Order(models.Model):
    class Side(models.TextChoices):
        BUY = "BUY"
        SELL = "SELL"

    class Status(models.TextChoices):
        NEW = "new"
        SUBMITTED = "submitted"
        ACCEPTED = "accepted"
        PARTIALLY_FILLED = "partially_filled"
        FILLED = "filled"
        CANCELED = "canceled"
        REJECTED = "rejected"
        EXPIRED = "expired"

    account = models.ForeignKey(ExchangeAccount, on_delete=models.PROTECT, related_name="orders")
    market = models.ForeignKey("marketdata.Market", on_delete=models.PROTECT, related_name="orders")
    signal = models.ForeignKey(
        Signal, null=True, blank=True, on_delete=models.SET_NULL, related_name="orders"
    )
    # Derived from strategy, market and the decision: a retry finds the same order.
    client_order_id = models.CharField(max_length=64, unique=True)
    exchange_order_id = models.CharField(max_length=64, blank=True)
    side = models.CharField(max_length=4, choices=Side.choices)
    order_type = models.CharField(max_length=8, default="market")
    quantity = money()
    price = money(null=True, blank=True)
    filled_quantity = money(default=Decimal("0"))
    average_price = money(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    strategy = models.CharField(max_length=32, default="model")
    reason = models.CharField(max_length=300, blank=True)
    error = models.CharField(max_length=500, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    # Last time the exchange was asked about this order (in-flight resolution, reconciliation).
    checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.side} {self.quantity} {self.market_id} [{self.status}]"


class OrderEvent(models.Model):
    """Every state transition of an order, with its cause (also in the audit log)."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=16)
    to_status = models.CharField(max_length=16)
    cause = models.CharField(max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.order_id}: {self.from_status} -> {self.to_status} ({self.cause})"


class Fill(models.Model):
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="fills")
    trade_id = models.CharField(max_length=64)  # exchange trade id; fills are de-duplicated on it
    price = money()
    quantity = money()
    fee = money()
    fee_currency = models.CharField(max_length=16)
    filled_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["order", "trade_id"], name="uniq_fill_trade_id")
        ]
        ordering = ["-filled_at", "-id"]

    def __str__(self) -> str:
        return f"fill {self.quantity} @ {self.price}"

    @property
    def notional(self) -> Decimal:
        return self.price * self.quantity


class Position(models.Model):
    account = models.ForeignKey(ExchangeAccount, on_delete=models.CASCADE, related_name="positions")
    market = models.ForeignKey("marketdata.Market", on_delete=models.CASCADE)
    quantity = money(default=Decimal("0"))
    average_price = money(default=Decimal("0"))
    realized_pnl = money(default=Decimal("0"))
    # The open round trip: what was bought, what the exits brought in, its gross PnL so far and
    # its fees. A Trade is written from these when the position returns to zero.
    fees_paid = money(default=Decimal("0"))
    round_quantity = money(default=Decimal("0"))
    round_exit_notional = money(default=Decimal("0"))
    round_gross_pnl = money(default=Decimal("0"))
    opened_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "market"], name="uniq_position")]

    def __str__(self) -> str:
        return f"{self.quantity} {self.market_id} @ {self.average_price}"

    @property
    def is_open(self) -> bool:
        return self.quantity != 0


class Trade(models.Model):
    """A closed round trip (entry to exit) with its net PnL."""

    account = models.ForeignKey(ExchangeAccount, on_delete=models.CASCADE, related_name="trades")
    market = models.ForeignKey("marketdata.Market", on_delete=models.CASCADE)
    side = models.CharField(max_length=5, default="LONG")
    quantity = money()
    entry_time = models.DateTimeField()
    exit_time = models.DateTimeField()
    entry_price = money()
    exit_price = money()
    fees = money()
    pnl = money()

    class Meta:
        ordering = ["-exit_time"]

    def __str__(self) -> str:
        return f"{self.side} {self.quantity} {self.market_id} pnl {self.pnl}"


class BacktestRun(models.Model):
    """One backtest, stored with everything needed to reproduce and compare it."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    created_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    config = models.JSONField()
    # sha256 of the canonical config JSON: equal configs on equal data give equal results.
    config_hash = models.CharField(max_length=64, db_index=True)
    data_source = models.CharField(max_length=300)
    data_start = models.DateTimeField(null=True, blank=True)
    data_end = models.DateTimeField(null=True, blank=True)
    bars = models.PositiveIntegerField(default=0)
    code_version = models.CharField(max_length=64)
    seed = models.IntegerField(default=0)
    schema_version = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)  # 0..1
    error = models.TextField(blank=True)
    results = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"backtest #{self.pk} {self.config.get('strategy', '?')} [{self.status}]"


class Installation(models.Model):
    """This installation's random salt for client order ids: one row, made with the database.

    A rebuilt database against the same exchange account gets a new salt, so its first
    decisions cannot map to the client ids of the old database's orders.
    """

    salt = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"installation {self.pk}"
