"""Sealed segments: their names, manifests and retention, and walking them.

A *segment* is the records ``start`` to ``end - 1`` of a ledger, sealed to
write-once storage with the signed checkpoint of size ``end`` (and the
timestamp and cosignature evidence kept about it). It is four files under
``segments/<start:012d>-<end:012d>/``:

    records.jsonl    each record's canonical bytes, one per line
    checkpoint.txt   the signed checkpoint note of size ``end``
    evidence.json    the evidence about that checkpoint (``[]`` when none)
    manifest.json    written last: origin, range, the files' SHA-256 and sizes,
                     the record hash and Merkle frontier before ``start``

A segment without its manifest is unfinished and counts for nothing. Segments
follow each other: the first starts at 0, each next one where the last ended,
so walking them from the first (:class:`SealWalk`) rebuilds the chain, the key
ring and the Merkle tree, and checks each checkpoint's root and signature with
nothing but the sealed bytes.

Everything here is pure: bytes in, values or :class:`SealError` out.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from mltrail.core.canonical import (
    canonical_bytes,
    compute_leaf_hash,
    compute_record_hash,
)
from mltrail.core.chain import KEY_KINDS, KeyRing
from mltrail.core.checkpoint import parse_signed_checkpoint, verify_checkpoint
from mltrail.core.codec import decode_record, parse_json
from mltrail.core.merkle import CompactRange
from mltrail.core.signing import decode_b64, verify_signature
from mltrail.errors import InputError, MltrailError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "CHECKPOINT_FILE",
    "EVIDENCE_FILE",
    "FORMAT",
    "MANIFEST_FILE",
    "MIN_RETENTION_MONTHS",
    "RECORDS_FILE",
    "Manifest",
    "Retention",
    "SealError",
    "SealWalk",
    "SealedSegment",
    "build_manifest",
    "check_beside",
    "parse_manifest",
    "parse_retention",
    "parse_segment_name",
    "segment_name",
]

FORMAT = "mltrail-seal/1"
RECORDS_FILE = "records.jsonl"
CHECKPOINT_FILE = "checkpoint.txt"
EVIDENCE_FILE = "evidence.json"
MANIFEST_FILE = "manifest.json"
DATA_FILES = (RECORDS_FILE, CHECKPOINT_FILE, EVIDENCE_FILE)
MIN_RETENTION_MONTHS = 6
"""EU AI Act Art. 19(1) and 26(6): logs are kept at least six months."""

_NAME = re.compile(r"([0-9]{12})-([0-9]{12})")
_RETENTION = re.compile(r"([1-9][0-9]{0,3})([dwmy])")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_SIZE = 10**15


class SealError(MltrailError):
    """A sealed segment is malformed, does not follow the one before, or does not
    verify. The message names the segment."""


def segment_name(start: int, end: int) -> str:
    """The folder name of the segment of records ``start`` to ``end - 1``."""
    return f"{start:012d}-{end:012d}"


def parse_segment_name(name: str) -> tuple[int, int] | None:
    """(start, end) of a segment folder name, or None if it is not one."""
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    start, end = int(match[1]), int(match[2])
    return (start, end) if start < end else None


@dataclass(frozen=True, slots=True)
class Retention:
    """How long sealed objects are kept: calendar months plus days."""

    months: int
    days: int
    text: str

    def until(self, now: datetime) -> datetime:
        """The retain-until time of an object sealed at ``now`` (a day's end
        past the last month is clamped to the month's last day)."""
        total = now.year * 12 + now.month - 1 + self.months
        year, month = divmod(total, 12)
        day = min(now.day, _days_in_month(year, month + 1))
        return now.replace(year=year, month=month + 1, day=day) + timedelta(
            days=self.days
        )


def _days_in_month(year: int, month: int) -> int:
    if month == 12:
        return 31
    return (datetime(year, month + 1, 1) - datetime(year, month, 1)).days


def parse_retention(text: str) -> Retention:
    """A retention period: ``<n>d``, ``<n>w``, ``<n>m`` (months) or ``<n>y``.

    Raises:
        InputError: malformed, or shorter than the six months the EU AI Act
            asks logs to be kept.
    """
    match = _RETENTION.fullmatch(text.strip().lower())
    if match is None:
        raise InputError(
            f"retention {text!r} is not a period",
            hint="give a number and a unit: 7y, 18m, 400d, 30w",
        )
    n, unit = int(match[1]), match[2]
    months, days = {"d": (0, n), "w": (0, 7 * n), "m": (n, 0), "y": (12 * n, 0)}[unit]
    if (months and months < MIN_RETENTION_MONTHS) or (not months and days < 183):
        raise InputError(
            f"retention {text} is shorter than six months: the EU AI Act "
            "(Art. 19 and 26(6)) asks that the logs of a high-risk AI system be "
            "kept at least six months",
            hint="give 6m or more (e.g. --retain 7y)",
        )
    return Retention(months, days, match[0])


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a segment's ``manifest.json`` says."""

    origin: str
    start: int
    end: int
    prev: str
    """Hex record hash of record ``start - 1`` (64 zeros for the first segment)."""
    frontier: tuple[str, ...]
    """Hex Merkle frontier of the tree of ``start`` records."""
    files: Mapping[str, tuple[str, int]]
    """File name -> (hex SHA-256, size)."""
    sealed_at: str
    retain_until: str | None


def build_manifest(
    *,
    origin: str,
    start: int,
    end: int,
    prev: bytes,
    frontier: Sequence[bytes],
    files: Mapping[str, bytes],
    sealed_at: str,
    retain_until: str | None,
) -> bytes:
    """The canonical bytes of a segment's manifest."""
    value: dict[str, Any] = {
        "format": FORMAT,
        "origin": origin,
        "start": start,
        "end": end,
        "prev": prev.hex(),
        "frontier": [h.hex() for h in frontier],
        "files": {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            for name, data in sorted(files.items())
        },
        "sealed_at": sealed_at,
        "retain_until": retain_until,
    }
    return canonical_bytes(value)


def parse_manifest(data: bytes) -> Manifest:
    """Read a manifest (untrusted bytes).

    Raises:
        SealError: not a manifest of this format.
    """
    try:
        raw = parse_json(data, what="seal manifest")
        return _manifest(raw)
    except SealError:
        raise
    except (MltrailError, TypeError, KeyError, ValueError) as e:
        raise SealError(f"unreadable manifest: {e}") from e


def _manifest(raw: Any) -> Manifest:
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise SealError(f"not a {FORMAT} manifest")
    start, end = _uint(raw["start"]), _uint(raw["end"])
    if not start < end:
        raise SealError(f"manifest range {start} to {end} is empty")
    frontier = tuple(_hex64(h) for h in raw["frontier"])
    if len(frontier) != start.bit_count():
        raise SealError("manifest frontier does not fit its start")
    files = {}
    for name, info in dict(raw["files"]).items():
        if name not in DATA_FILES or not isinstance(info, dict):
            raise SealError(f"manifest names an unknown file {str(name)[:40]!r}")
        files[name] = (_hex64(info["sha256"]), _uint(info["size"]))
    if RECORDS_FILE not in files or CHECKPOINT_FILE not in files:
        raise SealError("manifest lacks records or checkpoint")
    retain = raw.get("retain_until")
    return Manifest(
        origin=_text(raw["origin"]),
        start=start,
        end=end,
        prev=_hex64(raw["prev"]),
        frontier=frontier,
        files=files,
        sealed_at=_text(raw["sealed_at"]),
        retain_until=None if retain is None else _text(retain),
    )


def _uint(value: Any) -> int:
    if type(value) is not int or not 0 <= value < _MAX_SIZE:
        raise SealError(f"{str(value)[:40]!r} is not a count")
    return value


def _hex64(value: Any) -> str:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise SealError(f"{str(value)[:70]!r} is not a hex SHA-256")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 1000:
        raise SealError("manifest text field is not a short string")
    return value


@dataclass(frozen=True, slots=True)
class SealedSegment:
    """A segment that verified: its range, manifest and record lines."""

    name: str
    manifest: Manifest
    records: tuple[bytes, ...]
    checkpoint: str
    root: bytes


@dataclass
class SealWalk:
    """Walks an origin's segments in order, from record 0, checking each.

    Each checkpoint must be signed by a log key the sealed records made valid
    at its size. With ``trusted`` (key ids an auditor pins) the walk needs
    nothing but the sealed bytes and those ids: every record's signature is
    checked against the key valid at its seq too, and ``trusted_size`` says up
    to which size a checkpoint signed by a trusted key (a pinned one, or one
    that a ``key.added`` signed by a trusted key added) vouches for the records
    (as the newest checkpoint by a pinned key does in ``mltrail verify``).
    Without it the walk checks the chain, the tree and the checkpoints, for a
    caller that holds the records to a ledger it verified.

    Example::

        walk = SealWalk("example.org/demo", trusted=frozenset({key_id}))
        for name, files in segments:       # in order of start
            segment = walk.accept(name, files)
    """

    origin: str
    size: int = 0
    last_hash: bytes = bytes(32)
    tree: CompactRange = field(default_factory=CompactRange)
    keys: KeyRing = field(default_factory=KeyRing)
    trusted: frozenset[str] | None = None
    trusted_size: int = 0
    """The size of the newest checkpoint a trusted key signed (with ``trusted``)."""
    _trusted: set[str] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.keys.origin is None:  # to check author keys' proofs
            self.keys.origin = self.origin
        self._trusted = set(self.trusted or ())

    @property
    def trusted_keys(self) -> frozenset[str]:
        """The key ids trusted so far (pinned, or added by a trusted key)."""
        return frozenset(self._trusted)

    def accept(self, name: str, files: Mapping[str, bytes]) -> SealedSegment:
        """Check the segment ``name`` (its files by name) and move past it.

        Raises:
            SealError: it is unfinished, malformed, does not follow the segment
                before it, or does not verify.
        """
        try:
            return self._accept(name, files)
        except SealError as e:
            raise SealError(f"segment {name}: {e}") from e

    def accept_unfinished(
        self, name: str, files: Mapping[str, bytes]
    ) -> tuple[bytes, ...]:
        """The record lines of a segment whose manifest was never written (an
        interrupted seal), checked as :meth:`accept` checks a finished one's:
        they follow the records before them, and its checkpoint (written before
        the manifest) gives their root and is signed by a valid key. It still
        counts for nothing; but the ledger key vouched for these bytes.

        Raises:
            SealError: a file is missing, or they do not verify.
        """
        try:
            span = parse_segment_name(name)
            if span is None or span[0] != self.size:
                raise SealError(f"it does not start at record {self.size}")
            for file in (RECORDS_FILE, CHECKPOINT_FILE):
                if file not in files:
                    raise SealError(f"{file} is missing")
            lines = _lines(files[RECORDS_FILE], span[1] - span[0])
            try:
                for line in lines:
                    self._accept_record(line)
            except MltrailError as e:
                raise SealError(f"record {self.size}: {e}") from e
            text = files[CHECKPOINT_FILE].decode("utf-8", "replace")
            _check_checkpoint(
                text, self.origin, self.size, self.tree.root(), self.signers(self.size)
            )
        except SealError as e:
            raise SealError(f"segment {name}: {e}") from e
        return lines

    def _accept(self, name: str, files: Mapping[str, bytes]) -> SealedSegment:
        manifest = _checked_manifest(name, files, self.origin)
        self._check_place(manifest)
        lines = _lines(files[RECORDS_FILE], manifest.end - manifest.start)
        try:
            for line in lines:
                self._accept_record(line)
        except MltrailError as e:
            raise SealError(f"record {self.size}: {e}") from e
        text = files[CHECKPOINT_FILE].decode("utf-8", "replace")
        root = _check_checkpoint(
            text, self.origin, self.size, self.tree.root(), self.signers(self.size)
        )
        if self._trusted and _signed_by(text, self.origin, self._trusted_signers()):
            self.trusted_size = self.size
        return SealedSegment(name, manifest, lines, text, root)

    def _check_place(self, manifest: Manifest) -> None:
        if manifest.start != self.size:
            raise SealError(
                f"it starts at record {manifest.start}, but the segments before "
                f"it end at {self.size}"
            )
        frontier = tuple(h.hex() for h in self.tree.hashes)
        if manifest.prev != self.last_hash.hex() or manifest.frontier != frontier:
            raise SealError("its manifest does not continue the segment before it")

    def _accept_record(self, line: bytes) -> None:
        decoded = decode_record(line)
        record = decoded.record
        if record.seq != self.size:
            raise SealError(f"holds seq {record.seq} at this place")
        if record.prev != self.last_hash.hex():
            raise SealError("its prev is not the hash of the record before it")
        entry = record.entry
        checked = self.trusted is not None
        if checked and record.seq > 0:  # by the keys before it
            self._check_signature(decoded)
        if entry.kind in KEY_KINDS and entry.sig is not None:
            problem = self.keys.apply(
                record.seq, entry.kind, dict(entry.body), entry.sig.key
            )
            if problem:
                raise SealError(problem)
            if entry.kind == "key.added" and entry.sig.key in self._trusted:
                self._trusted.add(str(entry.body.get("key")))
        if checked and record.seq == 0:  # by the key it adds
            self._check_signature(decoded)
        self.tree.append(compute_leaf_hash(line))
        self.last_hash = compute_record_hash(line)
        self.size += 1

    def _check_signature(self, decoded: Any) -> None:
        """The entry's signature, by the key valid at its seq (record 0: the key
        it adds)."""
        record = decoded.record
        entry, seq = record.entry, record.seq
        if entry.sig is None:
            raise SealError("its entry carries no signature")
        if seq == 0:
            genesis = self.keys.keys.get(entry.sig.key)
            if entry.kind != "key.added" or genesis is None:
                raise SealError("the first record is not a key.added signed by its key")
            public = genesis.public_key
        else:
            problem = self.keys.signer_problem(
                entry.sig.key, seq, entry.kind, entry.actor.get("user")
            )
            if problem:
                raise SealError(problem)
            public = self.keys.keys[entry.sig.key].public_key
        try:
            signature = decode_b64(entry.sig.value)
        except ValueError:
            signature = b""
        if not (
            public and signature and verify_signature(
                public, decoded.signing_bytes, signature
            )
        ):  # fmt: skip
            raise SealError("its signature does not verify")

    def signers(self, size: int) -> list[bytes]:
        """The log keys that may sign the checkpoint of ``size``."""
        return list(self.keys.valid_keys(size).values())

    def _trusted_signers(self) -> list[bytes]:
        valid = self.keys.valid_keys(self.size)
        return [key for key_id, key in valid.items() if key_id in self._trusted]


def check_beside(
    name: str,
    files: Mapping[str, bytes],
    walk: SealWalk,
    hashes: Sequence[bytes],
    leaves: Sequence[bytes],
) -> int:
    """Check a finished segment that starts inside what ``walk`` already took
    (a second seal of the same records, or one added beside them): its records
    must be byte for byte those the walk took (``hashes``, ``leaves``: their
    record and leaf hashes, by seq), its manifest must continue them, and its
    checkpoint must be theirs, signed as the walk requires. Records past the
    walk's end are left: nothing sealed before them is known here.

    Returns:
        The seq up to which its records were compared (``end``, or the walk's
        size when it seals records beyond).

    Raises:
        SealError: it differs from what the walk took, or does not verify.
    """
    try:
        manifest = _checked_manifest(name, files, walk.origin)
        start, end = manifest.start, manifest.end
        tree = CompactRange()
        for leaf in leaves[:start]:
            tree.append(leaf)
        prev = hashes[start - 1] if start else bytes(32)
        frontier = tuple(h.hex() for h in tree.hashes)
        if manifest.prev != prev.hex() or manifest.frontier != frontier:
            raise SealError("its manifest does not continue the records before it")
        lines = _lines(files[RECORDS_FILE], end - start)
        for seq, line in enumerate(lines, start):
            if seq >= len(hashes):
                return seq
            if compute_record_hash(line) != hashes[seq]:
                raise SealError(
                    f"record {seq} differs from the one the segments before seal: "
                    "two different histories are sealed"
                )
            tree.append(leaves[seq])
        text = files[CHECKPOINT_FILE].decode("utf-8", "replace")
        _check_checkpoint(text, walk.origin, end, tree.root(), walk.signers(end))
    except SealError as e:
        raise SealError(f"segment {name}: {e}") from e
    return end


def _checked_manifest(name: str, files: Mapping[str, bytes], origin: str) -> Manifest:
    """The segment's manifest, once its place and its files' SHA-256 check."""
    if MANIFEST_FILE not in files:
        raise SealError("unfinished: it has no manifest")
    manifest = parse_manifest(files[MANIFEST_FILE])
    if manifest.origin != origin:
        raise SealError(f"it belongs to the ledger {manifest.origin!r}")
    if parse_segment_name(name) != (manifest.start, manifest.end):
        raise SealError("its name and its manifest's range differ")
    for file, (digest, size) in manifest.files.items():
        data = files.get(file)
        if data is None:
            raise SealError(f"{file} is missing")
        if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            raise SealError(f"{file} does not match the manifest's SHA-256")
    return manifest


def _check_checkpoint(
    text: str, origin: str, size: int, root: bytes, keys: Sequence[bytes]
) -> bytes:
    """The root of the segment's checkpoint, once it is of ``size`` records with
    ``root`` and signed by one of ``keys``."""
    try:
        checkpoint = parse_signed_checkpoint(text).checkpoint
        if checkpoint.size != size:
            raise SealError(f"its checkpoint is of size {checkpoint.size}, not {size}")
        if checkpoint.root != root:
            raise SealError("its checkpoint's root is not its records' root")
        if not keys:
            raise SealError(f"no log key of the sealed records is valid at {size}")
        verify_checkpoint(text, origin=origin, public_keys=list(keys))
    except SealError:
        raise
    except (MltrailError, ValueError) as e:
        raise SealError(f"its checkpoint does not verify: {e}") from e
    return checkpoint.root


def _signed_by(text: str, origin: str, keys: Sequence[bytes]) -> bool:
    """Whether one of ``keys`` signed the checkpoint ``text`` (checked already)."""
    if not keys:
        return False
    try:
        verify_checkpoint(text, origin=origin, public_keys=list(keys))
    except (MltrailError, ValueError):
        return False
    return True


def _lines(data: bytes, count: int) -> tuple[bytes, ...]:
    if not data.endswith(b"\n"):
        raise SealError(f"{RECORDS_FILE} does not end with a newline")
    lines = tuple(data[:-1].split(b"\n"))
    if len(lines) != count:
        raise SealError(f"{RECORDS_FILE} holds {len(lines)} records, not {count}")
    return lines
