"""The store's derived columns, checked against the signed bytes before a
writer decides anything from them.

A store keeps beside each record the columns it derived from the record's
bytes when it stored it (kind, run, time) and reads by them: the key records,
the clock resets, the newest time. Anyone who can write the store's file can
change a column without a key, so a writer that builds on what a read by
column returned first decodes those rows and refuses to write when their
signed bytes say otherwise (``mltrail verify`` names every such row,
``column-differs``). A row whose column was changed *away* from a kind is not
returned by a read of that kind; only verify's full walk finds it (ADR 0011,
amendment of 2026-12-07), and ``promote``'s read of every record's bytes for
the gates and decisions it signs from (``refuse_hidden_kinds``, ADR 0018,
amendment of 2026-12-08).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mltrail.errors import IntegrityError

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Iterator

    from mltrail.core.codec import DecodedRecord
    from mltrail.core.entry import Record
    from mltrail.storage.base import Store, StoredRow

__all__ = [
    "checked_rows",
    "checked_rows_of_kinds",
    "checked_time_floor",
    "column_refusal",
    "find_floor_seq",
    "refuse_hidden_kinds",
]


def checked_rows_of_kinds(
    store: Store, kinds: Collection[str], start: int = 0
) -> Iterator[tuple[StoredRow, DecodedRecord]]:
    """The rows ``store`` lists as of ``kinds`` from seq ``start`` on, decoded,
    each checked to be of one of them and at its seq by its signed bytes.

    Raises:
        IntegrityError: a row's kind column (or seq) disagrees with its bytes.
    """
    return checked_rows(store.rows_of_kinds(tuple(kinds), start), kinds)


def checked_rows(
    rows: Iterable[StoredRow], kinds: Collection[str]
) -> Iterator[tuple[StoredRow, DecodedRecord]]:
    """``rows`` (a store's answer to a read of ``kinds``) decoded and checked
    as ``checked_rows_of_kinds`` checks them.

    Raises:
        IntegrityError: a row's kind column (or seq) disagrees with its bytes.
    """
    from mltrail.core.codec import decode_record

    for row in rows:
        decoded = decode_record(row.data)
        record = decoded.record
        if record.seq != row.seq or record.entry.kind not in kinds:
            raise column_refusal(
                f"the store lists seq {row.seq} as a {' or '.join(sorted(kinds))} "
                f"record, but its signed bytes say seq {record.seq}, kind "
                f"{record.entry.kind!r}"
            )
        yield row, decoded


def refuse_hidden_kinds(store: Store, kinds: Collection[str]) -> None:
    """Refuse when the store's kind column hides a record of ``kinds``: one
    whose signed bytes are of one of them that a read of ``kinds`` does not
    return (its kind column changed away, so every reader by kind, and
    :func:`checked_rows_of_kinds`, misses it). For what a decision is signed
    from (``promote``): a rejection hidden so was not counted.

    Reads every record's bytes once: a substring test each, and a record
    decoded only when its bytes name one of ``kinds`` and the read of
    ``kinds`` did not list it. Records appended meanwhile are not read. Not
    over HTTP (client mode): that would download the whole ledger for each
    promotion, and the server, which may leave any record out of any answer,
    is the one a client trusts to list them (ADR 0018, 0028).

    Raises:
        IntegrityError: such a record (or one that does not decode).
    """
    from mltrail.core.codec import decode_record
    from mltrail.storage.http import HttpStore

    if isinstance(store, HttpStore):
        return
    size = store.head().size
    listed = {row.seq for row in store.rows_of_kinds(tuple(kinds), 0)}
    marks = [b'"kind":"' + kind.encode("utf-8") + b'"' for kind in kinds]
    for row in store.rows(0, size):
        if row.seq in listed or not any(mark in row.data for mark in marks):
            continue
        kind = decode_record(row.data).record.entry.kind
        if kind in kinds:
            raise IntegrityError(
                f"record seq {row.seq} is a {kind} record by its signed bytes, "
                "but the store's kind column lists it as another kind, so a "
                f"read of {' and '.join(sorted(kinds))} records leaves it out: "
                "the store's columns were edited",
                hint="run `mltrail verify` (it names each such row as column-differs)",
            )


def checked_time_floor(store: Store, reset_kind: str) -> tuple[str, int] | None:
    """``store.time_floor()`` with the rows it was read from checked: each row
    the store lists as a ``reset_kind`` record is one, and the floor row's
    signed bytes carry the time (and seq) its column gives.

    Raises:
        IntegrityError: a time or kind column disagrees with the signed bytes.
    """
    for _ in checked_rows_of_kinds(store, (reset_kind,)):
        pass
    found = store.time_floor()
    if found is None:
        return None
    time, seq = found
    record = _record_at(store, seq)
    if record is None or record.seq != seq or record.entry.time != time:
        signed = "no record" if record is None else f"{record.entry.time!r}"
        raise column_refusal(
            f"the store gives {time!r} as the newest time, from seq {seq}, but "
            f"the signed record says {signed}"
        )
    return found


def find_floor_seq(store: Store, floor: str) -> int | None:
    """The seq of the record dated ``floor`` that the store names as its newest
    (None when the store's columns name another time, or a row whose signed
    bytes say otherwise): a label for people, never used to decide."""
    found = store.time_floor()
    if found is None or found[0] != floor:
        return None
    record = _record_at(store, found[1])
    if record is None or record.entry.time != floor:
        return None
    return found[1]


def _record_at(store: Store, seq: int) -> Record | None:
    """The decoded record the store holds at ``seq`` (None: no row there)."""
    from mltrail.core.codec import decode_record

    rows = list(store.rows(seq, seq + 1))
    return decode_record(rows[0].data).record if rows else None


def column_refusal(why: str, code: str = "column-differs") -> IntegrityError:
    """A writer's refusal to build on a row whose derived column (named by
    verify as ``code``) disagrees with its signed bytes, saying ``why``."""
    return IntegrityError(
        f"refusing to write: {why}: the store's columns were edited",
        hint=f"run `mltrail verify` (it names each such row as {code})",
    )
