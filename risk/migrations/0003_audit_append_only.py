"""On PostgreSQL, a trigger rejects UPDATE and DELETE on the audit log (append-only).

SQLite has no users or privileges to speak of: there the hash chain alone shows tampering
(`manage.py audit verify`). A PostgreSQL superuser can still disable the trigger; the chain
is what catches that, and the trigger is what stops every ordinary path (the ORM, the admin,
a careless UPDATE in psql) from changing history.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION risk_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'risk_auditevent is append-only: % rejected', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS risk_auditevent_append_only ON risk_auditevent;
CREATE TRIGGER risk_auditevent_append_only
    BEFORE UPDATE OR DELETE ON risk_auditevent
    FOR EACH ROW EXECUTE FUNCTION risk_auditevent_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS risk_auditevent_append_only ON risk_auditevent;
DROP FUNCTION IF EXISTS risk_auditevent_append_only();
"""


def _on_postgresql(sql: str):  # type: ignore[no-untyped-def]
    def run(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)  # no placeholders: the % is plpgsql's

    return run


class Migration(migrations.Migration):
    dependencies = [("risk", "0002_risk_engine")]

    operations = [migrations.RunPython(_on_postgresql(CREATE), _on_postgresql(DROP))]
