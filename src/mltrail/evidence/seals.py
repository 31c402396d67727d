"""Sealing: copy the ledger, segment by segment, to write-once storage, and check
the live ledger against what was sealed.

``seal`` writes one segment (see :mod:`mltrail.core.seal`) of the records since
the last sealed checkpoint up to the newest one: records, checkpoint and
evidence first, the manifest last, so an interrupted seal leaves a segment
without a manifest, which counts for nothing; the next ``seal`` finishes that
very segment (same range, same bytes: objects already written are left as they
are) before starting another. Twice in a row, the second adds nothing.

``check_against_seals`` walks every sealed segment from record 0 (their
checkpoints verify with the keys the sealed records add), then requires the
live ledger to hold each sealed record byte for byte and to extend the last
sealed checkpoint (an RFC 9162 consistency proof from the live tree). A ledger
rewritten after sealing, even by someone holding the ledger key, differs from
the sealed bytes; a segment removed from the storage leaves a gap, named.

Blobs are not sealed: they may have to be erased (:mod:`mltrail.ledger.erasure`);
records keep their hashes.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mltrail.config import write_atomic
from mltrail.core.canonical import compute_record_hash
from mltrail.core.chain import KEY_KINDS, KeyRing
from mltrail.core.checkpoint import parse_signed_checkpoint
from mltrail.core.codec import decode_record
from mltrail.core.merkle import (
    CompactRange,
    frontier_positions,
    range_root,
    verify_consistency,
)
from mltrail.core.report import Anchor, Problem, Severity
from mltrail.core.seal import (
    CHECKPOINT_FILE,
    EVIDENCE_FILE,
    MANIFEST_FILE,
    RECORDS_FILE,
    SealError,
    SealWalk,
    build_manifest,
    parse_manifest,
    parse_retention,
    parse_segment_name,
    segment_name,
)
from mltrail.errors import ConfigError, IntegrityError, MltrailError
from mltrail.evidence.policy import evidence_for
from mltrail.ledger.holds import Hold, Holds, load_holds
from mltrail.storage.worm import open_worm

if TYPE_CHECKING:
    from pathlib import Path

    from mltrail.core.seal import Retention
    from mltrail.ledger.home import Home
    from mltrail.ledger.ledger import Ledger
    from mltrail.storage.worm import SealedObject, WormStore

_MIN_RETENTION = parse_retention("6m")
_SLACK = timedelta(days=1)
"""Between the retain-until date computed and the object's write time."""
_SLACK_SECONDS = timedelta(seconds=1)
"""S3 keeps retain-until dates to the second; a manifest, too."""

__all__ = [
    "STATE_FILE",
    "SealCheck",
    "SealResult",
    "apply_legal_holds",
    "check_against_seals",
    "configured_target",
    "seal_ledger",
    "seal_status",
    "seal_store",
]

STATE_FILE = "seals.json"
"""In the home: per seal target, the last segment this home sealed there."""
_DIR = "segments/"


@dataclass
class SealResult:
    """What one ``seal`` did."""

    url: str
    written: list[str] = field(default_factory=list)
    """Segments finished by this seal (an interrupted one first)."""
    resumed: str | None = None
    records: int = 0
    bytes: int = 0
    sealed_size: int = 0
    """Records 0 to ``sealed_size - 1`` are sealed now."""
    retain_until: str | None = None
    held: list[str] = field(default_factory=list)
    """Segments written under a legal hold."""

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return dict(self.__dict__)


def configured_target(
    home: Home, url: str | None, retain: str | None
) -> tuple[WormStore, Retention | None]:
    """The seal storage (``url``, else ``MLTRAIL_SEAL_TARGET``, else ``seal_target``
    in ledger.json) and retention (``retain``, else ``seal_retain``).

    Raises:
        ConfigError: no target is given or configured.
        InputError: a malformed URL, or a retention under six months.
    """
    retain = retain or home.settings.seal_retain
    return seal_store(home, url), parse_retention(retain) if retain else None


def seal_store(home: Home, url: str | None) -> WormStore:
    """The seal storage ``url`` names, else the configured one.

    Raises:
        ConfigError: no target is given or configured.
    """
    url = url or os.environ.get("MLTRAIL_SEAL_TARGET") or home.settings.seal_target
    if not url:
        raise ConfigError(
            "no seal target: pass --to s3://BUCKET/PREFIX or a folder",
            hint="`mltrail seal configure --to URL --retain 7y` saves one",
        )
    return open_worm(url)


def _segments(worm: WormStore) -> dict[str, set[str]]:
    """Segment name -> the files stored for it."""
    found: dict[str, set[str]] = {}
    for key in worm.keys(_DIR):
        name, _, file = key.removeprefix(_DIR).partition("/")
        if parse_segment_name(name) is not None and file:
            found.setdefault(name, set()).add(file)
    return found


def _ordered(found: dict[str, set[str]]) -> list[tuple[int, int, str]]:
    spans = [(*parse_segment_name(name), name) for name in found]  # type: ignore[misc]
    return sorted(spans)


def _sealed_end(worm: WormStore, found: dict[str, set[str]]) -> tuple[int, str | None]:
    """Where the finished segments, chained from 0, end (and the last one's name)."""
    end, last = 0, None
    for start, stop, name in _ordered(found):
        if start == end and MANIFEST_FILE in found[name]:
            end, last = stop, name
    return end, last


def seal_ledger(
    home: Home,
    worm: WormStore,
    retention: Retention | None,
    *,
    now: datetime | None = None,
) -> SealResult:
    """Seal the records since the last sealed checkpoint (see the module docs).

    Raises:
        IntegrityError: the live ledger no longer extends the last sealed
            checkpoint (nothing is sealed over a rewritten ledger).
        StoreError: the storage refused, or is not write-once.
        ConfigError: sealing to S3 without a retention period.
    """
    ledger = home.ledger
    now = now or datetime.now(UTC)
    until = retention.until(now) if retention else None
    result = SealResult(worm.url, retain_until=_time(until) if until else None)
    worm.check_ready()
    if until is None and worm.legal_holds:
        raise ConfigError(
            "sealing to S3 needs a retention period",
            hint="pass --retain 7y (six months at least), or set seal_retain",
        )
    found = _segments(worm)
    start, last = _sealed_end(worm, found)
    _check_extends(ledger, worm, start, last)
    holds = load_holds(ledger)
    sizes = {cp.size: cp.text for cp in ledger.store.checkpoints()}
    for begin, stop, name in _ordered(found):
        if begin == start and MANIFEST_FILE not in found[name] and stop in sizes:
            _write_segment(
                ledger, worm, (begin, stop), sizes[stop], holds, result, until, now
            )
            result.resumed, start = name, stop
            break
    ledger.check_head()
    latest = ledger.store.latest_checkpoint()
    if latest is not None and latest.size > start:
        _write_segment(
            ledger, worm, (start, latest.size), latest.text, holds, result, until, now
        )
        start = latest.size
    result.sealed_size = start
    if result.written:
        _save_state(home.path, worm.url, start, result.written[-1])
    return result


def _check_extends(ledger: Ledger, worm: WormStore, end: int, last: str | None) -> None:
    if last is None:
        return
    text = (worm.get(f"{_DIR}{last}/{CHECKPOINT_FILE}") or b"").decode(
        "utf-8", "replace"
    )
    try:
        sealed = parse_signed_checkpoint(text).checkpoint
        holds = (
            end <= ledger.head().size
            and range_root(0, end, ledger.store.node) == sealed.root
        )
    except MltrailError:
        holds = False
    if not holds:
        raise IntegrityError(
            f"the ledger no longer extends the checkpoint sealed in segment {last} "
            f"at {worm.url}: refusing to seal over it",
            hint="run `mltrail verify --against-seals` to see what differs",
        )


def _write_segment(
    ledger: Ledger,
    worm: WormStore,
    span: tuple[int, int],
    checkpoint: str,
    holds: Holds,
    result: SealResult,
    until: datetime | None,
    now: datetime,
) -> None:
    start, end = span
    name = segment_name(start, end)
    rows = list(ledger.store.rows(start, end))
    records = b"".join(row.data + b"\n" for row in rows)
    evidence = [e.to_dict() for e in evidence_for(ledger.store, checkpoint)]
    files = {
        RECORDS_FILE: records,
        CHECKPOINT_FILE: checkpoint.encode(),
        EVIDENCE_FILE: json.dumps(evidence, sort_keys=True).encode(),
    }
    existing = worm.get(f"{_DIR}{name}/{EVIDENCE_FILE}")
    if existing is not None:  # resuming: keep the evidence already sealed
        files[EVIDENCE_FILE] = existing
    prev = _prev_hash(ledger, start)
    frontier = [
        ledger.store.node(level, index) for level, index in frontier_positions(start)
    ]
    manifest = build_manifest(
        origin=ledger.origin,
        start=start,
        end=end,
        prev=prev,
        frontier=frontier,
        files=files,
        sealed_at=_time(now),
        retain_until=_time(until) if until else None,
    )
    held = bool(holds.standing) and _covered(holds, name, (r.data for r in rows))
    old = worm.get(f"{_DIR}{name}/{MANIFEST_FILE}")
    for file, data in [*files.items(), (MANIFEST_FILE, old or manifest)]:
        worm.put(f"{_DIR}{name}/{file}", data, retain_until=until, legal_hold=held)
    worm.finish(f"{_DIR}{name}")
    result.written.append(name)
    result.records += end - start
    result.bytes += sum(map(len, files.values())) + len(manifest)
    if held:
        result.held.append(name)


def _prev_hash(ledger: Ledger, start: int) -> bytes:
    if start == 0:
        return bytes(32)
    for row in ledger.store.rows(start - 1, start):
        return compute_record_hash(row.data)
    return bytes(32)  # pragma: no cover (the range was checked)


def _covered(holds: Holds, name: str, datas: Any) -> bool:
    return _covering(holds, name, datas) is not None


def _covering(holds: Holds, name: str, datas: Any) -> Hold | None:
    """The hold covering the segment ``name`` of these records, if any."""
    if hold := holds.get("segment", name):
        return hold
    for data in datas:
        try:
            entry = decode_record(data).record.entry
        except MltrailError:
            continue
        if (hold := holds.covering(entry)) is not None:
            return hold
    return None


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _state_path(home: Path) -> Path:
    return home / STATE_FILE


def _load_state(home: Path) -> dict[str, Any]:
    try:
        value = json.loads(_state_path(home).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _save_state(home: Path, url: str, end: int, name: str) -> None:
    state = _load_state(home)
    state[url] = {"end": end, "segment": name}
    with contextlib.suppress(OSError):  # a hint for verify only: the seal is done
        write_atomic(_state_path(home), json.dumps(state, indent=2) + "\n")


# -- checking ---------------------------------------------------------------


@dataclass
class SealCheck:
    """What checking the live ledger against the seals found."""

    url: str
    segments: int = 0
    sealed_size: int = 0
    problems: list[Problem] = field(default_factory=list)
    anchor: Anchor | None = None

    @property
    def ok(self) -> bool:
        """No error (warnings aside)."""
        return not any(p.severity is Severity.ERROR for p in self.problems)


def check_against_seals(home: Home, worm: WormStore) -> SealCheck:
    """Walk every sealed segment and hold the live ledger to it (module docs)."""
    ledger = home.ledger
    check = SealCheck(worm.url)
    found = _segments(worm)
    walk = SealWalk(ledger.origin)
    last_root: bytes | None = None
    reach = 0  # the farthest end of a segment beside the walk found to agree
    for start, end, name in _ordered(found):
        if MANIFEST_FILE not in found[name]:
            if start >= walk.size:
                check.problems.append(_unfinished(name, start))
                _check_unfinished(ledger, worm, name, (start, found[name]), check)
            continue
        if start < walk.size:
            # overlaps what was walked: a second, finished seal of these records
            # (two sealers at once) or one added beside the first. Either way its
            # records are sealed, so the live ledger is held to them too: else
            # segments of a rewritten ledger, added under names that sort first,
            # would have the walk skip every segment sealed before them.
            if _check_overlap(ledger, worm, name, start, found[name], check):
                reach = max(reach, end)
            continue
        if start > walk.size:
            check.problems.append(_missing(worm, walk.size, start))
            walk = _walk_at(ledger, start)
        files = _read(worm, name, found[name], start, check)
        try:
            segment = walk.accept(name, files)
        except SealError as e:
            check.problems.append(
                Problem(start, "seal-invalid", f"{e} (at {worm.url})")
            )
            walk = _walk_at(ledger, end)
            continue
        check.segments += 1
        _compare(ledger, segment.records, start, name, check)
        last_root = segment.root
    # a segment beside the walk that agrees with the ledger may end past it (two
    # sealers: 5-9 beside 5-7): what it seals counts, and is no missing segment
    check.sealed_size = max(walk.size, reach)
    _check_state(home, worm, check)
    _check_legal_holds(ledger, worm, found, check)
    if last_root is not None:
        _check_consistency(ledger, walk.size, last_root, check)
    if check.segments and check.ok:
        check.anchor = Anchor(
            "seal",
            f"records 0 to {check.sealed_size - 1} are byte for byte as sealed "
            "write-once "
            f"in {check.segments} segment(s) at {worm.url}, and the ledger extends "
            "the last sealed checkpoint",
            True,
        )
    elif not found:
        check.problems.append(
            Problem(
                None, "seal-none", f"nothing is sealed at {worm.url}", Severity.WARNING
            )
        )
    return check


def _check_overlap(
    ledger: Ledger,
    worm: WormStore,
    name: str,
    start: int,
    files: set[str],
    check: SealCheck,
) -> bool:
    """Check a finished segment that starts inside what the walk already took,
    from the live ledger's state at its start, and hold the ledger to it;
    whether it agrees."""
    read = _read(worm, name, files, start, check)
    try:
        segment = _walk_at(ledger, start).accept(name, read)
    except SealError as e:
        check.problems.append(
            Problem(
                start,
                "seal-invalid",
                f"{e} (at {worm.url}; it overlaps records already checked in "
                "other segments: the live ledger differs from what it seals)",
            )
        )
        return False
    check.segments += 1
    before = len(check.problems)
    _compare(ledger, segment.records, start, name, check)
    return len(check.problems) == before


def _check_unfinished(
    ledger: Ledger,
    worm: WormStore,
    name: str,
    where: tuple[int, set[str]],
    check: SealCheck,
) -> None:
    """Hold the ledger to an interrupted seal's records when they verify (they
    follow the ledger's records before them, and the checkpoint written before
    the manifest is theirs, signed by a key of the ledger): they are kept
    write-once, and a ledger rewritten between the crash and the next seal
    differs from them. Records that do not verify are no seal (a warning
    already names the segment)."""
    start, files = where
    if start > ledger.head().size:
        return  # the ledger is shorter: a finished segment names that
    read = {
        file: found.data
        for file in files
        if (found := worm.read(f"{_DIR}{name}/{file}")) is not None
    }
    try:
        lines = _walk_at(ledger, start).accept_unfinished(name, read)
    except SealError:
        return
    _compare(ledger, lines, start, f"{name} (unfinished)", check)


def _read(
    worm: WormStore, name: str, files: set[str], start: int, check: SealCheck
) -> dict[str, bytes]:
    """The sealed bytes of a segment's files; what the storage says about each
    key beside them (later versions, delete markers, locks) goes to ``check``."""
    read: dict[str, bytes] = {}
    objects: dict[str, SealedObject] = {}
    for file in sorted(files):
        found = worm.read(f"{_DIR}{name}/{file}")
        if found is not None:
            read[file], objects[file] = found.data, found
    claimed = _claimed_until(read.get(MANIFEST_FILE))
    now = datetime.now(UTC)
    for file, found in objects.items():
        where = f"{_DIR}{name}/{file} at {worm.url}"
        until = claimed if file == MANIFEST_FILE else None
        check.problems += _storage_problems(where, found, start, until, now)
    return read


def _claimed_until(manifest: bytes | None) -> datetime | None:
    """The retain-until date a manifest claims (None: none, or unreadable)."""
    try:
        text = parse_manifest(manifest).retain_until if manifest else None
        return datetime.fromisoformat(text) if text else None
    except (MltrailError, ValueError):
        return None  # the walk reports an unreadable manifest


def _storage_problems(
    where: str,
    found: SealedObject,
    start: int,
    claimed: datetime | None,
    now: datetime,
) -> list[Problem]:
    """What makes a sealed S3 object less than write-once (ADR 0017, amendment)."""
    if not found.locks:
        return []
    problems = []
    if found.later_versions:
        problems.append(
            Problem(
                start,
                "seal-overwritten",
                f"{where}: {found.later_versions} newer version(s) were put over "
                "the sealed object, and a plain read returns the newest; the sealed "
                "(first) version is the one checked here",
            )
        )
    if found.delete_markers:
        problems.append(
            Problem(
                start,
                "seal-deleted",
                f"{where} was deleted through S3 (a delete marker hides it from a "
                "plain read); the sealed version is still there and is the one "
                "checked here",
            )
        )
    mode, until = found.lock_mode, found.retain_until
    if mode != "COMPLIANCE":
        how = (
            "GOVERNANCE retention gives way to anyone allowed "
            "s3:BypassGovernanceRetention"
            if mode == "GOVERNANCE"
            else "without a retention it can be deleted"
        )
        problems.append(
            Problem(
                start,
                "seal-unlocked",
                f"{where} is not locked in COMPLIANCE mode ({mode or 'no lock'}): "
                f"{how}, so it is not write-once",
            )
        )
    elif until is not None:
        floor = (
            _MIN_RETENTION.until(found.written) - _SLACK
            if found.written is not None
            else None
        )
        if claimed is not None and until < claimed - _SLACK_SECONDS:
            problems.append(
                Problem(
                    start,
                    "seal-retention",
                    f"{where} is locked only until {_time(until)}, not until "
                    f"{_time(claimed)} as the manifest says",
                )
            )
        elif floor is not None and until < floor:
            problems.append(
                Problem(
                    start,
                    "seal-retention",
                    f"{where} is locked only until {_time(until)}: less than the "
                    f"six months every seal keeps (written {_time(found.written)})",
                )
            )
        elif until <= now:
            problems.append(
                Problem(
                    start,
                    "seal-expired",
                    f"{where}: its retention ended {_time(until)}; it can now be "
                    "deleted",
                    Severity.WARNING,
                )
            )
    return problems


def _unfinished(name: str, start: int) -> Problem:
    return Problem(
        start,
        "seal-unfinished",
        f"segment {name} has no manifest: a seal was interrupted (`mltrail seal` "
        "finishes it)",
        Severity.WARNING,
    )


def _missing(worm: WormStore, start: int, end: int) -> Problem:
    return Problem(
        start,
        "seal-missing",
        f"segment {segment_name(start, end)} (records {start} to {end - 1}) is "
        f"missing from {worm.url}: it was removed underneath the storage",
    )


def _walk_at(ledger: Ledger, size: int) -> SealWalk:
    """A walk resumed at ``size`` from the live ledger (after a gap or a bad
    segment), so later segments are still checked."""
    size = min(size, ledger.head().size)
    keys = KeyRing(origin=ledger.origin)
    # key records picked by their signed bytes, not by the kind column (anyone
    # who can write the store can relabel a row; ADR 0011, derived columns):
    # this walk is rare (after a gap or a bad segment), so it reads every row
    for row in ledger.store.rows(0, size):
        entry = decode_record(row.data).record.entry
        if entry.kind in KEY_KINDS and entry.sig is not None:
            keys.apply(row.seq, entry.kind, dict(entry.body), entry.sig.key)
    hashes = [
        ledger.store.node(level, index) for level, index in frontier_positions(size)
    ]
    return SealWalk(
        ledger.origin,
        size=size,
        last_hash=_prev_hash(ledger, size),
        tree=CompactRange(size, hashes),
        keys=keys,
    )


def _compare(
    ledger: Ledger, sealed: tuple[bytes, ...], start: int, name: str, check: SealCheck
) -> None:
    differ, live_end = [], start
    for row, data in zip(
        ledger.store.rows(start, start + len(sealed)), sealed, strict=False
    ):
        live_end = row.seq + 1
        if row.data != data:
            differ.append(row.seq)
    if differ:
        more = f" and {len(differ) - 1} more" if len(differ) > 1 else ""
        check.problems.append(
            Problem(
                differ[0],
                "seal-differs",
                f"record {differ[0]}{more} differ(s) from the copy sealed in segment "
                f"{name}: the ledger was rewritten after sealing",
            )
        )
    if live_end < start + len(sealed):
        check.problems.append(
            Problem(
                live_end,
                "seal-truncated",
                f"records {live_end} to {start + len(sealed) - 1} are sealed in "
                f"segment {name} but the live ledger does not hold them",
            )
        )


def _check_legal_holds(
    ledger: Ledger, worm: WormStore, found: dict[str, set[str]], check: SealCheck
) -> None:
    """Name each object of a segment a standing hold covers that the storage
    does not hold (lifted through S3, or never set): once its retention ends it
    could be deleted while the ledger says the hold stands. A warning: the seal
    itself is intact, and holds added while no seal target was configured were
    never set on the segments sealed before."""
    if not worm.legal_holds:
        return
    holds = load_holds(ledger)
    if not holds.standing:
        return
    for start, end, name in _ordered(found):
        rows = (r.data for r in ledger.store.rows(start, end))
        hold = _covering(holds, name, rows)
        if hold is None:
            continue
        for file in sorted(found[name]):
            key = f"{_DIR}{name}/{file}"
            if worm.legal_hold(key) is False:
                check.problems.append(
                    Problem(
                        start,
                        "seal-unheld",
                        f"{key} at {worm.url} has no S3 legal hold, but the hold on "
                        f"{hold.describe()} covers its segment: once its retention "
                        "ends it can be deleted (`mltrail hold add` or `release` of "
                        "any target, with this seal target configured, sets the "
                        "legal holds again)",
                        Severity.WARNING,
                    )
                )


def _check_state(home: Home, worm: WormStore, check: SealCheck) -> None:
    """This home remembers its last seal there: a removed last segment shows."""
    state = _load_state(home.path).get(worm.url)
    if not isinstance(state, dict):
        return
    end, name = state.get("end"), state.get("segment")
    if isinstance(end, int) and end > check.sealed_size:
        check.problems.append(
            Problem(
                check.sealed_size,
                "seal-missing",
                f"the segments holding records {check.sealed_size} to {end - 1} "
                f"(the last of them {name}, as this home sealed it) are missing from "
                f"{worm.url}: removed underneath the storage",
            )
        )


def _check_consistency(
    ledger: Ledger, size: int, root: bytes, check: SealCheck
) -> None:
    latest = ledger.store.latest_checkpoint()
    try:
        if latest is None or latest.size < size:
            raise IntegrityError("the live ledger is shorter than what was sealed")
        live = parse_signed_checkpoint(latest.text).checkpoint
        proof = ledger.prove_consistency(size, live.size) if size else None
        verify_consistency(
            size, live.size, root, live.root, proof.hashes if proof else ()
        )
    except MltrailError as e:
        check.problems.append(
            Problem(
                size - 1,
                "seal-consistency",
                f"the live ledger does not extend the last sealed checkpoint (size "
                f"{size}): {e}",
            )
        )


# -- status and legal holds --------------------------------------------------


def seal_status(home: Home, worm: WormStore) -> dict[str, Any]:
    """What is sealed there: segments, the sealed size, unfinished ones, and
    how many records wait to be sealed."""
    found = _segments(worm)
    end, last = _sealed_end(worm, found)
    unfinished = [n for n, files in sorted(found.items()) if MANIFEST_FILE not in files]
    manifest = None
    if last is not None:
        data = worm.get(f"{_DIR}{last}/{MANIFEST_FILE}")
        manifest = parse_manifest(data) if data else None
    size = home.ledger.head().size
    return {
        "url": worm.url,
        "segments": len(found) - len(unfinished),
        "sealed_size": end,
        "last_segment": last,
        "last_sealed_at": manifest.sealed_at if manifest else None,
        "retain_until": manifest.retain_until if manifest else None,
        "unfinished": unfinished,
        "unsealed_records": max(size - end, 0),
        "configured": home.settings.seal_target,
    }


def apply_legal_holds(home: Home, worm: WormStore) -> dict[str, list[str]]:
    """Make the storage's legal holds match the holds that stand in the ledger:
    ON for every object of a covered segment, OFF for the others that have one.

    Returns:
        ``{"on": [segments], "off": [segments]}`` changed.
    """
    changed: dict[str, list[str]] = {"on": [], "off": []}
    if not worm.legal_holds:
        return changed
    # by the signed hold records: a hold relabelled in the store's kind column
    # would otherwise have its segments' legal holds lifted here, unsigned
    holds = load_holds(home.ledger, signed=True)
    found = _segments(worm)
    for start, end, name in _ordered(found):
        rows = (r.data for r in home.ledger.store.rows(start, end))
        want = bool(holds.standing) and _covered(holds, name, rows)
        keys = [f"{_DIR}{name}/{file}" for file in sorted(found[name])]
        if any(worm.legal_hold(k) != want for k in keys):
            for key in keys:
                worm.set_legal_hold(key, want)
            changed["on" if want else "off"].append(name)
    return changed
