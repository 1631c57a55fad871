from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from risk.models import AuditEvent
from risk.services.audit import GENESIS, audit_head, audit_record, audit_verify, entry_hash
from trading.models import ExchangeAccount

# Literal: the table name is part of the SQL an intruder would type.
TABLE = "risk_auditevent"
on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the append-only trigger is PostgreSQL's"
)


@contextmanager
def tampering() -> Iterator[None]:
    """What a person with database superuser rights can do: on PostgreSQL, switch the
    append-only trigger off first (SQLite has no trigger; the chain is the only guard)."""
    postgres = connection.vendor == "postgresql"
    if postgres:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER risk_auditevent_append_only")
    try:
        yield
    finally:
        if postgres:
            with connection.cursor() as cursor:
                cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER risk_auditevent_append_only")


def verify_command(*args: str) -> str:
    out = StringIO()
    call_command("audit", "verify", *args, stdout=out)
    return out.getvalue()


def record(n: int) -> list[AuditEvent]:
    return [
        audit_record(
            actor="system:test",
            action="test.event",
            object_type="test",
            object_id=str(i),
            payload={"i": i, "note": f"event {i}"},
        )
        for i in range(1, n + 1)
    ]


def test_it_links_each_entry_to_the_one_before(db: None) -> None:
    record(5)

    events = list(AuditEvent.objects.order_by("seq"))
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == GENESIS
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
    for event in events:
        assert event.hash == entry_hash(event.prev_hash, event)
    assert len({e.hash for e in events}) == 5


def test_it_names_the_object_an_event_is_about(paper_account: ExchangeAccount) -> None:
    event = audit_record(actor="alice", action="test.touched", obj=paper_account)

    assert (event.object_type, event.object_id) == (
        "trading.exchangeaccount",
        str(paper_account.pk),
    )


def test_it_stores_payloads_as_plain_json(db: None) -> None:
    from decimal import Decimal

    audit_record(actor="system:test", action="test.decimal", payload={"qty": Decimal("0.05")})

    assert AuditEvent.objects.get().payload == {"qty": "0.05"}
    assert audit_verify()[0]


def test_it_verifies_an_intact_chain(db: None) -> None:
    record(5)

    assert audit_verify() == (True, "5 entries, chain intact")


def test_it_verifies_an_empty_chain(db: None) -> None:
    assert audit_verify() == (True, "0 entries, chain intact")


def test_it_detects_a_changed_payload(db: None) -> None:
    record(5)
    with tampering():
        AuditEvent.objects.filter(seq=3).update(payload={"i": 3, "note": "nothing to see"})

    ok, message = audit_verify()

    assert not ok
    assert message.startswith("entry #3:")


def test_it_detects_a_changed_actor(db: None) -> None:
    record(5)
    with tampering():
        AuditEvent.objects.filter(seq=4).update(actor="alice")

    ok, message = audit_verify()

    assert not ok
    assert message.startswith("entry #4:")


def test_it_detects_a_deleted_entry(db: None) -> None:
    record(5)
    with tampering():
        AuditEvent.objects.filter(seq=2).delete()

    ok, message = audit_verify()

    assert not ok
    assert message == "entry #3: expected #2 (an entry is missing)"


def test_it_detects_a_deleted_entry_whose_successors_were_renumbered(db: None) -> None:
    record(5)
    with tampering():
        AuditEvent.objects.filter(seq=2).delete()
        for seq in (3, 4, 5):
            AuditEvent.objects.filter(seq=seq).update(seq=seq - 1)

    ok, message = audit_verify()

    assert not ok
    assert message.startswith("entry #2:")


def test_it_detects_a_forged_entry_appended_with_a_made_up_hash(db: None) -> None:
    events = record(3)
    AuditEvent.objects.create(
        seq=4,
        created_at=events[-1].created_at,
        actor="alice",
        action="killswitch.off",
        object_type="risk.tradingstate",
        object_id="1",
        payload={"reason": "forged"},
        prev_hash=events[-1].hash,
        hash="f" * 64,
    )

    ok, message = audit_verify()

    assert not ok
    assert message.startswith("entry #4:")


def test_it_detects_a_forged_entry_spliced_into_the_middle(db: None) -> None:
    events = record(4)
    # Make room after #2 and insert a well-formed entry that links to #2 ...
    with tampering():
        for seq in (4, 3):
            AuditEvent.objects.filter(seq=seq).update(seq=seq + 1)
    forged = AuditEvent(
        seq=3,
        created_at=events[1].created_at,
        actor="alice",
        action="order.canceled",
        object_type="trading.order",
        object_id="7",
        payload={"cause": "forged"},
        prev_hash=events[1].hash,
    )
    forged.hash = entry_hash(forged.prev_hash, forged)
    forged.save(force_insert=True)

    ok, message = audit_verify()

    # ... the forgery itself hashes correctly, but the entry it displaced no longer does.
    assert not ok
    assert message.startswith("entry #4:")


def test_it_detects_a_row_changed_by_hand_in_the_database(db: None) -> None:
    record(4)
    with tampering(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE risk_auditevent SET action = %s WHERE seq = %s", ["killswitch.off", 2]
        )

    with pytest.raises(CommandError, match=r"entry #2: hash mismatch"):
        verify_command()


def test_it_detects_a_changed_row_whose_hash_was_recomputed(db: None) -> None:
    events = record(4)
    forged = events[1]
    forged.payload = {"i": 2, "note": "rewritten"}
    with tampering():
        AuditEvent.objects.filter(pk=forged.pk).update(
            payload=forged.payload, hash=entry_hash(forged.prev_hash, forged)
        )

    ok, message = audit_verify()

    # The rewritten entry is self-consistent; the next one no longer links to it.
    assert (ok, message.split(":")[0]) == (False, "entry #3")


def test_it_detects_two_entries_swapped(db: None) -> None:
    record(4)
    with tampering():
        AuditEvent.objects.filter(seq=2).update(seq=1000)
        AuditEvent.objects.filter(seq=3).update(seq=2)
        AuditEvent.objects.filter(seq=1000).update(seq=3)

    ok, message = audit_verify()

    assert not ok
    assert message == "entry #2: hash mismatch (changed, removed or inserted)"


def test_it_detects_entries_reordered_by_time_with_their_payloads_moved(db: None) -> None:
    record(4)
    second = AuditEvent.objects.get(seq=2)
    third = AuditEvent.objects.get(seq=3)
    with tampering():
        AuditEvent.objects.filter(pk=second.pk).update(payload=third.payload)
        AuditEvent.objects.filter(pk=third.pk).update(payload=second.payload)

    assert audit_verify()[1].startswith("entry #2:")


def test_it_detects_a_cut_off_tail_against_a_recorded_head(db: None) -> None:
    record(5)
    head = audit_head()
    assert verify_command("--expect-head", f"{head[0]}:{head[1]}").splitlines()[-1] == (
        f"head {head[0]}:{head[1]}"
    )
    with tampering():
        AuditEvent.objects.filter(seq__gte=4).delete()

    # Alone, a shortened chain is still a consistent chain ...
    assert audit_verify() == (True, "3 entries, chain intact")
    # ... but not the one whose head was recorded.
    with pytest.raises(CommandError, match=r"entry #5: recorded head is gone"):
        verify_command("--expect-head", f"{head[0]}:{head[1]}")


@on_postgresql
def test_postgresql_rejects_an_update_of_the_audit_log(db: None) -> None:
    record(2)

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(seq=1).update(actor="mallory")
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE risk_auditevent SET payload = '{}'")

    assert AuditEvent.objects.get(seq=1).actor == "system:test"
    assert audit_verify() == (True, "2 entries, chain intact")


@on_postgresql
def test_postgresql_rejects_a_delete_from_the_audit_log(db: None) -> None:
    record(2)

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(seq=2).delete()
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM risk_auditevent")

    assert AuditEvent.objects.count() == 2


# An empty chain has no head row to lock; a seeded one does. Both must queue writers.
@pytest.mark.parametrize("seeded", [False, True], ids=["empty", "seeded"])
@pytest.mark.django_db(transaction=True)
def test_it_keeps_one_chain_under_concurrent_writers(seeded: bool) -> None:
    threads_n, per_thread = 8, 10
    start = threading.Barrier(threads_n)
    errors: list[BaseException] = []
    if seeded:
        audit_record(actor="system:test", action="test.seed")

    def write(worker: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                audit_record(
                    actor=f"system:worker-{worker}",
                    action="test.concurrent",
                    object_type="test",
                    object_id=f"{worker}-{i}",
                )
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(w,)) for w in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    assert not any(t.is_alive() for t in threads)
    assert not errors
    total = threads_n * per_thread + seeded
    assert list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True)) == list(
        range(1, total + 1)
    )
    assert AuditEvent.objects.values("prev_hash").distinct().count() == total
    assert audit_verify() == (True, f"{total} entries, chain intact")
