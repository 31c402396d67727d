"""``mltrail verify``: check the whole ledger and say whether it is intact."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from mltrail.capture.run.userfiles import read_user_text
from mltrail.cli.output import (
    WORKERS,
    console,
    emit_json,
    err_console,
    json_option,
    open_from,
)
from mltrail.cli.printing import one_line
from mltrail.errors import InputError, SchemaError, StoreError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from mltrail.core.report import VerificationReport
    from mltrail.core.trust import TrustedKey
    from mltrail.ledger.home import Home

__all__ = ["verification_progress", "verify"]


@contextmanager
def verification_progress(
    enabled: bool,
) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr for a verification (None when not ``enabled``):
    `verify`, and the exports and reports that verify before they hand
    anything out."""
    if not enabled:
        yield None
        return
    columns = (
        TextColumn("verifying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("records"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console.get(), transient=True) as bar:
        task = bar.add_task("verify", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@click.command()
@click.option(
    "--trust-key",
    "trust_keys",
    multiple=True,
    metavar="KEY",
    help="Trust this key instead of the one named in ledger.json (inside the home): "
    "a key id, verifier key, base64 or PEM public key, or a file holding one, as "
    "`mltrail keys export` prints. Repeatable.",
)
@click.option(
    "--trust-checkpoint",
    "trust_checkpoints",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="A checkpoint kept outside the home (e.g. saved from `mltrail checkpoint`): "
    "the ledger must extend it. Repeatable.",
)
@click.option(
    "--tsa-ca",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="CA certificate(s) (PEM) a TSA must chain to for its timestamps to count "
    "(default: MLTRAIL_TSA_CA, or tsa_ca in ledger.json); without one, token "
    "times are reported unverified. A TSA certificate in the file pins the TSA: "
    "only tokens it signed count.",
)
@click.option(
    "--witness-key",
    "witness_keys",
    multiple=True,
    metavar="VKEY",
    help="Require a checkpoint of this ledger cosigned by this witness (C2SP "
    "verifier key, or a file holding it). Repeatable.",
)
@click.option(
    "--workers",
    type=WORKERS,
    default=None,
    help="Processes for signature checks (default: all cores on large ledgers).",
)
@click.option(
    "--against-seals",
    is_flag=True,
    help="Also check the ledger against its write-once seals: every sealed record "
    "byte for byte, the ledger extending the last sealed checkpoint, no segment "
    "missing.",
)
@click.option(
    "--seals",
    metavar="URL",
    help="Where the seals are (default: MLTRAIL_SEAL_TARGET, else seal_target in "
    "ledger.json); implies --against-seals.",
)
@click.option(
    "--no-index",
    "skip_index",
    is_flag=True,
    help="Skip comparing the derived query index (index.db) with one rebuilt "
    "from the records, which takes about half as long again as the rest on a "
    "large ledger.",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the verdict.")
@json_option
@click.pass_context
def verify(
    ctx: click.Context,
    trust_keys: tuple[str, ...],
    trust_checkpoints: tuple[Path, ...],
    tsa_ca: Path | None,
    witness_keys: tuple[str, ...],
    workers: int | None,
    against_seals: bool,
    seals: str | None,
    skip_index: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Check the whole ledger; exit 0 when intact, 3 when tampering is found.

    \b
    Checks, for every record: schema, seq continuity, the prev hash chain, the
    signature against the key valid at that point (key.added / key.revoked),
    that entry times never go back more than 5 minutes, every referenced blob
    (one erased by a valid signed blob.purged record is reported as purged by
    policy, not as missing); then the Merkle root against every checkpoint
    (each append stores one, and the newest must cover every record), the stored
    Merkle nodes against the recomputed ones, and the witness checkpoint this
    machine saw last; then every RFC 3161 timestamp kept (against --tsa-ca) and
    the cosignatures of the witnesses named by --witness-key. When the ledger
    is intact, the derived query index (index.db, which answers `runs`, `show`,
    `trace`) is compared with one rebuilt from the records: a difference is a
    warning (the index was edited; `mltrail reindex` rebuilds it).

    \b
    Anything inside the home can be replaced by whoever can write it, so say
    what you trust from elsewhere: the ledger key (--trust-key, printed by
    `mltrail keys export`) and checkpoints you kept (--trust-checkpoint, or a
    witness file outside the home via MLTRAIL_WITNESS). The report names the
    anchors it used, and warns when all of them lie inside the home, or when
    the only one outside is a key: a key says who signed, not that this is the
    newest state (a holder of a leaked key can fork the ledger before its
    revocation); only a checkpoint kept elsewhere rules that out.

    \b
    Examples:
      mltrail verify
      mltrail verify --trust-key ledger.vkey --trust-checkpoint 2026-03-31.cp
      mltrail verify --tsa-ca tsa-root.pem --witness-key "$(cat w1.vkey)"
      mltrail verify --against-seals --seals s3://audit-worm/team-a
      mltrail verify --json | jq .problems
      mltrail verify --no-index            # the ledger only
    """
    from mltrail.cli.evidence_cmds import evidence_policy

    home = open_from(ctx)
    keys = resolve_trusted_keys(trust_keys, home.ledger.origin)
    policy = evidence_policy(home, tsa_ca, witness_keys)
    kept = [(str(p), read_checkpoint_file(p)) for p in trust_checkpoints]
    show_bar = not as_json and not quiet and sys.stderr.isatty()
    with verification_progress(show_bar) as progress:
        report = home.verify(
            trust_keys=keys,
            trust_checkpoints=kept,
            progress=progress,
            workers=workers,
            evidence=policy,
        )
    if against_seals or seals:
        _check_seals(home, report, seals)
    if report.ok and not skip_index:
        _check_index(home, report)
    if as_json:
        emit_json(report.to_dict())
    else:
        style = "green" if report.ok else "bold red"
        console.print(report.verdict(), style=style)
        if not quiet:
            for anchor in report.anchors:
                where = "outside the home" if anchor.external else "inside the home"
                console.print(
                    Text.assemble(f"  anchor ({where}): ", one_line(anchor.description))
                )
            for problem in report.problems:
                console.print(
                    Text.assemble(f"  {problem.severity}: ", one_line(problem))
                )
    ctx.exit(0 if report.ok else 3)


def _check_index(home: Home, report: VerificationReport) -> None:
    """Warn where the derived index (``index.db``) differs from one rebuilt in
    memory from the records: rows edited, added or deleted by hand, which no
    answer can see (a run deleted from it is simply never listed). The ledger's
    verdict stands: the index is derived, and `mltrail reindex` rebuilds it."""
    from mltrail.core.report import Problem, Severity
    from mltrail.index import open_stored_index
    from mltrail.index.check import index_differences

    if not (home.path / home.index_file).exists():
        return

    def differences() -> list[str]:
        # caught up first: records added since it was last opened are no
        # difference; a read-only home's index.db is read into memory, not
        # skipped (an edit there was reported on a writable copy only)
        index = open_stored_index(home)
        if index is None:
            return []
        try:
            return index_differences(index)
        finally:
            index.close()

    # the catch-up and the rebuild in memory read one state of the store: read
    # apart, records another client appended between them (a busy server) were
    # a difference (ADR 0028, amendment of 2026-12-08)
    try:
        found = home.ledger.store.read_in_snapshot(differences)
    except StoreError as e:  # a damaged index.db: the ledger's verdict still stands
        found = [f"it cannot be read: {e}"]
    report.problems.extend(
        Problem(
            None,
            "index",
            f"the derived index {home.index_file} disagrees with the records "
            f"({line}); answers read through it may be wrong: `mltrail reindex` "
            "rebuilds it",
            Severity.WARNING,
        )
        for line in found
    )


def _check_seals(home: Home, report: VerificationReport, url: str | None) -> None:
    """Add what checking against the seals found to ``report``.

    The seals are an anchor outside the home only where the auditor named them
    (``--seals``, ``MLTRAIL_SEAL_TARGET``) and a folder named lies outside the
    home: ``seal_target`` in ledger.json is chosen by whoever can write the
    home, who can seal a forgery to a folder or bucket of their own.
    """
    import os
    from dataclasses import replace

    from mltrail.evidence.seals import check_against_seals, seal_store

    named = url or os.environ.get("MLTRAIL_SEAL_TARGET")
    check = check_against_seals(home, seal_store(home, named))
    report.problems.extend(check.problems)
    anchor = check.anchor
    if anchor is None:
        return
    if not named:
        anchor = replace(
            anchor,
            description=f"{anchor.description} (named in ledger.json, inside the home)",
            external=False,
        )
    elif _local_folder_inside(named, home):
        anchor = replace(anchor, external=False)
    report.anchors.append(anchor)
    if anchor.external:
        report.problems[:] = [p for p in report.problems if p.code != "anchors"]


def _local_folder_inside(url: str, home: Home) -> bool:
    """Whether a seal folder the auditor named is reached through the home."""
    from mltrail.ledger.home import reached_through

    if url.startswith("s3://"):
        return False
    return reached_through(Path(url.removeprefix("file://")).expanduser(), home.path)


def resolve_trusted_keys(values: tuple[str, ...], origin: str) -> tuple[str, ...]:
    """Key ids from --trust-key values (each the key itself, or a file holding it).

    Raises:
        InputError: a value is neither, or names another ledger.
    """
    ids = []
    for value in values:
        key = parse_key_value(value, "--trust-key", "trusted key file")
        if key.name is not None and key.name != origin:
            raise InputError(
                f"--trust-key is a verifier key of the ledger {key.name!r}, "
                f"not of this one ({origin!r})",
                hint="export the key of this ledger (mltrail keys export)",
            )
        ids.append(key.key_id)
    return tuple(ids)


def parse_key_value(value: str, option: str, what: str) -> TrustedKey:
    """A key given on the command line: the value itself when it is a key, else
    the key in the file it names. A value that is a key is never looked up as a
    file, so that a file named after a key id (in a copy of a home, or beside a
    bundle someone sent) cannot stand in for the key the auditor typed.

    Raises:
        InputError: the value is neither.
    """
    from mltrail.core.trust import parse_trusted_key

    try:
        return parse_trusted_key(value)
    except SchemaError as e:
        problem = e
    path = Path(value)
    if "\n" not in value and path.is_file():
        text = read_user_text(path, what=what, limit=_MAX_SMALL_FILE)
        try:
            return parse_trusted_key(text)
        except SchemaError as e:
            problem = e
    raise InputError(f"{option} {value[:80]!r}: {problem}", hint=problem.hint)


def read_checkpoint_file(path: Path) -> str:
    """A checkpoint file's text (bounded, UTF-8).

    Raises:
        InputError: unreadable, not a regular file, too large, or not UTF-8.
    """
    return read_user_text(path, what="checkpoint file", limit=_MAX_SMALL_FILE)


_MAX_SMALL_FILE = 64 * 1024
