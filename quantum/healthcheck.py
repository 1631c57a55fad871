"""Container/unit healthcheck: `python -m quantum.healthcheck worker|beat` (exit 0 or 1).

The worker and beat record heartbeats in Redis (quantum/services.py, quantum/signals.py);
this reads them without starting anything.
"""

from __future__ import annotations

import os
import sys


def main(component: str) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantum.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.utils import timezone

    from quantum.services import heartbeat_get

    seen = heartbeat_get(component=component)
    if seen is None:
        print(f"no {component} heartbeat yet")
        return 1
    age = (timezone.now() - seen).total_seconds()
    print(f"{component} heartbeat {age:.0f}s ago")
    return 0 if age <= settings.QT_HEARTBEAT_MAX_AGE.total_seconds() else 1


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ("worker", "beat"):
        sys.exit("usage: python -m quantum.healthcheck worker|beat")
    sys.exit(main(sys.argv[1]))
