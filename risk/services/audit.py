"""The hash-chained audit log: each entry commits to the previous one."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from risk.models import AuditEvent

GENESIS = "0" * 64
# pg_advisory_xact_lock key that serialises writers of the chain ("qt-audit" as an int).
CHAIN_LOCK_KEY = int.from_bytes(b"qt-audit", "big")


def canonical(event: AuditEvent) -> str:
    return json.dumps(
        {
            "seq": event.seq,
            "created_at": event.created_at.isoformat(),
            "actor": event.actor,
            "action": event.action,
            "object_type": event.object_type,
            "object_id": event.object_id,
            "payload": event.payload,
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )


def entry_hash(prev_hash: str, event: AuditEvent) -> str:
    return hashlib.sha256((prev_hash + canonical(event)).encode()).hexdigest()


@transaction.atomic
def audit_record(
    *,
    actor: str,
    action: str,
    obj: Any = None,
    object_type: str = "",
    object_id: str = "",
    payload: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain (serialised by a lock on the chain's head)."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
    # SQLite's IMMEDIATE transactions already serialise writers. On PostgreSQL a row lock
    # on the head is not enough: an empty chain has no row to lock, and a writer that waited
    # for the lock re-reads the old head (the new one is outside its snapshot) and collides
    # on seq. A transaction-scoped advisory lock queues writers; the read after it sees the
    # latest committed head.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_KEY])
    head = AuditEvent.objects.order_by("-seq").first()
    event = AuditEvent(
        seq=(head.seq + 1) if head else 1,
        created_at=timezone.now(),
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        payload=json.loads(json.dumps(payload or {}, default=str)),
        prev_hash=head.hash if head else GENESIS,
    )
    event.hash = entry_hash(event.prev_hash, event)
    event.save(force_insert=True)
    return event


def audit_verify(*, expect_head: tuple[int, str] | None = None) -> tuple[bool, str]:
    """Walk the chain; (True, summary) or (False, the first bad entry).

    Each entry must carry the next sequence number, link to the hash before it, and hash to
    its stored value: a changed, removed, inserted or reordered row fails one of those.
    Removing entries from the *end* leaves a shorter chain that is still consistent; that
    is caught by `expect_head`, a (seq, hash) recorded earlier (the `audit verify` output),
    which must still be in the chain unchanged.
    """
    prev = GENESIS
    expected_seq = 1
    count = 0
    anchor_seen = expect_head is None
    for event in AuditEvent.objects.order_by("seq").iterator(chunk_size=2000):
        if event.seq != expected_seq:
            return False, f"entry #{event.seq}: expected #{expected_seq} (an entry is missing)"
        if event.prev_hash != prev or entry_hash(prev, event) != event.hash:
            return False, f"entry #{event.seq}: hash mismatch (changed, removed or inserted)"
        if expect_head is not None and event.seq == expect_head[0]:
            if event.hash != expect_head[1]:
                return False, f"entry #{event.seq}: not the recorded head {expect_head[1]}"
            anchor_seen = True
        prev = event.hash
        expected_seq += 1
        count += 1
    if not anchor_seen:
        assert expect_head is not None
        return False, (
            f"entry #{expect_head[0]}: recorded head is gone (the chain ends at #{count})"
        )
    return True, f"{count} entries, chain intact"


def audit_head() -> tuple[int, str]:
    """(seq, hash) of the newest entry: record it to detect a truncated chain later."""
    head = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    return head if head else (0, GENESIS)
