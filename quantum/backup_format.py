"""The backup's serialization format: Django's JSON, with datetimes kept to the microsecond.

Django's JSON encoder cuts datetimes to milliseconds; the audit chain hashes each entry's
`created_at` to the microsecond, so a restore from plain dumpdata would break every hash.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.core.serializers.json import Deserializer, DjangoJSONEncoder
from django.core.serializers.json import Serializer as JsonSerializer

__all__ = ["Deserializer", "Serializer"]

NAME = "qtjson"


class ExactEncoder(DjangoJSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, datetime.datetime | datetime.time):
            value = o.isoformat()
            return value[:-6] + "Z" if value.endswith("+00:00") else value
        return super().default(o)


class Serializer(JsonSerializer):
    def _init_options(self) -> None:
        self.options.setdefault("cls", ExactEncoder)
        super()._init_options()  # type: ignore[misc]  # django's JSON serializer has it


def register() -> None:
    from django.core import serializers

    if NAME not in serializers.get_serializer_formats():
        serializers.register_serializer(NAME, __name__)
