"""Backups of the database and the model artifacts, with checksums, and their restore.

A backup is a folder:

    manifest.json          what is in it: one entry per file with its sha256, size and rows
    manifest.json.sha256   the manifest's own digest (a changed manifest is refused too)
    db/<app>.<model>.qtjson.gz dumpdata of each model (portable: SQLite <-> PostgreSQL;
                           JSON with exact datetimes, quantum/backup_format.py)
    artifacts/...          the files under QT_ARTIFACT_DIR

The dump is taken inside one transaction, so the tables agree with each other and with
the audit head recorded in the manifest (PostgreSQL: REPEATABLE READ, READ ONLY; SQLite:
the write lock is held for the duration, writers wait). Content types and permissions are
rebuilt by `migrate` and referenced by natural key; sessions are not kept.

A restore goes into a fresh database only: it checks every checksum first, migrates,
refuses a database that already holds data, loads every model in one transaction, then
checks row counts and the audit chain against the manifest before committing. Audit rows
are only ever inserted (the PostgreSQL trigger rejects UPDATE and DELETE on them).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.core.serializers import sort_dependencies
from django.db import connection, transaction
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from quantum import backup_format

FORMAT = "quantum-trader-backup/1"
EXCLUDED = {"contenttypes.contenttype", "auth.permission", "sessions.session"}
# Rows a migration makes in every new database (the client-id salt): replaced on restore.
MADE_BY_MIGRATE = {"trading.installation"}


class BackupError(Exception):
    """A backup that cannot be made or restored; the message says why."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _models() -> list[Any]:
    """Every concrete model to back up, parents before children."""
    app_list = {config: None for config in apps.get_app_configs()}
    ordered = sort_dependencies(app_list.items(), allow_cycles=True)  # type: ignore[arg-type]
    return [
        m
        for m in ordered
        if m._meta.label_lower not in EXCLUDED and not m._meta.proxy and m._meta.managed
    ]


def _migrations() -> list[str]:
    return sorted(
        f"{app}.{name}" for app, name in MigrationRecorder(connection).applied_migrations()
    )


def backup_create(*, out: Path, say: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Write a backup of the database and the model artifacts into the empty folder `out`."""
    from risk.services.audit import audit_head

    backup_format.register()
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"{out} is not empty; choose a new folder for the backup")
    (out / "db").mkdir(parents=True, exist_ok=True)
    files: list[dict[str, Any]] = []
    outermost = not connection.in_atomic_block  # else the snapshot is the caller's
    with transaction.atomic():
        if connection.vendor == "postgresql" and outermost:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        head = audit_head()
        migrations = _migrations()
        for model in _models():
            label = model._meta.label_lower
            path = out / "db" / f"{label}.{backup_format.NAME}.gz"
            call_command(
                "dumpdata",
                label,
                format=backup_format.NAME,
                output=str(path),
                natural_foreign=True,
                verbosity=0,
            )
            rows = model._base_manager.count()
            files.append({"path": f"db/{path.name}", "model": label, "rows": rows})
            say(f"{label}: {rows} rows")
    artifact_dir = Path(settings.QT_ARTIFACT_DIR)
    if artifact_dir.is_dir():
        for source in sorted(p for p in artifact_dir.rglob("*") if p.is_file()):
            relative = source.relative_to(artifact_dir)
            target = out / "artifacts" / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            files.append({"path": f"artifacts/{relative.as_posix()}"})
    for entry in files:
        path = out / entry["path"]
        entry.update(sha256=_sha256(path), bytes=path.stat().st_size)
    manifest = {
        "format": FORMAT,
        "created_at": timezone.now().isoformat(),
        "database": connection.vendor,
        "migrations": migrations,
        "audit_head": {"seq": head[0], "hash": head[1]},
        "artifact_dir": str(artifact_dir),
        "files": files,
    }
    text = json.dumps(manifest, indent=2, sort_keys=True)
    (out / "manifest.json").write_text(text)
    (out / "manifest.json.sha256").write_text(hashlib.sha256(text.encode()).hexdigest() + "\n")
    return manifest


def backup_verify(*, source: Path) -> dict[str, Any]:
    """The manifest, once every file's checksum matches; else BackupError naming the file."""
    manifest_path = source / "manifest.json"
    if not manifest_path.is_file():
        raise BackupError(f"{source} is not a backup: manifest.json is missing")
    text = manifest_path.read_text()
    digest_path = source / "manifest.json.sha256"
    recorded = digest_path.read_text().strip() if digest_path.is_file() else ""
    if hashlib.sha256(text.encode()).hexdigest() != recorded:
        raise BackupError("backup is corrupted: manifest.json does not match its checksum")
    manifest = json.loads(text)
    if manifest.get("format") != FORMAT:
        raise BackupError(f"unknown backup format {manifest.get('format')!r}")
    for entry in manifest["files"]:
        path = source / entry["path"]
        if not path.is_file():
            raise BackupError(f"backup is incomplete: {entry['path']} is missing")
        if path.stat().st_size != entry["bytes"] or _sha256(path) != entry["sha256"]:
            raise BackupError(f"backup is corrupted: {entry['path']} does not match its checksum")
    return manifest


def backup_restore(*, source: Path, say: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Restore a verified backup into this (fresh) database and QT_ARTIFACT_DIR."""
    from models_registry.models import ModelVersion
    from risk.services.audit import audit_verify

    manifest = backup_verify(source=source)
    backup_format.register()
    call_command("migrate", interactive=False, verbosity=0)
    code_migrations = set(_migrations())
    missing = sorted(set(manifest["migrations"]) - code_migrations)
    if missing:
        raise BackupError(
            f"the backup was made by a newer version (unknown migrations: {', '.join(missing)}); "
            "restore it with that version"
        )
    newer = sorted(code_migrations - set(manifest["migrations"]))
    if newer:
        raise BackupError(
            "the backup was made by an older version (this code adds "
            f"{', '.join(newer[:5])}); restore it with that version, then upgrade"
        )
    entries = [e for e in manifest["files"] if "model" in e]
    occupied = [
        e["model"]
        for e in entries
        if e["model"] not in MADE_BY_MIGRATE and apps.get_model(e["model"])._base_manager.exists()
    ]
    if occupied:
        raise BackupError(
            "the database is not empty (rows in " + ", ".join(occupied[:5]) + "); "
            "restore into a fresh database"
        )
    artifacts = _artifacts_plan(source, manifest)
    with transaction.atomic():
        for label in MADE_BY_MIGRATE & {e["model"] for e in entries}:
            # The fresh database's own row gives way to the backup's: the restored orders'
            # client ids were salted with the backed-up installation's salt.
            apps.get_model(label)._base_manager.all().delete()
        call_command(
            "loaddata", *[str(source / e["path"]) for e in entries if e["rows"]], verbosity=0
        )
        for entry in entries:
            rows = apps.get_model(entry["model"])._base_manager.count()
            if rows != entry["rows"]:
                raise BackupError(
                    f"{entry['model']}: {rows} rows restored, {entry['rows']} expected"
                )
        head = manifest["audit_head"]
        ok, detail = audit_verify(expect_head=(head["seq"], head["hash"]) if head["seq"] else None)
        if not ok:
            raise BackupError(f"the restored audit chain does not verify: {detail}")
        old_dir = manifest["artifact_dir"].rstrip("/") + "/"
        new_dir = Path(settings.QT_ARTIFACT_DIR)
        for mv in ModelVersion.objects.filter(path__startswith=old_dir):
            mv.path = str(new_dir / mv.path[len(old_dir) :])
            mv.save(update_fields=["path"])
        for source_path, target in artifacts:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source_path, target)
    say(f"restored {sum(e['rows'] for e in entries)} rows, {len(artifacts)} artifacts; {detail}")
    return {"rows": {e["model"]: e["rows"] for e in entries}, "audit": detail}


def _artifacts_plan(source: Path, manifest: dict[str, Any]) -> list[tuple[Path, Path]]:
    """(backup file, destination) pairs; an existing different file is never overwritten."""
    target_dir = Path(settings.QT_ARTIFACT_DIR)
    plan = []
    for entry in manifest["files"]:
        if not entry["path"].startswith("artifacts/"):
            continue
        target = target_dir / entry["path"][len("artifacts/") :]
        if target.exists():
            if _sha256(target) != entry["sha256"]:
                raise BackupError(f"{target} exists with other contents; not overwriting it")
            continue
        plan.append((source / entry["path"], target))
    return plan
