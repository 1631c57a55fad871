"""Filter forms, pagination and CSV export for the signals, orders and trades logs.

The same filter form validates the page, its HTMX swaps and the CSV download, so a CSV is
exactly the rows the page shows, on every page.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, time
from typing import Any

from django import forms
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse

from marketdata.models import Market
from models_registry.models import ModelVersion
from trading.models import ExchangeAccount, Order, Signal

PAGE_SIZE = 50
# A CSV is read in chunks of this many rows: 100,000 orders never sit in memory at once.
CSV_CHUNK = 2000


class _LogFilter(forms.Form):
    market = forms.ModelChoiceField(
        queryset=Market.objects.select_related("exchange"), required=False, empty_label="any"
    )
    since = forms.DateField(
        required=False,
        help_text="from this day (UTC), inclusive",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    until = forms.DateField(
        required=False,
        help_text="to this day (UTC), inclusive",
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    time_field = "created_at"

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            raise forms.ValidationError("'since' is after 'until'.")
        return data

    def apply(self, qs: QuerySet) -> QuerySet:
        """`qs` narrowed by every filter given (call after is_valid())."""
        data = self.cleaned_data
        if data.get("market"):
            qs = qs.filter(market=data["market"])
        if data.get("since"):
            start = datetime.combine(data["since"], time.min, tzinfo=UTC)
            qs = qs.filter(**{f"{self.time_field}__gte": start})
        if data.get("until"):
            end = datetime.combine(data["until"], time.max, tzinfo=UTC)
            qs = qs.filter(**{f"{self.time_field}__lte": end})
        return qs

    @property
    def is_filtered(self) -> bool:
        return any(v not in (None, "") for v in self.cleaned_data.values())


class SignalFilter(_LogFilter):
    action = forms.ChoiceField(choices=[("", "any"), *Signal.Action.choices], required=False)
    model = forms.ModelChoiceField(
        queryset=ModelVersion.objects.order_by("-version"), required=False, empty_label="any"
    )
    time_field = "candle_time"

    def apply(self, qs: QuerySet) -> QuerySet:
        qs = super().apply(qs)
        if self.cleaned_data.get("action"):
            qs = qs.filter(action=self.cleaned_data["action"])
        if self.cleaned_data.get("model"):
            qs = qs.filter(model_version=self.cleaned_data["model"])
        return qs


class OrderFilter(_LogFilter):
    account = forms.ModelChoiceField(
        queryset=ExchangeAccount.objects.order_by("name"), required=False, empty_label="any"
    )
    side = forms.ChoiceField(choices=[("", "any"), *Order.Side.choices], required=False)
    status = forms.ChoiceField(choices=[("", "any"), *Order.Status.choices], required=False)

    def apply(self, qs: QuerySet) -> QuerySet:
        qs = super().apply(qs)
        for name in ("account", "side", "status"):
            if self.cleaned_data.get(name):
                qs = qs.filter(**{name: self.cleaned_data[name]})
        return qs


class TradeFilter(_LogFilter):
    account = forms.ModelChoiceField(
        queryset=ExchangeAccount.objects.order_by("name"), required=False, empty_label="any"
    )
    time_field = "exit_time"

    def apply(self, qs: QuerySet) -> QuerySet:
        qs = super().apply(qs)
        if self.cleaned_data.get("account"):
            qs = qs.filter(account=self.cleaned_data["account"])
        return qs


def page_of(request: HttpRequest, qs: QuerySet) -> Page:
    """The requested page (a page number past the end gives the last page)."""
    return Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))


def query_without_page(request: HttpRequest) -> str:
    """The current filters as a query string, for the pager and the CSV link."""
    params = request.GET.copy()
    params.pop("page", None)
    params.pop("format", None)
    return params.urlencode()


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_response(
    *, filename: str, header: list[str], rows: Iterable[Any], row: Callable[[Any], list[Any]]
) -> StreamingHttpResponse:
    """A streamed CSV download: the header, then `row(obj)` for every object."""
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow(header)
        for obj in rows:
            yield writer.writerow(row(obj))

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def iso(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat() if value else ""
