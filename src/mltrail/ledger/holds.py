"""Legal holds: ``hold.added`` / ``hold.released`` entries and what they cover.

A hold targets a blob, a run, a model or a sealed segment. While it stands:

- a blob it covers cannot be purged: the blob itself, any blob a record of a
  held run references, any blob a record of a held model's runs references;
- the sealed objects concerned carry an S3 legal hold (see :mod:`mltrail.evidence.seals`):
  the held segment, or every segment holding records of a held run or model.

The ledger is the register: holds are replayed from its records in order, so
who placed or lifted a hold, when and why is signed and verifiable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mltrail.core.codec import decode_record, find_blob_refs
from mltrail.core.holds import HOLD_ADDED, HOLD_KINDS, HOLD_RELEASED, runs_named
from mltrail.errors import InputError, MltrailError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mltrail.core.entry import Entry, Record
    from mltrail.ledger.ledger import Ledger

__all__ = [
    "HOLD_KINDS",
    "TARGETS",
    "Hold",
    "Holds",
    "add_hold",
    "blob_hold",
    "load_holds",
    "parse_hold_target",
    "release_hold",
    "runs_named",
]

ADDED, RELEASED = HOLD_ADDED, HOLD_RELEASED
TARGETS = ("blob", "run", "model", "segment")
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Hold:
    """A hold that stands: placed by the ``hold.added`` record at ``seq``."""

    target: str
    id: str
    reason: str
    seq: int

    def describe(self) -> str:
        """One line: what is held, since which seq, and why."""
        return f"{self.target} {self.id} (hold.added at seq {self.seq}: {self.reason})"

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            "target": self.target,
            "id": self.id,
            "reason": self.reason,
            "seq": self.seq,
        }


@dataclass
class Holds:
    """The holds that stand, and the runs they cover (directly or by model)."""

    standing: dict[tuple[str, str], Hold]
    runs: dict[str, Hold]
    """Run id -> the hold covering it (a run hold, or a model hold of its model)."""

    def get(self, target: str, ident: str) -> Hold | None:
        """The standing hold on exactly (target, id)."""
        return self.standing.get((target, ident))

    def covering(self, entry: Entry, segment: str | None = None) -> Hold | None:
        """The hold covering a record's entry (or its segment), if any."""
        if segment is not None and (hold := self.get("segment", segment)):
            return hold
        if entry.run and (hold := self.runs.get(entry.run)):
            return hold
        model = entry.body.get("model")
        if isinstance(model, str):
            return self.get("model", model)
        return None


def parse_hold_target(text: str) -> tuple[str, str]:
    """(target, id) from ``blob:sha256:HEX``, ``run:ID``, ``model:HEX`` or
    ``segment:NAME``.

    Raises:
        InputError: no known target prefix, or an empty id.
    """
    target, _, ident = text.strip().partition(":")
    if target not in TARGETS or not ident:
        raise InputError(
            f"{text!r} does not name a hold target",
            hint="give blob:sha256:HEX, run:RUN_ID, model:MODEL_ID or "
            "segment:START-END",
        )
    if target == "blob" and not ident.startswith("sha256:"):
        ident = f"sha256:{ident}"
    return target, ident


def load_holds(ledger: Ledger, *, signed: bool = False) -> Holds:
    """Replay ``hold.added`` / ``hold.released`` records into the holds standing.

    Args:
        ledger: the ledger.
        signed: find the hold records by their signed bytes, reading every
            record, rather than by the store's kind column, which anyone able
            to write the store's file can change (a hold relabelled ``note``
            would stand no more). For what cannot be undone: a purge, lifting
            a storage legal hold.

    Raises:
        IntegrityError: (not ``signed``) a row the store lists as a hold
            record is not one by its signed bytes.
    """
    standing: dict[tuple[str, str], Hold] = {}
    records = _signed_holds(ledger) if signed else _listed_holds(ledger)
    for record in records:
        body = record.entry.body
        key = (str(body.get("target")), str(body.get("id")))
        if record.entry.kind == ADDED:
            standing.setdefault(key, Hold(*key, str(body.get("reason")), record.seq))
        else:
            standing.pop(key, None)
    runs: dict[str, Hold] = {}
    for (target, ident), hold in standing.items():
        if target == "run":
            runs.setdefault(ident, hold)
        elif target == "model":
            for run in runs_of_model(ledger, ident):
                runs.setdefault(run, hold)
    return Holds(standing, runs)


def _listed_holds(ledger: Ledger) -> Iterator[Record]:
    """The rows the store lists as hold records, each checked to be one by its
    signed bytes (else IntegrityError: a note relabelled ``hold.released``
    would lift a hold)."""
    from mltrail.ledger.columns import checked_rows_of_kinds

    for _, decoded in checked_rows_of_kinds(ledger.store, HOLD_KINDS):
        yield decoded.record


def _signed_holds(ledger: Ledger) -> Iterator[Record]:
    """The hold records, in seq order, picked by their signed kind."""
    needle = b'"kind":"hold.'  # canonical bytes: the entry's kind reads so
    for row in ledger.store.rows():
        if needle not in row.data:
            continue
        try:
            record = decode_record(row.data).record
        except MltrailError:
            continue  # unreadable: verification names it
        if record.entry.kind in HOLD_KINDS:
            yield record


def runs_of_model(ledger: Ledger, model: str) -> set[str]:
    """Runs whose records name the model id (they made, tuned, sealed or staged it)."""
    if not _HEX64.fullmatch(model):
        return set()
    needle = model.encode()
    runs: set[str] = set()
    for row in ledger.store.rows():
        if needle not in row.data:
            continue
        try:
            entry = decode_record(row.data).record.entry
        except MltrailError:
            continue
        runs.update(runs_named(entry))
    return runs


def blob_hold(ledger: Ledger, digest: str, holds: Holds | None = None) -> Hold | None:
    """The hold that keeps ``digest`` from being purged, if any."""
    holds = holds or load_holds(ledger)
    direct = holds.get("blob", digest)
    if direct is not None or not holds.standing:
        return direct
    needle = digest.encode()
    for row in ledger.store.rows():
        if needle not in row.data:
            continue
        try:
            entry = decode_record(row.data).record.entry
        except MltrailError:
            continue
        if any(ref.digest == digest for ref in find_blob_refs(entry.body)):
            hold = holds.covering(entry)
            if hold is not None:
                return hold
    return None


def add_hold(ledger: Ledger, target: str, ident: str, reason: str) -> Record:
    """Append ``hold.added``.

    Raises:
        InputError: a hold on it already stands, or no reason is given.
    """
    _require_reason(reason)
    current = load_holds(ledger).get(target, ident)
    if current is not None:
        raise InputError(f"a hold already stands on {current.describe()}")
    body = {"target": target, "id": ident, "reason": reason}
    return ledger.append(ADDED, body)


def release_hold(ledger: Ledger, target: str, ident: str, reason: str) -> Record:
    """Append ``hold.released`` for a standing hold.

    Raises:
        InputError: no hold stands on it, or no reason is given.
    """
    _require_reason(reason)
    if load_holds(ledger).get(target, ident) is None:
        raise InputError(
            f"no hold stands on {target} {ident}",
            hint="`mltrail hold list` shows the holds that stand",
        )
    body = {"target": target, "id": ident, "reason": reason}
    return ledger.append(RELEASED, body)


def _require_reason(reason: str) -> None:
    if not reason.strip():
        raise InputError("--reason is required: say why")
