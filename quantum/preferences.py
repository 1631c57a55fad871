"""A user's preferences: page defaults and which notifications reach them.

The form validates at the edge, `preference_update` writes, `preferences_of` reads (cached in
Redis, so a page spends no query on it). Live toasts carry a kind (`data-kind` on the pushed
toast: fill, signal, risk); the base layout names the kinds a user turned off and
static/js/app.js drops those toasts. Risk incidents are also mailed, after commit, to the
operators who opted in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.mail import send_mass_mail
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest
from django.urls import reverse

from marketdata.models import Exchange, Market
from quantum.models import UserPreference

logger = logging.getLogger(__name__)

# Toast kind (the pushed toast's data-kind) → the preference that lets it through.
TOAST_KINDS = {"fill": "notify_fills", "signal": "notify_signals", "risk": "notify_risk"}
# Incidents of these severities are mailed; INFO ones (a state back to ACTIVE) are not.
EMAIL_SEVERITIES = ("warning", "critical")
CACHE_TTL_S = 3600
OPERATOR_FIELDS = ("notify_risk", "notify_email")


def _cache_key(user_id: int) -> str:
    return f"qt:prefs:{user_id}"


@dataclass(frozen=True)
class Prefs:
    """What every page needs from a user's preferences (defaults for users without any)."""

    market_id: int | None = None
    timeframe: str | None = None
    muted: tuple[str, ...] = ()


def preferences_of(user: Any) -> Prefs:
    """The user's page preferences, from Redis or (on a miss) the database."""
    if not getattr(user, "is_authenticated", False):
        return Prefs()
    key = _cache_key(user.pk)
    cached = cache.get(key)
    if isinstance(cached, dict):
        return Prefs(**cached)
    pref = UserPreference.objects.filter(user_id=user.pk).first()
    prefs = Prefs()
    if pref is not None:
        first = pref.markets.filter(active=True).order_by("exchange__code", "symbol").first()
        prefs = Prefs(
            market_id=first.pk if first else None,
            timeframe=pref.timeframe,
            muted=tuple(kind for kind, field in TOAST_KINDS.items() if not getattr(pref, field)),
        )
    cache.set(
        key,
        {"market_id": prefs.market_id, "timeframe": prefs.timeframe, "muted": prefs.muted},
        CACHE_TTL_S,
    )
    return prefs


def preferences_context(request: HttpRequest) -> dict[str, object]:
    """Context processor: the toast kinds the user turned off, for the base layout.

    Lazy (templates call a callable when they use it): partials never look it up.
    """
    user = getattr(request, "user", None)

    def muted() -> str:
        return " ".join(preferences_of(user).muted)

    return {"notify_muted": muted}


class MarketChoices(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.symbol} · {obj.exchange.code}"


class PreferenceForm(forms.ModelForm):
    markets = MarketChoices(
        queryset=Market.objects.filter(active=True).select_related("exchange"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="The first one (in this list's order) opens on the dashboard.",
    )
    default_exchange = forms.ModelChoiceField(
        queryset=Exchange.objects.order_by("code"), required=False, empty_label="none"
    )

    class Meta:
        model = UserPreference
        fields = [
            "default_exchange",
            "markets",
            "timeframe",
            "notify_fills",
            "notify_signals",
            "notify_risk",
            "notify_email",
        ]
        labels = {
            "notify_fills": "Toast when an order is executed",
            "notify_signals": "Toast on a new BUY/SELL signal",
            "notify_risk": "Toast on a risk incident (operators)",
            "notify_email": "Email me risk incidents (operators)",
        }

    def __init__(self, *args: Any, user: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        from quantum.roles import has_role

        if not has_role(user, "operator"):
            # Risk toasts and incident mails only ever reach operators: nothing to choose.
            for name in OPERATOR_FIELDS:
                del self.fields[name]

    def preference_values(self) -> dict[str, Any]:
        """The cleaned values, with the stored ones for fields this user is not offered."""
        values = {name: getattr(self.instance, name) for name in OPERATOR_FIELDS}
        values.update(self.cleaned_data)
        values["markets"] = list(values.get("markets") or [])
        return values

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        exchange = data.get("default_exchange")
        markets = data.get("markets") or []
        if exchange is not None:
            elsewhere = [m.symbol for m in markets if m.exchange_id != exchange.pk]
            if elsewhere:
                raise forms.ValidationError(
                    f"markets not on {exchange.code}: {', '.join(elsewhere)}", code="exchange"
                )
        if data.get("notify_email") and not getattr(self.user, "email", ""):
            self.add_error("notify_email", "your account has no email address")
        return data


def preference_for_form(user: Any) -> UserPreference:
    """The user's stored preferences, or unsaved defaults for the form."""
    return UserPreference.objects.filter(user_id=user.pk).first() or UserPreference(user=user)


@transaction.atomic
def preference_update(
    *,
    user: Any,
    default_exchange: Exchange | None,
    markets: list[Market],
    timeframe: str,
    notify_fills: bool,
    notify_signals: bool,
    notify_risk: bool,
    notify_email: bool,
) -> UserPreference:
    """Store the user's preferences; pages read them afresh after commit."""
    pref, _ = UserPreference.objects.select_for_update().get_or_create(user=user)
    pref.default_exchange = default_exchange
    pref.timeframe = timeframe
    pref.notify_fills = notify_fills
    pref.notify_signals = notify_signals
    pref.notify_risk = notify_risk
    pref.notify_email = notify_email
    pref.save()
    pref.markets.set(markets)
    user_id = user.pk
    transaction.on_commit(lambda: cache.delete(_cache_key(user_id)))
    return pref


def incident_email_recipients() -> list[str]:
    """Addresses of active operators who asked for incident emails."""
    users = (
        get_user_model()
        .objects.filter(preference__notify_email=True, is_active=True)
        .filter(Q(is_superuser=True) | Q(groups__name="operator"))
        .exclude(email="")
        .distinct()
    )
    return sorted({u.email for u in users})


def incident_email_send(*, incident_id: int) -> int:
    """Mail one incident to the opted-in operators (one message each); returns how many."""
    from risk.models import Incident

    incident = Incident.objects.select_related("account").filter(pk=incident_id).first()
    if incident is None or incident.severity not in EMAIL_SEVERITIES:
        return 0
    recipients = incident_email_recipients()
    if not recipients:
        return 0
    subject = f"[Quantum Trader] {incident.severity.upper()} incident: {incident.title}"
    lines = [
        f"{incident.title}",
        "",
        f"Severity: {incident.severity}",
        f"Code: {incident.code}",
        f"Account: {incident.account.name if incident.account else 'global'}",
        f"Opened: {incident.created_at.isoformat()}",
    ]
    if incident.detail:
        lines += ["", incident.detail[:2000]]
    lines += [
        "",
        f"Acknowledge and resolve it on {reverse('risk:incidents')}.",
        "You get this because you turned on incident emails in your settings.",
    ]
    body = "\n".join(lines)
    sent = send_mass_mail(
        [(subject, body, settings.DEFAULT_FROM_EMAIL, [to]) for to in recipients],
        fail_silently=False,
    )
    logger.info("incident %s mailed to %s operators", incident.pk, sent)
    return sent


def incident_email_on_commit(incident_id: int) -> None:
    """Hook for incident_open: mail after commit; a mail failure never undoes the incident."""

    def send() -> None:
        try:
            incident_email_send(incident_id=incident_id)
        except Exception:
            logger.exception("incident %s: email notification failed", incident_id)

    transaction.on_commit(send)
