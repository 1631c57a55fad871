"""Promotion, rollback, shadow and forced HOLD: who drives the accounts of a model family.

At most one model per market group and timeframe is active (a database constraint). Only
a model that passed its gates is promoted; the single exception is `allow_ungated`, used
for a family that has no usable model at all, which then runs *ungated*: paper accounts
only, marked as such wherever it appears (`ModelVersion.ungated`, selectors.model_may_drive).
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from marketdata.lib.features import FEATURE_SET_HASH
from marketdata.models import Candle
from models_registry.models import ModelVersion
from models_registry.selectors import markets_of_group
from risk.services.audit import audit_record


class PromotionError(Exception):
    pass


class RollbackError(PromotionError):
    pass


def promotion_refusal(model_version: ModelVersion) -> str:
    """Why `model_version` may not go live, or "" when it may."""
    if model_version.status == ModelVersion.Status.REJECTED or not model_version.gates_passed:
        return f"model v{model_version.version} failed its gates and cannot go live"
    if model_version.drift_status == ModelVersion.Drift.CRITICAL:
        return f"model v{model_version.version} has critical feature drift and cannot go live"
    return ""


@transaction.atomic
def model_version_promote(
    *, model_version: ModelVersion, actor: str, allow_ungated: bool = False
) -> ModelVersion:
    """Make `model_version` the active model of its group; the previous one is retired."""
    model_version = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
    if model_version.is_active:
        raise PromotionError(f"model v{model_version.version} is already active")
    refusal = promotion_refusal(model_version)
    if refusal and not allow_ungated:
        raise PromotionError(refusal)
    previous = _retire_active(model_version)
    now = timezone.now()
    model_version.is_active = True
    model_version.activated_at = now
    model_version.previous = previous[0] if previous else None
    model_version.forced_hold = False
    model_version.shadow = False
    # An ungated model keeps its status (rejected): "active" means it passed its gates.
    if model_version.gates_passed:
        model_version.status = ModelVersion.Status.ACTIVE
    model_version.save(
        update_fields=["is_active", "status", "activated_at", "previous", "forced_hold", "shadow"]
    )
    payload: dict[str, object] = {
        "version": model_version.version,
        "replaced": [m.version for m in previous],
    }
    if model_version.ungated:
        payload["ungated"] = True
    audit_record(actor=actor, action="model.promoted", obj=model_version, payload=payload)
    return model_version


def _retire_active(model_version: ModelVersion) -> list[ModelVersion]:
    previous = list(
        ModelVersion.objects.select_for_update()
        .filter(
            market_group=model_version.market_group,
            timeframe=model_version.timeframe,
            is_active=True,
        )
        .exclude(pk=model_version.pk)
    )
    for old in previous:
        old.is_active = False
        old.status = ModelVersion.Status.RETIRED
        old.retired_at = timezone.now()
        old.save(update_fields=["is_active", "status", "retired_at"])
    return previous


def model_version_activate_trained(*, model_version: ModelVersion, actor: str) -> None:
    """After training: promote if the gates passed; else run ungated only if nothing can serve.

    "Nothing can serve" means no active model of the family for the current feature set
    (a model for another feature set cannot score today's feature rows).
    """
    if model_version.gates_passed and not promotion_refusal(model_version):
        model_version_promote(model_version=model_version, actor=actor)
        return
    serving = ModelVersion.objects.filter(
        market_group=model_version.market_group,
        timeframe=model_version.timeframe,
        is_active=True,
        feature_set_hash=FEATURE_SET_HASH,
    ).exists()
    if not serving:
        model_version_promote(model_version=model_version, actor=actor, allow_ungated=True)


@transaction.atomic
def model_version_rollback(*, market_group: str, timeframe: str, actor: str) -> ModelVersion:
    """Put back the model the active one replaced (or the latest retired one that may go live)."""
    current = (
        ModelVersion.objects.select_for_update()
        .filter(market_group=market_group, timeframe=timeframe, is_active=True)
        .first()
    )
    if current is None:
        raise RollbackError(f"no active model for {market_group} {timeframe}")
    target = rollback_target(current)
    if target is None:
        raise RollbackError(
            f"no earlier model of {market_group} {timeframe} passed its gates to roll back to"
        )
    current.is_active = False
    current.status = ModelVersion.Status.RETIRED
    current.retired_at = timezone.now()
    current.save(update_fields=["is_active", "status", "retired_at"])
    target.is_active = True
    target.status = ModelVersion.Status.ACTIVE
    target.activated_at = timezone.now()
    target.forced_hold = False
    target.shadow = False
    target.save(update_fields=["is_active", "status", "activated_at", "forced_hold", "shadow"])
    audit_record(
        actor=actor,
        action="model.rolled_back",
        obj=target,
        payload={"from": current.version, "to": target.version},
    )
    return target


def rollback_target(current: ModelVersion) -> ModelVersion | None:
    """The replaced model if it may go live, else the newest retired one that may."""
    candidates = ModelVersion.objects.filter(
        market_group=current.market_group,
        timeframe=current.timeframe,
        status=ModelVersion.Status.RETIRED,
        feature_set_hash=FEATURE_SET_HASH,
    ).exclude(pk=current.pk)
    ordered = list(candidates.order_by("-activated_at", "-version"))
    if current.previous_id:
        ordered.sort(key=lambda m: m.pk != current.previous_id)
    return next((m for m in ordered if not promotion_refusal(m)), None)


@transaction.atomic
def model_version_hold(
    *, model_version: ModelVersion, hold: bool, actor: str, reason: str = ""
) -> ModelVersion:
    """Force every call of the model to HOLD (the drift fallback), or lift that."""
    model_version.forced_hold = hold
    model_version.save(update_fields=["forced_hold"])
    audit_record(
        actor=actor,
        action="model.hold" if hold else "model.hold_lifted",
        obj=model_version,
        payload={"version": model_version.version, "reason": reason},
    )
    return model_version


@transaction.atomic
def model_shadow_start(*, model_version: ModelVersion, actor: str) -> ModelVersion:
    """Run a model that is not active in shadow from the newest stored bar on."""
    if model_version.is_active:
        raise PromotionError(f"model v{model_version.version} is active; shadow is for candidates")
    if model_version.feature_set_hash != FEATURE_SET_HASH:
        raise PromotionError(f"model v{model_version.version} was trained on another feature set")
    markets = markets_of_group(model_version.market_group)
    newest = (
        Candle.objects.filter(market__in=markets, timeframe=model_version.timeframe)
        .order_by("-open_time")
        .values_list("open_time", flat=True)
        .first()
    )
    model_version.shadow = True
    model_version.shadow_since = newest or timezone.now()
    model_version.save(update_fields=["shadow", "shadow_since"])
    audit_record(
        actor=actor,
        action="model.shadow_started",
        obj=model_version,
        payload={"version": model_version.version, "since": model_version.shadow_since},
    )
    return model_version


@transaction.atomic
def model_shadow_stop(*, model_version: ModelVersion, actor: str) -> ModelVersion:
    model_version.shadow = False
    model_version.save(update_fields=["shadow"])
    audit_record(
        actor=actor,
        action="model.shadow_stopped",
        obj=model_version,
        payload={"version": model_version.version},
    )
    return model_version
