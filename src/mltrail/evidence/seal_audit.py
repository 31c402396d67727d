"""Checking sealed segments alone: an auditor's check with nothing but the seal
storage and the keys the auditor trusts.

``verify --against-seals`` holds a live ledger to its seals; it needs the home.
An auditor who holds only the seal location (a bucket, a folder) and the
ledger's public key checks the seals themselves with :func:`audit_seals`: the
segments are walked from record 0 (:class:`~mltrail.core.seal.SealWalk` with
the trusted keys), every record's signature is checked, every checkpoint must
be signed by a trusted key, a finished segment beside the walked ones must seal
the very same records, and what the storage says about each object (later
versions, delete markers, locks) is named as ``verify --against-seals`` names
it. Nothing is read from an mltrail home, and no key is trusted but those given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mltrail.core.canonical import compute_leaf_hash, compute_record_hash
from mltrail.core.report import Anchor, Problem, Severity
from mltrail.core.seal import (
    MANIFEST_FILE,
    SealError,
    SealWalk,
    check_beside,
    parse_manifest,
)
from mltrail.errors import InputError, MltrailError
from mltrail.evidence.seals import (
    SealCheck,
    _missing,
    _ordered,
    _read,
    _segments,
    _unfinished,
)

if TYPE_CHECKING:
    from collections.abc import Collection

    from mltrail.storage.worm import WormStore

__all__ = ["audit_seals", "sealed_origin"]


def sealed_origin(worm: WormStore) -> str:
    """The origin the first finished segment's manifest names.

    Raises:
        InputError: nothing finished is sealed there, or its manifest is unreadable.
    """
    found = _segments(worm)
    for _, _, name in _ordered(found):
        if MANIFEST_FILE in found[name]:
            data = worm.get(f"segments/{name}/{MANIFEST_FILE}") or b""
            try:
                return parse_manifest(data).origin
            except MltrailError as e:
                raise InputError(
                    f"the manifest of segment {name} at {worm.url} is unreadable: {e}",
                    hint="name the ledger with --origin",
                ) from e
    raise InputError(
        f"no finished segment at {worm.url}",
        hint="check the URL (s3://BUCKET/PREFIX, or the folder sealed to)",
    )


def audit_seals(worm: WormStore, origin: str, trusted: Collection[str]) -> SealCheck:
    """Check every segment sealed at ``worm`` with nothing but the sealed bytes
    and the ``trusted`` key ids (module docs).

    Raises:
        InputError: no key is trusted (the sealed keys alone prove nothing: anyone
            can seal a ledger of their own under any origin).
    """
    if not trusted:
        raise InputError(
            "checking seals alone needs the ledger's public key",
            hint="pass --trust-key (as `mltrail keys export` prints it)",
        )
    check = SealCheck(worm.url)
    found = _segments(worm)
    walk = SealWalk(origin, trusted=frozenset(trusted))
    hashes: list[bytes] = []
    leaves: list[bytes] = []
    chain = _farthest_chain(found)
    gap = False  # once named (or the chain broke), no segment is called missing
    for start, _, name in chain:
        files = _read(worm, name, found[name], start, check)
        try:
            segment = walk.accept(name, files)
        except SealError as e:
            check.problems.append(_invalid(start, e, worm))
            gap = True
            break
        check.segments += 1
        hashes += map(compute_record_hash, segment.records)
        leaves += map(compute_leaf_hash, segment.records)
    walked = {name for _, _, name in chain}
    for start, _, name in _ordered(found):
        if name in walked:
            continue
        if MANIFEST_FILE not in found[name]:
            if start >= walk.size:
                check.problems.append(_unfinished(name, start))
        elif start < walk.size:
            _check_beside(worm, found, (start, name), walk, (hashes, leaves), check)
        elif not gap:  # no chain from record 0 reaches it
            check.problems.append(_missing(worm, walk.size, start))
            gap = True
    check.sealed_size = walk.size
    if check.segments and walk.trusted_size < walk.size:
        check.problems.append(_untrusted(walk, worm))
    if check.segments and check.ok:
        check.anchor = Anchor(
            "seal",
            f"records 0 to {walk.size - 1} sealed write-once in {check.segments} "
            f"segment(s) at {worm.url} are signed and chained, and a checkpoint "
            "signed by a trusted key covers them",
            True,
        )
    elif not found:
        check.problems.append(
            Problem(None, "seal-none", f"nothing is sealed at {worm.url}")
        )
    return check


def _farthest_chain(found: dict[str, set[str]]) -> list[tuple[int, int, str]]:
    """The finished segments that chain from record 0 the farthest (each
    starting where the one before ended). Taking them in name order instead
    would let a segment that ends early (0-5 beside 0-9, or one added by
    whoever may put objects) cut the chain and leave later records unchecked."""
    chains: dict[int, list[tuple[int, int, str]]] = {0: []}
    for start, end, name in _ordered(found):  # every chain to ``start`` is known
        if MANIFEST_FILE in found[name] and start in chains and end not in chains:
            chains[end] = [*chains[start], (start, end, name)]
    return chains[max(chains)]


def _check_beside(
    worm: WormStore,
    found: dict[str, set[str]],
    where: tuple[int, str],
    walk: SealWalk,
    walked: tuple[list[bytes], list[bytes]],
    check: SealCheck,
) -> None:
    start, name = where
    files = _read(worm, name, found[name], start, check)
    try:
        upto = check_beside(name, files, walk, *walked)
    except SealError as e:
        check.problems.append(_invalid(start, e, worm))
        return
    check.segments += 1
    _, end = _span(name)
    if upto < end:
        check.problems.append(
            Problem(
                upto,
                "seal-unchecked",
                f"segment {name} also seals records {upto} to {end - 1}, which no "
                "chain of segments from record 0 reaches: they were not checked",
                Severity.WARNING,
            )
        )


def _span(name: str) -> tuple[int, int]:
    start, _, end = name.partition("-")
    return int(start), int(end)


def _untrusted(walk: SealWalk, worm: WormStore) -> Problem:
    if walk.trusted_size == 0:
        return Problem(
            0,
            "seal-untrusted",
            f"no checkpoint sealed at {worm.url} is signed by a trusted key: these "
            "are not the seals of the ledger whose key you trust",
        )
    return Problem(
        walk.trusted_size,
        "seal-untrusted",
        f"records {walk.trusted_size} to {walk.size - 1} are sealed under "
        "checkpoints no trusted key signed (nor a key a trusted key added)",
    )


def _invalid(start: int, error: SealError, worm: WormStore) -> Problem:
    return Problem(start, "seal-invalid", f"{error} (at {worm.url})")
