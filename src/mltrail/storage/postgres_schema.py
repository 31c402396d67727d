"""The PostgreSQL ledger's tables, triggers and migrations (see :mod:`mltrail.storage.postgres`).

The same tables as SQLite's (:mod:`mltrail.storage.sqlite_schema`), in the
connection's current schema (``search_path``). Every table refuses UPDATE,
DELETE and TRUNCATE by trigger, whoever issues them, the owner included, with
the one exception SQLite makes: a row of ``blobs`` may be deleted once a row of
``purges`` names its digest. ``purges`` rows are added only by the trigger on
``records`` that fires when a purge record is stored (same transaction) and
only when that record names the digest; ``erasures`` marks a purge whose bytes
are gone. The purge kind is the opener's
(:class:`~mltrail.storage.base.KindRoles`): :func:`ledger_migrations` writes it
into the functions and triggers of a schema it creates, and a schema keeps the
ones it was given. The application role (``mltrail db init --role``) holds
SELECT and INSERT only; it erases a blob through one function,
``mltrail_erase_blob``, that runs as the owner and deletes only a purged digest.

Every trigger but ``records_purge`` fires ``ALWAYS`` (migration 2): a superuser's
``SET session_replication_role = replica`` (what logical replication's apply
workers and ``pg_restore --disable-triggers`` use) skips ordinary triggers, and
with them every refusal. ``records_purge`` stays an ordinary trigger: on a
logical replica the ``purges`` row it wrote arrives replicated.

A CHECK constraint (migration 3, ``NOT VALID``: older rows are verification's)
refuses a blob row whose digest or size is not its bytes'.

Migrations are numbered; ``mltrail_schema`` holds one row per migration applied.
``{s}`` in a statement stands for the quoted schema name, ``{purge_kind}`` for
the purge kind.
"""

from __future__ import annotations

__all__ = [
    "APPEND_ONLY_TABLES",
    "BLOB_CHECK",
    "PROTECTIONS",
    "SCHEMA_VERSION",
    "VERSION_TABLE",
    "always_fire",
    "blob_check_statement",
    "function_sources",
    "function_statement",
    "ledger_migrations",
    "protection_statements",
]

VERSION_TABLE = """CREATE TABLE {s}.mltrail_schema (
    version integer PRIMARY KEY,
    description text NOT NULL,
    applied timestamptz NOT NULL DEFAULT now()
)"""

APPEND_ONLY_TABLES = (
    "records",
    "merkle_nodes",
    "blobs",
    "checkpoints",
    "meta",
    "purges",
    "erasures",
    "checkpoint_evidence",
    "mltrail_schema",
)

_TABLES = """
CREATE TABLE {s}.meta (key text COLLATE "C" PRIMARY KEY, value text NOT NULL);
CREATE TABLE {s}.records (
    seq bigint PRIMARY KEY CHECK (seq >= 0),
    hash bytea NOT NULL,
    kind text COLLATE "C" NOT NULL,
    run text COLLATE "C",
    time text COLLATE "C" NOT NULL,
    record bytea NOT NULL
);
CREATE INDEX records_kind ON {s}.records (kind, seq);
CREATE INDEX records_run ON {s}.records (run, seq) WHERE run IS NOT NULL;
CREATE TABLE {s}.merkle_nodes (
    level integer NOT NULL, idx bigint NOT NULL, hash bytea NOT NULL,
    PRIMARY KEY (level, idx)
);
CREATE TABLE {s}.blobs (
    digest text COLLATE "C" PRIMARY KEY, size bigint NOT NULL, data bytea NOT NULL
);
CREATE TABLE {s}.checkpoints (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    size bigint NOT NULL, note text NOT NULL, floor text COLLATE "C"
);
CREATE TABLE {s}.purges (
    digest text COLLATE "C" PRIMARY KEY, size bigint NOT NULL, seq bigint NOT NULL
);
CREATE TABLE {s}.erasures (digest text COLLATE "C" PRIMARY KEY);
CREATE TABLE {s}.checkpoint_evidence (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind text NOT NULL, size bigint NOT NULL, checkpoint text NOT NULL,
    data bytea NOT NULL, added text NOT NULL
);
"""

_FUNCTIONS = (
    """CREATE FUNCTION {s}.mltrail_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'mltrail ledger tables are append-only: % refused on %',
            TG_OP, TG_TABLE_NAME;
    END $$""",
    """CREATE FUNCTION {s}.mltrail_blob_delete() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM {s}.purges WHERE digest = OLD.digest) THEN
            RAISE EXCEPTION 'mltrail ledger tables are append-only: DELETE refused '
                '(a blob is erased only after a {purge_kind} record names it)';
        END IF;
        RETURN OLD;
    END $$""",
    # json, not jsonb: the record is kept as it is (jsonb refuses \\u0000)
    """CREATE FUNCTION {s}.mltrail_note_purge() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE body json := convert_from(NEW.record, 'UTF8')::json -> 'entry' -> 'body';
    BEGIN
        INSERT INTO {s}.purges (digest, size, seq)
        VALUES (body ->> 'digest', (body ->> 'size')::bigint, NEW.seq)
        ON CONFLICT (digest) DO NOTHING;
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION {s}.mltrail_purge_needs_record() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF NOT EXISTS (
            SELECT 1 FROM {s}.records r WHERE r.seq = NEW.seq
            AND r.kind = '{purge_kind}'
            AND convert_from(r.record, 'UTF8')::json -> 'entry' -> 'body' ->> 'digest'
                = NEW.digest
        ) THEN
            RAISE EXCEPTION 'a purge needs its stored {purge_kind} record';
        END IF;
        RETURN NEW;
    END $$""",
    """CREATE FUNCTION {s}.mltrail_erasure_needs_purge() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM {s}.purges WHERE digest = NEW.digest)
           OR EXISTS (SELECT 1 FROM {s}.blobs WHERE digest = NEW.digest) THEN
            RAISE EXCEPTION 'only a purged blob whose bytes are gone is erased';
        END IF;
        RETURN NEW;
    END $$""",
    # The application role's one way to delete: a purged blob's row, nothing else.
    """CREATE FUNCTION {s}.mltrail_erase_blob(wanted text) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    DECLARE gone integer;
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM {s}.purges WHERE digest = wanted) THEN
            RAISE EXCEPTION 'refusing to delete blob %: no stored {purge_kind} '
                'record names it', wanted;
        END IF;
        DELETE FROM {s}.blobs WHERE digest = wanted;
        GET DIAGNOSTICS gone = ROW_COUNT;
        RETURN gone = 1;
    END $$""",
    "REVOKE ALL ON FUNCTION {s}.mltrail_erase_blob(text) FROM PUBLIC",
)


def _refusals() -> tuple[str, ...]:
    out = []
    for table in APPEND_ONLY_TABLES:
        ops = "UPDATE" if table == "blobs" else "UPDATE OR DELETE"
        out += [
            f"CREATE TRIGGER {table}_append_only BEFORE {ops} ON {{s}}.{table} "
            "FOR EACH ROW EXECUTE FUNCTION {s}.mltrail_refuse()",
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {{s}}.{table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION {s}.mltrail_refuse()",
        ]
    return tuple(out)


_TRIGGERS = (
    "CREATE TRIGGER blobs_no_delete BEFORE DELETE ON {s}.blobs "
    "FOR EACH ROW EXECUTE FUNCTION {s}.mltrail_blob_delete()",
    "CREATE TRIGGER records_purge AFTER INSERT ON {s}.records FOR EACH ROW "
    "WHEN (NEW.kind = '{purge_kind}') EXECUTE FUNCTION {s}.mltrail_note_purge()",
    "CREATE TRIGGER purges_need_record BEFORE INSERT ON {s}.purges "
    "FOR EACH ROW EXECUTE FUNCTION {s}.mltrail_purge_needs_record()",
    "CREATE TRIGGER erasures_need_purge BEFORE INSERT ON {s}.erasures "
    "FOR EACH ROW EXECUTE FUNCTION {s}.mltrail_erasure_needs_purge()",
    *_refusals(),
)

BLOB_CHECK = "blobs_content_address"
"""The constraint that refuses a blob row whose bytes are not its digest's: an
INSERT-only role could otherwise plant other bytes under the digest of a file
not yet recorded, which ``ON CONFLICT DO NOTHING`` then kept for good."""
_BLOB_CHECK_SQL = (
    "CHECK (digest = 'sha256:' || encode(sha256(data), 'hex') AND size = length(data))"
)


def blob_check_statement() -> str:
    """The statement that adds :data:`BLOB_CHECK` to ``{s}.blobs`` (``NOT VALID``:
    rows already stored are left to verification, which hashes every blob)."""
    return f"ALTER TABLE {{s}}.blobs ADD CONSTRAINT {BLOB_CHECK} {_BLOB_CHECK_SQL} NOT VALID"


_ALWAYS = (
    *((t, f"{t}_append_only") for t in APPEND_ONLY_TABLES),
    *((t, f"{t}_no_truncate") for t in APPEND_ONLY_TABLES),
    ("blobs", "blobs_no_delete"),
    ("purges", "purges_need_record"),
    ("erasures", "erasures_need_purge"),
)
"""(table, trigger) that fire in every ``session_replication_role``."""


PROTECTIONS: dict[str, tuple[str, str]] = {
    **{trigger: (table, "A") for table, trigger in _ALWAYS},
    "records_purge": ("records", "OA"),
}
"""Every trigger of the ledger tables: name -> (table, the ``pg_trigger.tgenabled``
states it may be in: ``A`` always, ``O`` origin and local modes only)."""


def protection_statements(
    trigger: str, purge_kind: str, *, missing: bool
) -> tuple[str, ...]:
    """The statements that set ``trigger`` of :data:`PROTECTIONS` firing as it
    should, in schema ``{s}``, first creating it again when ``missing`` (its
    function must exist)."""
    table, states = PROTECTIONS[trigger]
    mode = "ALWAYS " if states == "A" else ""
    enable = f"ALTER TABLE {{s}}.{table} ENABLE {mode}TRIGGER {trigger}"
    if not missing:
        return (enable,)
    create = next(s for s in _TRIGGERS if s.split()[2] == trigger)
    return (create.replace("{purge_kind}", purge_kind), enable)


def _function_name(statement: str) -> str:
    return statement.split("{s}.", 1)[1].split("(", 1)[0]


def function_sources(purge_kind: str, quoted_schema: str) -> dict[str, str]:
    """Each of mltrail's functions in the schema: name -> its body as
    ``pg_proc.prosrc`` holds it (one replaced by the owner's CREATE OR REPLACE
    turns refusals off with every trigger in place)."""
    return {
        _function_name(s): s.split("$$")[1]
        .replace("{s}", quoted_schema)
        .replace("{purge_kind}", purge_kind)
        for s in _FUNCTIONS
        if s.startswith("CREATE FUNCTION")
    }


def function_statement(name: str, purge_kind: str) -> str:
    """The statement that creates (or sets back) function ``name`` in ``{s}``."""
    statement = next(
        s
        for s in _FUNCTIONS
        if s.startswith("CREATE FUNCTION") and _function_name(s) == name
    )
    return statement.replace(
        "CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1
    ).replace("{purge_kind}", purge_kind)


def always_fire(triggers: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """The statements that make ``triggers`` ((table, trigger) in schema ``{s}``)
    fire ``ALWAYS``; re-enables one that was disabled."""
    return tuple(
        f"ALTER TABLE {{s}}.{table} ENABLE ALWAYS TRIGGER {trigger}"
        for table, trigger in triggers
    )


_MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "ledger tables, append-only triggers, purges and checkpoint evidence",
        (
            *(s.strip() for s in _TABLES.split(";") if s.strip()),
            *_FUNCTIONS,
            *_TRIGGERS,
        ),
    ),
    (
        2,
        "refusals fire in every session_replication_role (replica mode included)",
        always_fire(_ALWAYS),
    ),
    (
        3,
        "a blob's digest and size are those of its bytes",
        (blob_check_statement(),),
    ),
)
SCHEMA_VERSION = _MIGRATIONS[-1][0]


def ledger_migrations(purge_kind: str) -> tuple[tuple[int, str, tuple[str, ...]], ...]:
    """(version, description, statements) of the ledger tables, applied in order,
    each once, for records of ``purge_kind`` (a plain dotted name, see
    ``KindRoles``)."""
    return tuple(
        (
            version,
            description,
            tuple(s.replace("{purge_kind}", purge_kind) for s in statements),
        )
        for version, description, statements in _MIGRATIONS
    )
