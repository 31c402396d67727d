"""Answer-time checks: do the index rows an answer used say what the records say?

The index is derived and unsigned: whoever can write the home can edit
``index.db`` (map a model to another run, change a parameter value, move a
record to another run) and ``mltrail verify`` still finds the ledger intact.
So before an answer is shown, the rows it was built from are derived again
from the records they name, in a scratch index in memory, and compared with
the stored ones:

- a run's rows (``records``, ``runs``, ``params``, ``data``, ``models``): from
  every record the index places in the run or that any of those rows names;
- rows keyed by one record (promotions, flags, approvals, card fields, gates,
  sources): from that record (and the one that cleared a flag or last checked
  a source).

A difference makes :func:`repaired` rebuild the index from the ledger and say
so on stderr; the caller then answers again from the rebuilt index. What an
answer cannot see (a run deleted from the index, so never listed) is left to
``mltrail verify``, which compares the whole index with one rebuilt in memory
(:func:`index_differences`).

Reading a run's few records and ingesting them costs about 0.1 ms a run, so a
listing of 20 runs pays about 2 ms; an index built in memory (a read-only
home) was just derived from the records and is not checked.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from typing import TYPE_CHECKING, Any

from mltrail.index.db import _readable_entry
from mltrail.index.tables import SCHEMA

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from mltrail.index.db import Index
    from mltrail.ledger.ledger import Ledger

__all__ = [
    "MAX_CHECKED_ROWS",
    "MAX_CHECKED_RUNS",
    "index_differences",
    "kind_rows_differ",
    "node_rows_differ",
    "repaired",
    "runs_differ",
    "seqs_differ",
    "sources_differ",
]

_CHUNK = 400  # ids or seqs per IN (...) list, well under SQLite's 32,766 variables
MAX_CHECKED_RUNS = 50
"""Runs of one answer checked against their records at most (~0.2 ms each)."""
MAX_CHECKED_ROWS = 100
"""Single-record rows (promotions, flags, ...) of one answer checked at most."""
# tables whose rows belong to one run (``run`` is the record's own run id)
_RUN_TABLES = {"records": "run", "runs": "id", "params": "run", "data": "run",
               "models": "run"}  # fmt: skip
# tables whose rows come from one record each, keyed by its seq
_SEQ_TABLES = ("promotions", "flags", "approvals", "descriptions", "gates")


def repaired(index: Index, problem: str | None) -> bool:
    """Rebuild ``index`` from the ledger when ``problem`` says it disagreed.

    Warns on stderr (through ``index.warn``) and returns True: the caller must
    answer again from the rebuilt index. Returns False when there is no problem.
    """
    if problem is None:
        return False
    index.rebuild()
    index.warn(
        f"warning: the index ({index.path}) disagreed with the signed records "
        f"({problem}); it was rebuilt from the ledger and this answer comes from "
        "the rebuilt index. Someone or something changed index.db: `mltrail "
        "verify` checks the ledger itself"
    )
    return True


def runs_differ(index: Index, run_ids: Iterable[str]) -> str | None:
    """What differs between the index's rows of these runs and their records.

    None when they agree (or the index lives in memory, derived just now). Of
    a long answer (more than :data:`MAX_CHECKED_RUNS` runs, given in the order
    shown), the first and last runs shown are checked, half of that number
    each: a listing of every run of a large ledger would otherwise cost a
    rebuild per answer. ``mltrail verify`` compares the whole index.
    """
    if index.path is None:
        return None
    shown = [r for r in dict.fromkeys(run_ids) if r and r not in index.checked_runs]
    if len(shown) > MAX_CHECKED_RUNS:
        half = MAX_CHECKED_RUNS // 2
        shown = shown[:half] + shown[-half:]
    ids = sorted(shown)
    if not ids:
        return None
    seqs: set[int] = set()
    for chunk in _chunks(ids):
        marks = ", ".join("?" * len(chunk))
        for table, column in _RUN_TABLES.items():
            seqs.update(
                s for (s,) in index.conn.execute(
                    f"SELECT seq FROM {table} WHERE {column} IN ({marks})",  # noqa: S608
                    chunk,
                )
            )  # fmt: skip
    scratch = _scratch(index.ledger, seqs)
    try:
        for chunk in _chunks(ids):
            marks = ", ".join("?" * len(chunk))
            for table, column in _RUN_TABLES.items():
                sql = f"SELECT * FROM {table} WHERE {column} IN ({marks})"  # noqa: S608
                problem = _compare(table, index.conn, scratch, sql, chunk)
                if problem:
                    return problem
    finally:
        scratch.close()
    index.checked_runs.update(ids)
    return None


def seqs_differ(
    index: Index, seqs: Iterable[int], tables: tuple[str, ...] = _SEQ_TABLES
) -> str | None:
    """What differs between the rows of these records in ``tables`` and the
    records themselves (a flag row is derived with the record that cleared it).

    Of more than :data:`MAX_CHECKED_ROWS` seqs (given in the order shown), the
    first and last halves are checked, as :func:`runs_differ` does."""
    if index.path is None:
        return None
    shown = list(dict.fromkeys(int(s) for s in seqs if s is not None))
    if len(shown) > MAX_CHECKED_ROWS:  # the first and last rows shown
        shown = shown[: MAX_CHECKED_ROWS // 2] + shown[-(MAX_CHECKED_ROWS // 2) :]
    wanted = set(shown)
    if not wanted:
        return None
    for chunk in _chunks(sorted(wanted)):
        marks = ", ".join("?" * len(chunk))
        wanted.update(
            s for (s,) in index.conn.execute(
                f"SELECT cleared_seq FROM flags WHERE seq IN ({marks}) "  # noqa: S608
                "AND cleared_seq IS NOT NULL",
                chunk,
            )
        )  # fmt: skip
    scratch = _scratch(index.ledger, wanted)
    try:
        return _compare_seqs(index.conn, scratch, sorted(wanted), tables)
    finally:
        scratch.close()


def node_rows_differ(index: Index, nodes: Iterable[str]) -> str | None:
    """Whether the governance rows of these model nodes (promotions, flags,
    approvals, card fields) agree with their records."""
    names = sorted(set(nodes))
    if not names or index.path is None:
        return None
    seqs: set[int] = set()
    for chunk in _chunks(names):
        marks = ", ".join("?" * len(chunk))
        for table in ("promotions", "flags", "approvals", "descriptions"):
            seqs.update(
                s for (s,) in index.conn.execute(
                    f"SELECT seq FROM {table} WHERE model IN ({marks})",  # noqa: S608
                    chunk,
                )
            )  # fmt: skip
    return seqs_differ(index, seqs)


def kind_rows_differ(
    index: Index, kind: str, table: str, *, stage: str | None = None
) -> str | None:
    """Whether ``table``'s rows agree with every record of ``kind`` (those of
    ``stage`` only, when given): each such record's rows, and each row of the
    table (of that stage) with the record at its seq. Unlike :func:`seqs_differ`,
    which checks the rows an answer found, this finds a row *deleted* from
    ``index.db``: the records are listed by the store's kind column, each
    checked against its signed bytes (``checked_rows_of_kinds``), never by the
    index.

    Reads and decodes every record of ``kind``, without the caps of the other
    checks: for answers a decision is signed from (``promote``) and for kinds
    with few records (``stage.gated``). A record whose kind column was changed
    away from ``kind`` is not listed; ``mltrail verify`` names it, and
    ``promote`` refuses first (``refuse_hidden_kinds``).

    Raises:
        IntegrityError: the store lists a record as ``kind`` that is not one.
    """
    from mltrail.ledger.columns import checked_rows_of_kinds

    if index.path is None:
        return None
    last = index._meta("last_seq")
    upto = int(last) if last is not None else -1  # records not yet indexed wait
    seqs: set[int] = set()
    for row, decoded in checked_rows_of_kinds(index.ledger.store, (kind,)):
        body = decoded.record.entry.body
        if row.seq <= upto and (stage is None or body.get("stage") == stage):
            seqs.add(row.seq)
    sql = f"SELECT seq FROM {table}"  # noqa: S608 (our own table names)
    args: tuple[Any, ...] = ()
    if stage is not None:
        sql += " WHERE stage = ?"
        args = (stage,)
    seqs.update(s for (s,) in index.conn.execute(sql, args))
    if not seqs:
        return None
    scratch = _scratch(index.ledger, seqs)
    try:
        return _compare_seqs(index.conn, scratch, sorted(seqs), (table,))
    finally:
        scratch.close()


def sources_differ(index: Index, names: Iterable[str] | None = None) -> str | None:
    """Whether the ``sources`` rows (all, or these names) agree with the records
    that registered and last checked each source (and the first and latest
    failed checks since then)."""
    if index.path is None:
        return None
    rows = index.conn.execute(
        "SELECT name, seq, checked_seq, failing_seq, failed_seq FROM sources"
    ).fetchall()
    wanted = None if names is None else set(names)
    rows = [r for r in rows if wanted is None or r[0] in wanted]
    if not rows:
        return None
    seqs = {seq for r in rows for seq in r[1:] if seq is not None}
    scratch = _scratch(index.ledger, seqs)
    try:
        chosen = sorted(r[0] for r in rows)
        for chunk in _chunks(chosen):
            marks = ", ".join("?" * len(chunk))
            sql = f"SELECT * FROM sources WHERE name IN ({marks})"  # noqa: S608
            problem = _compare("sources", index.conn, scratch, sql, chunk)
            if problem:
                return problem
    finally:
        scratch.close()
    # the rows agree with the seqs they name; a later check they do not name
    # (a failure emptied from the row) is found in the records
    latest = {r[0]: max(s for s in r[1:] if s is not None) for r in rows}
    return _later_source_check(index, latest)


def _later_source_check(index: Index, latest: dict[str, int]) -> str | None:
    """A ``source.checked`` record, already indexed, of one of ``latest``'s
    sources after the last check its row names (read from the store's kind
    column, each row checked against its signed bytes)."""
    from mltrail.ledger.columns import checked_rows_of_kinds

    last = index._meta("last_seq")
    upto = int(last) if last is not None else -1  # records not yet indexed wait
    start = min(latest.values()) + 1
    if start > upto:
        return None
    for row, decoded in checked_rows_of_kinds(
        index.ledger.store, ("source.checked",), start
    ):
        if row.seq > upto:
            break
        name = decoded.record.entry.body.get("name")
        if isinstance(name, str) and row.seq > latest.get(name, row.seq):
            return (
                f"sources row {name!r} lacks the check at seq {row.seq} of the records"
            )
    return None


def index_differences(index: Index, limit: int = 5) -> list[str]:
    """Every table where ``index`` differs from one rebuilt in memory from its
    ledger (rows missing from the index, rows the records do not hold), up to
    ``limit`` examples per table; empty when they agree.

    Costs a full rebuild (about 32,000 records/s): for ``mltrail verify``.
    """
    from mltrail.index.db import Index as IndexClass

    fresh = IndexClass(None, index.ledger)
    try:
        fresh.sync()
        found: list[str] = []
        for key in ("last_seq", "last_hash"):
            if fresh._meta(key) != index._meta(key):
                found.append(
                    f"meta {key}: index has {index._meta(key)!r}, the records give "
                    f"{fresh._meta(key)!r}"
                )
        for table in _all_tables(fresh.conn):
            if table == "meta":
                continue
            sql = f"SELECT * FROM {table}"  # noqa: S608 (our own table names)
            try:
                mine = Counter(index.conn.execute(sql))
            except sqlite3.Error as e:
                found.append(f"{table}: cannot be read ({e})")
                continue
            theirs = Counter(fresh.conn.execute(sql))
            missing, extra = theirs - mine, mine - theirs
            if missing:
                found.append(
                    f"{table}: {sum(missing.values())} row(s) of the records missing "
                    f"from the index, e.g. {_show(next(iter(missing)))}"
                )
            if extra:
                found.append(
                    f"{table}: {sum(extra.values())} row(s) no record gives, "
                    f"e.g. {_show(next(iter(extra)))}"
                )
        return found
    finally:
        fresh.close()


# -- helpers -------------------------------------------------------------------


def _scratch(ledger: Ledger, seqs: Iterable[int]) -> sqlite3.Connection:
    """An in-memory index of just these records (no content links of outputs)."""
    from mltrail.index.ingest import ingest_entry

    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(SCHEMA)
    cur = conn.cursor()
    get_blob = ledger.store.get_blob
    for row in _rows(ledger, sorted(set(seqs))):
        entry = _readable_entry(row.data)
        if entry is not None:
            try:
                ingest_entry(cur, get_blob, row.seq, entry, links=False)
            except (KeyError, TypeError, ValueError, sqlite3.Error):
                continue  # the full ingest would have failed on it too
    return conn


def _rows(ledger: Ledger, seqs: list[int]) -> Iterator[Any]:
    """The store's rows at ``seqs``, read in contiguous ranges."""
    size = ledger.head().size
    seqs = [s for s in seqs if 0 <= s < size]
    if not seqs:
        return
    wanted = set(seqs)
    start = prev = seqs[0]
    ranges = []
    for seq in seqs[1:]:
        if seq - prev > 8:
            ranges.append((start, prev + 1))
            start = seq
        prev = seq
    ranges.append((start, prev + 1))
    for low, high in ranges:
        for row in ledger.store.rows(low, high):
            if row.seq in wanted:
                yield row


def _compare(
    table: str,
    index: sqlite3.Connection,
    scratch: sqlite3.Connection,
    sql: str,
    args: list[Any],
) -> str | None:
    mine = Counter(index.execute(sql, args))
    theirs = Counter(scratch.execute(sql, args))
    if mine == theirs:
        return None
    extra, missing = mine - theirs, theirs - mine
    if extra:
        return f"{table} row {_show(next(iter(extra)))} is not what the records say"
    return f"{table} row {_show(next(iter(missing)))} of the records is missing"


def _compare_seqs(
    index: sqlite3.Connection,
    scratch: sqlite3.Connection,
    seqs: list[int],
    tables: tuple[str, ...],
) -> str | None:
    for chunk in _chunks(seqs):
        marks = ", ".join("?" * len(chunk))
        for table in tables:
            sql = f"SELECT * FROM {table} WHERE seq IN ({marks})"  # noqa: S608
            problem = _compare(table, index, scratch, sql, chunk)
            if problem:
                return problem
    return None


def _all_tables(conn: sqlite3.Connection) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]


def _show(row: tuple[Any, ...], width: int = 160) -> str:
    text = repr(tuple(row))
    return text if len(text) <= width else text[: width - 3] + "..."


def _chunks(values: list[Any]) -> Iterator[list[Any]]:
    for i in range(0, len(values), _CHUNK):
        yield list(values[i : i + _CHUNK])
