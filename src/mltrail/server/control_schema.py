"""The team server's control tables, schema ``mltrail_server`` (see ADR 0027).

Like the ledger tables (:mod:`mltrail.storage.postgres_schema`) every table is
insert-only: triggers refuse UPDATE, DELETE and TRUNCATE for everyone, the owner
included, in every ``session_replication_role`` (they fire ``ALWAYS``, migration
2: replica mode skips ordinary triggers). A token is revoked by adding a row to
``token_revocations``, never by changing ``tokens``; an idempotency key's first
response is kept for good. The application role gets SELECT and INSERT only.
"""

from __future__ import annotations

from mltrail.storage.postgres_schema import always_fire

__all__ = ["CONTROL_MIGRATIONS", "CONTROL_SCHEMA", "CONTROL_TABLES"]

CONTROL_SCHEMA = "mltrail_server"

CONTROL_TABLES = (
    "ledgers",
    "tokens",
    "token_revocations",
    "idempotency",
    "mltrail_schema",
)

_TABLES = """
CREATE TABLE {s}.ledgers (
    name text COLLATE "C" PRIMARY KEY,
    schema text COLLATE "C" NOT NULL UNIQUE,
    origin text NOT NULL,
    created timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE {s}.tokens (
    id text COLLATE "C" PRIMARY KEY CHECK (id ~ '^[0-9a-f]{16}$'),
    ledger text COLLATE "C" NOT NULL REFERENCES {s}.ledgers (name),
    name text NOT NULL,
    role text NOT NULL CHECK (role IN ('writer', 'approver', 'auditor', 'admin')),
    secret_sha256 bytea NOT NULL CHECK (length(secret_sha256) = 32),
    created timestamptz NOT NULL DEFAULT now(),
    expires timestamptz,
    created_by text NOT NULL
);
CREATE INDEX tokens_ledger ON {s}.tokens (ledger, created);
CREATE TABLE {s}.token_revocations (
    id text COLLATE "C" PRIMARY KEY REFERENCES {s}.tokens (id),
    revoked timestamptz NOT NULL DEFAULT now(),
    by text NOT NULL
);
CREATE TABLE {s}.idempotency (
    ledger text COLLATE "C" NOT NULL REFERENCES {s}.ledgers (name),
    key text NOT NULL,
    token_id text COLLATE "C" NOT NULL,
    request_sha256 bytea NOT NULL,
    response jsonb NOT NULL,
    created timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ledger, key)
);
"""

_REFUSE = """CREATE FUNCTION {s}.mltrail_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'mltrail server tables are insert-only: % refused on %',
            TG_OP, TG_TABLE_NAME;
    END $$"""


def _refusals() -> tuple[str, ...]:
    out = []
    for table in CONTROL_TABLES:
        out += [
            f"CREATE TRIGGER {table}_insert_only BEFORE UPDATE OR DELETE ON "
            f"{{s}}.{table} FOR EACH ROW EXECUTE FUNCTION {{s}}.mltrail_refuse()",
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {{s}}.{table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION {s}.mltrail_refuse()",
        ]
    return tuple(out)


CONTROL_MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "server control tables: ledgers, tokens, revocations, idempotency keys",
        (
            *(s.strip() for s in _TABLES.split(";") if s.strip()),
            _REFUSE,
            *_refusals(),
        ),
    ),
    (
        2,
        "refusals fire in every session_replication_role (replica mode included)",
        always_fire(
            tuple(
                (table, f"{table}_{suffix}")
                for table in CONTROL_TABLES
                for suffix in ("insert_only", "no_truncate")
            )
        ),
    ),
)
"""(version, description, statements), applied in order, each once."""
