"""The SQLite ledger's tables and triggers (see :mod:`mltrail.storage.sqlite`).

Every table refuses UPDATE and DELETE by trigger, with one exception: a row of
``blobs`` may be deleted once a row of ``purges`` names its digest. A ``purges``
row is added only by the trigger on ``records`` that fires when a purge record
is stored (same transaction), and only when that record names the digest;
``erasures`` marks a purge whose bytes have left the file. The purge kind is the
opener's (:class:`~mltrail.storage.base.KindRoles`): :func:`purge_schema` writes
it into the triggers of a file it creates or brings up to date, and a file keeps
the triggers it was given.
"""

from __future__ import annotations

__all__ = [
    "EVIDENCE_SCHEMA",
    "MIGRATIONS",
    "PURGES_QUERY",
    "SCHEMA",
    "TABLES",
    "TRIGGER",
    "purge_schema",
]

TABLES = (
    "records",
    "merkle_nodes",
    "blobs",
    "checkpoints",
    "meta",
    "purges",
    "erasures",
)
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    kind TEXT NOT NULL,
    run TEXT,
    time TEXT NOT NULL,
    record BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_kind ON records (kind, seq);
CREATE INDEX IF NOT EXISTS records_run ON records (run, seq) WHERE run IS NOT NULL;
CREATE TABLE IF NOT EXISTS merkle_nodes (
    level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blobs (
    digest TEXT PRIMARY KEY, size INTEGER NOT NULL, data BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    id INTEGER PRIMARY KEY, size INTEGER NOT NULL, note TEXT NOT NULL, floor TEXT
);
"""
TRIGGER = """
CREATE TRIGGER IF NOT EXISTS {table}_no_{op} BEFORE {op} ON {table}
BEGIN SELECT RAISE(ABORT, 'mltrail ledger tables are append-only: {op} refused'); END;
"""
# Added after the first release, by the first write on older files: the newest
# entry time since the last reset record as of each checkpoint (a cache: appends
# read it instead of scanning records; verification recomputes it).
MIGRATIONS = "ALTER TABLE checkpoints ADD COLUMN floor TEXT"
_PURGE_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS purges (
        digest TEXT PRIMARY KEY, size INTEGER NOT NULL, seq INTEGER NOT NULL
    ) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS erasures (digest TEXT PRIMARY KEY) WITHOUT ROWID",
    # older files refuse every DELETE on blobs: replaced by one that consults purges
    "DROP TRIGGER IF EXISTS blobs_no_DELETE",
    """CREATE TRIGGER blobs_no_DELETE BEFORE DELETE ON blobs
    WHEN NOT EXISTS (SELECT 1 FROM purges WHERE digest = OLD.digest)
    BEGIN SELECT RAISE(ABORT, 'mltrail ledger tables are append-only: DELETE refused
    (a blob is erased only after a {purge_kind} record names it)'); END""",
    """CREATE TRIGGER IF NOT EXISTS records_purge AFTER INSERT ON records
    WHEN NEW.kind = '{purge_kind}'
    BEGIN INSERT OR IGNORE INTO purges (digest, size, seq) VALUES (
        json_extract(CAST(NEW.record AS TEXT), '$.entry.body.digest'),
        json_extract(CAST(NEW.record AS TEXT), '$.entry.body.size'),
        NEW.seq
    ); END""",
    """CREATE TRIGGER IF NOT EXISTS purges_need_record BEFORE INSERT ON purges
    WHEN NOT EXISTS (
        SELECT 1 FROM records r WHERE r.seq = NEW.seq AND r.kind = '{purge_kind}'
        AND json_extract(CAST(r.record AS TEXT), '$.entry.body.digest') = NEW.digest
    )
    BEGIN SELECT RAISE(ABORT, 'a purge needs its stored {purge_kind} record'); END""",
    """CREATE TRIGGER IF NOT EXISTS erasures_need_purge BEFORE INSERT ON erasures
    WHEN NOT EXISTS (SELECT 1 FROM purges WHERE digest = NEW.digest)
    OR EXISTS (SELECT 1 FROM blobs WHERE digest = NEW.digest)
    BEGIN SELECT RAISE(ABORT, 'only a purged blob whose bytes are gone is erased'); END""",
)


def purge_schema(purge_kind: str) -> tuple[str, ...]:
    """The purge tables and triggers, for records of ``purge_kind`` (a plain
    dotted name, see ``KindRoles``)."""
    return tuple(
        statement.replace("{purge_kind}", purge_kind) for statement in _PURGE_SCHEMA
    )


# Added with RFC 3161 timestamps and witness cosignatures (ADR 0015): evidence
# about a checkpoint, signed by its issuer (a TSA, a witness), kept beside it.
EVIDENCE_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS checkpoint_evidence (
        id INTEGER PRIMARY KEY, kind TEXT NOT NULL, size INTEGER NOT NULL,
        checkpoint TEXT NOT NULL, data BLOB NOT NULL, added TEXT NOT NULL
    )""",
    *(
        TRIGGER.format(table="checkpoint_evidence", op=op)
        for op in ("UPDATE", "DELETE")
    ),
)
PURGES_QUERY = (
    "SELECT p.digest, p.size, p.seq, e.digest IS NOT NULL FROM purges p "
    "LEFT JOIN erasures e ON e.digest = p.digest"
)
