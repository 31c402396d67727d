"""Verification of purges against legal holds: a held blob purged is an error.

``mltrail purge`` refuses a blob a standing legal hold covers (see
:mod:`mltrail.ledger.holds`), but that is a check in one command: whoever holds
the ledger key can sign and append a ``blob.purged`` record through the Python
API, an older or altered copy of mltrail, and erase the bytes. Verification
therefore replays the holds up to each believed purge and reports a purge of a
blob a hold covered at its seq as ``purge-held``: evidence under a legal hold
was destroyed, whoever signed it.

A hold covers a blob when it targets the blob itself, the run of a record that
referenced it before the purge, or a model such a run's records name (as
:func:`mltrail.ledger.holds.blob_hold` decides for ``mltrail purge``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from mltrail.core.codec import decode_record
from mltrail.core.holds import HOLD_ADDED, HOLD_KINDS, runs_named
from mltrail.core.report import Severity
from mltrail.errors import MltrailError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from mltrail.core.entry import Record
    from mltrail.core.erasure import PurgeNote
    from mltrail.core.verify import LedgerVerifier
    from mltrail.storage.base import Store, StoredRow

__all__ = ["check_held_purges", "records_at"]

_HEX64 = re.compile(r"[0-9a-f]{64}")


def check_held_purges(store: Store, verifier: LedgerVerifier) -> None:
    """Report each believed purge of a blob a standing legal hold covered."""
    notes = [
        note
        for digest in sorted(verifier.purges)
        if (note := verifier.trusted_purge(digest)) is not None
    ]
    if not notes:
        return
    holds = list(_decoded(store.rows_of_kinds(HOLD_KINDS)))
    if not holds:
        return
    models = _ModelRuns(store, max(note.seq for note in notes))
    for note in notes:
        hold = _covering_hold(store, holds, note, verifier, models)
        if hold is not None:
            verifier.problem(
                note.seq,
                "purge-held",
                f"blob {note.digest} was purged at seq {note.seq} "
                f"({note.describe()}) while a legal hold covered it: "
                f"{hold}; a held blob may be purged only after the hold "
                "is released",
                Severity.ERROR,
            )


def records_at(store: Store, seqs: Iterable[int]) -> Iterator[Record]:
    """The records at ``seqs`` that decode (the walk names those that do not)."""
    for seq in seqs:
        yield from _decoded(store.rows(seq, seq + 1))


def _decoded(rows: Iterable[StoredRow]) -> Iterator[Record]:
    for row in rows:
        try:
            yield decode_record(row.data).record
        except MltrailError:
            continue  # unreadable: the walk names it


def _standing(holds: list[Record], before: int) -> dict[tuple[str, str], str]:
    """The holds standing just before seq ``before``, each described."""
    standing: dict[tuple[str, str], str] = {}
    for record in holds:
        if record.seq >= before:
            break
        body = record.entry.body
        key = (str(body.get("target")), str(body.get("id")))
        if record.entry.kind == HOLD_ADDED:
            reason = str(body.get("reason"))
            said = f"{key[0]} {key[1]} (hold.added at seq {record.seq}: {reason!r})"
            standing.setdefault(key, said)
        else:
            standing.pop(key, None)
    return standing


def _covering_hold(
    store: Store,
    holds: list[Record],
    note: PurgeNote,
    verifier: LedgerVerifier,
    models: _ModelRuns,
) -> str | None:
    """The hold standing at the purge's seq that covers its blob, as
    :meth:`mltrail.ledger.holds.Holds.covering` decides for ``mltrail purge``
    (over the records before the purge: what that command saw)."""
    standing = _standing(holds, note.seq)
    if not standing:
        return None
    direct = standing.get(("blob", note.digest))
    if direct is not None:
        return direct
    seqs = {seq for seq, _ in verifier.blob_refs.get(note.digest, ()) if seq < note.seq}
    entries = [record.entry for record in records_at(store, sorted(seqs))]
    runs = {entry.run for entry in entries if entry.run}
    for run in sorted(runs):
        hold = standing.get(("run", run))
        if hold is not None:
            return hold
    for key in [key for key in standing if key[0] == "model"]:
        named = any(entry.body.get("model") == key[1] for entry in entries)
        if named or runs & models.runs_before(key[1], note.seq):
            return standing[key]
    return None


class _ModelRuns:
    """Runs whose records name a model id, each with the seq that names it:
    one scan of the records up to the last purge per held model, however many
    purges a hold stood over (a scan per purge made verify read the ledger
    once for each)."""

    def __init__(self, store: Store, last: int) -> None:
        self._store = store
        self._stop = last
        self._named: dict[str, list[tuple[int, set[str]]]] = {}

    def runs_before(self, model: str, before: int) -> set[str]:
        """Runs whose records before seq ``before`` name the model id (a 64-hex
        id, as :func:`mltrail.ledger.holds.runs_of_model` requires)."""
        if not _HEX64.fullmatch(model):
            return set()
        if model not in self._named:
            self._named[model] = self._scan(model.encode())
        runs: set[str] = set()
        for seq, named in self._named[model]:
            if seq >= before:
                break
            runs |= named
        return runs

    def _scan(self, needle: bytes) -> list[tuple[int, set[str]]]:
        found = []
        for row in self._store.rows(0, self._stop):
            if needle in row.data:
                for record in _decoded([row]):
                    found.append((record.seq, set(runs_named(record.entry))))
        return found
