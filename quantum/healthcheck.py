"""Container/unit healthcheck: `python -m quantum.healthcheck worker|beat|streams` (exit 0
or 1).

The worker and beat record heartbeats in Redis (quantum/services.py, quantum/signals.py),
the stream processes their health (quantum/health.py::stream_checks); this reads them
without starting anything.
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

    if component == "streams":
        from quantum.health import stream_checks

        checks = stream_checks()
        for name, check in checks.items():
            print(f"{name}: {'ok' if check['ok'] else 'FAILED'} ({check['detail']})")
        if not checks:
            print("no stream to check")
        return 0 if all(check["ok"] for check in checks.values()) else 1
    from quantum.services import heartbeat_get

    seen = heartbeat_get(component=component)
    if seen is None:
        print(f"no {component} heartbeat yet")
        return 1
    age = (timezone.now() - seen).total_seconds()
    print(f"{component} heartbeat {age:.0f}s ago")
    return 0 if age <= settings.QT_HEARTBEAT_MAX_AGE.total_seconds() else 1


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ("worker", "beat", "streams"):
        sys.exit("usage: python -m quantum.healthcheck worker|beat|streams")
    sys.exit(main(sys.argv[1]))
