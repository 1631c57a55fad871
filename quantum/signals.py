"""Beat liveness: a thread inside the beat process records a heartbeat every few seconds."""

from __future__ import annotations

import logging
import threading

from celery.signals import beat_init

logger = logging.getLogger(__name__)


@beat_init.connect
def _start_beat_heartbeat(**kwargs: object) -> None:
    from quantum.services import heartbeat_record

    def loop() -> None:
        while True:
            try:
                heartbeat_record(component="beat")
            except Exception:  # a Redis blip must not kill beat; /ready will show it
                logger.exception("beat heartbeat failed")
            stop.wait(5)

    stop = threading.Event()
    threading.Thread(target=loop, name="beat-heartbeat", daemon=True).start()
