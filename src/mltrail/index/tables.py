"""The derived index's tables: everything here can be rebuilt from the ledger.

The index answers questions (which runs, which data, which model, what came
from what) without replaying the ledger each time. It is never a source of
truth: ``mltrail reindex`` drops it and rebuilds it from the records, and a
ledger that no longer extends what the index saw triggers the same rebuild.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["DESCRIBED_FIELDS", "INDEX_VERSION", "SCHEMA", "param_value"]

# the model card fields of model.described, in the order they are shown
DESCRIBED_FIELDS = ("purpose", "owner", "risk_tier", "limitations")


def param_value(value: Any) -> str:
    """The canonical JSON text a parameter value is stored and matched as.

    A float with a fraction and no exponent (``0.05``) is written by ``repr``
    exactly as RFC 8785 writes it (see ``mltrail.core.codec._fast_float``), so
    the common parameter needs no ``rfc8785`` import: the answer-time checks of
    ``mltrail.index.check`` derive a run's parameters on every read command.
    """
    if type(value) is float:
        text = repr(value)
        if _PLAIN_FLOAT.fullmatch(text):
            return text
    from mltrail.core.canonical import canonical_bytes

    return canonical_bytes(value).decode()


_PLAIN_FLOAT = re.compile(r"-?[0-9]+\.[0-9]*[1-9]")


# Bump whenever a table or what ingest puts into it changes: an index built by
# another version is rebuilt on open.
INDEX_VERSION = "11"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;

-- one row per record: where a run's records are, and what happened when
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY, run TEXT, kind TEXT NOT NULL, time TEXT NOT NULL,
    ts REAL NOT NULL, user TEXT
);
CREATE INDEX IF NOT EXISTS records_run ON records (run, seq) WHERE run IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_kind_ts ON records (kind, ts);

-- ended_by: the signer of the run.ended that set status when not the starter
-- (the starter's own end, recorded later, replaces it)
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL, name TEXT, source TEXT,
    status TEXT NOT NULL, started TEXT NOT NULL, started_ts REAL NOT NULL,
    ended TEXT, ended_ts REAL, duration_s REAL, exit_code INTEGER,
    user TEXT, claimed_user TEXT, host TEXT, command TEXT NOT NULL, program TEXT,
    cwd TEXT, git_commit TEXT, git_branch TEXT, git_dirty INTEGER, step TEXT,
    ended_by TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_ts);

-- the seqs a ledger.pushed record announces (ADR 0031): entries of another
-- ledger that keep their own, earlier times (the header: when this one got them)
CREATE TABLE IF NOT EXISTS pushed (
    seq INTEGER PRIMARY KEY, time TEXT NOT NULL, first INTEGER NOT NULL,
    last INTEGER NOT NULL, origin TEXT
);
CREATE INDEX IF NOT EXISTS pushed_first ON pushed (first);
CREATE INDEX IF NOT EXISTS runs_user ON runs (user, started_ts);
CREATE INDEX IF NOT EXISTS runs_name ON runs (name, started_ts);
-- whether runs of one name have several starters (audit.query: two index seeks)
CREATE INDEX IF NOT EXISTS runs_name_user ON runs (name, user);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status, started_ts);

-- every parameter value, as canonical JSON, from every run.params entry. user:
-- who signed it (the record's actor.user), own: 1 when that is the run's starter
-- (runs.user), which filters require (ADR 0010: another user's records in a run
-- never make it match), 0 otherwise or while the run has no run.started
CREATE TABLE IF NOT EXISTS params (
    run TEXT NOT NULL, seq INTEGER NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    source TEXT, user TEXT, own INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS params_key ON params (key, value);
CREATE INDEX IF NOT EXISTS params_run ON params (run);

-- datasets a run read (direction 'in') or wrote (direction 'out'), a single file
-- also has its sha256, so a file written by one run and read by another links,
-- user and own: who signed the record, and whether that is the starter (as in params)
CREATE TABLE IF NOT EXISTS data (
    run TEXT NOT NULL, seq INTEGER NOT NULL, direction TEXT NOT NULL,
    role TEXT, path TEXT, dataset TEXT, sha256 TEXT, files INTEGER, bytes INTEGER,
    manifest TEXT, model TEXT, user TEXT, own INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS data_run ON data (run, seq);
CREATE INDEX IF NOT EXISTS data_dataset ON data (dataset, direction);
CREATE INDEX IF NOT EXISTS data_sha ON data (sha256, direction);
CREATE INDEX IF NOT EXISTS data_path ON data (path);
-- a model id (or prefix) found among the data rows: without it `mltrail trace
-- <model>` scanned every data row (58 ms at 100,000 runs)
CREATE INDEX IF NOT EXISTS data_model ON data (model) WHERE model IS NOT NULL;

-- the files of every dataset a run wrote (by content), so an input that is one
-- file of a produced folder still links back to the run that produced it
CREATE TABLE IF NOT EXISTS output_files (
    dataset TEXT NOT NULL, sha256 TEXT NOT NULL, PRIMARY KEY (sha256, dataset)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS output_files_dataset ON output_files (dataset);
CREATE TABLE IF NOT EXISTS exploded (dataset TEXT PRIMARY KEY) WITHOUT ROWID;

-- models by fingerprint id: the base a fine-tune started from, what it wrote
CREATE TABLE IF NOT EXISTS models (
    model TEXT NOT NULL, run TEXT NOT NULL, seq INTEGER NOT NULL, role TEXT NOT NULL,
    path TEXT, format TEXT, name TEXT, base TEXT
);
CREATE INDEX IF NOT EXISTS models_model ON models (model, role);
CREATE INDEX IF NOT EXISTS models_run ON models (run);

CREATE TABLE IF NOT EXISTS promotions (
    seq INTEGER PRIMARY KEY, model TEXT NOT NULL, run TEXT, stage TEXT NOT NULL,
    action TEXT NOT NULL, time TEXT NOT NULL, ts REAL NOT NULL, user TEXT, note TEXT
);
CREATE INDEX IF NOT EXISTS promotions_stage ON promotions (stage, ts);

-- fingerprint, checked_seq, checked: the registration or the last check that
-- read the source. failing_seq, failing: the first failed check since then
-- (none: the last check read it). failed_seq, error: the latest failed check.
CREATE TABLE IF NOT EXISTS sources (
    name TEXT PRIMARY KEY, seq INTEGER NOT NULL, location TEXT NOT NULL,
    kind TEXT, fingerprint TEXT, checked_seq INTEGER, checked TEXT,
    failing_seq INTEGER, failing TEXT, failed_seq INTEGER, error TEXT
) WITHOUT ROWID;

-- every fingerprint a source has had, so data read from an older snapshot links too
CREATE TABLE IF NOT EXISTS source_prints (
    name TEXT NOT NULL, fingerprint TEXT NOT NULL, PRIMARY KEY (fingerprint, name)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS flags (
    seq INTEGER PRIMARY KEY, model TEXT NOT NULL, run TEXT, source TEXT,
    reason TEXT, time TEXT NOT NULL, user TEXT, cleared_seq INTEGER, path TEXT
);
CREATE INDEX IF NOT EXISTS flags_model ON flags (model);

-- model.approved: who approved (or rejected) which model for which stage
CREATE TABLE IF NOT EXISTS approvals (
    seq INTEGER PRIMARY KEY, model TEXT NOT NULL, stage TEXT NOT NULL,
    decision TEXT NOT NULL, note TEXT, run TEXT, time TEXT NOT NULL, user TEXT,
    claimed_user TEXT, key TEXT
);
CREATE INDEX IF NOT EXISTS approvals_model ON approvals (model, stage);

-- model.described: one row per model card field set
CREATE TABLE IF NOT EXISTS descriptions (
    seq INTEGER NOT NULL, model TEXT NOT NULL, field TEXT NOT NULL, value TEXT,
    time TEXT NOT NULL, user TEXT, PRIMARY KEY (seq, field)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS descriptions_model ON descriptions (model, field);

-- stage.gated: the approvals each stage requires from then on
CREATE TABLE IF NOT EXISTS gates (
    seq INTEGER PRIMARY KEY, stage TEXT NOT NULL, required INTEGER NOT NULL,
    note TEXT, time TEXT NOT NULL, user TEXT
);
CREATE INDEX IF NOT EXISTS gates_stage ON gates (stage, seq);
"""
